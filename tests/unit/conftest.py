from __future__ import annotations

import pytest

from tests.aws_endpoint import MotoServer


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server):
    """An empty local AWS account for each test."""
    moto_server.reset()
    return moto_server
