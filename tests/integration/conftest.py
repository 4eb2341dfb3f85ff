from __future__ import annotations

import pytest

from tests.aws_endpoint import MotoServer


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """A fresh local AWS endpoint (moto server on a free loopback port) per test module."""
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()
