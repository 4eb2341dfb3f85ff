"""The repository's scripts as modules: demo_app/build_images.py for tests that write image archives in
its format, and any other script a test calls into (load_script)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.ansible_run import ROOT


def load_script(path):
    """The script at path (relative to the repository root), imported as a module named after its file."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build_images = load_script("demo_app/build_images.py")
