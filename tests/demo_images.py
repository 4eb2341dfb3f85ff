"""demo_app/build_images.py as a module, for tests that write image archives in its format."""

from __future__ import annotations

import importlib.util
import sys

from tests.ansible_run import ROOT


def _load():
    spec = importlib.util.spec_from_file_location("build_images", ROOT / "demo_app" / "build_images.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build_images = _load()
