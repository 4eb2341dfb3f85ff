from __future__ import annotations

from typing import NamedTuple

import pytest

from tests.aws_endpoint import MotoServer
from tests.strict_aws import StrictAws


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """A fresh local AWS endpoint (moto server on a free loopback port) per test module."""
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


class StrictEndpoint(NamedTuple):
    moto: MotoServer
    proxy: StrictAws


@pytest.fixture(scope="module")
def strict_aws(tmp_path_factory):
    """moto with IAM enforced, behind the strict proxy (tests/strict_aws.py), per test module.

    Clients and playbooks go to `proxy.url` with `moto.credentials` (an admin's keys).
    """
    moto = MotoServer(tmp_path_factory.mktemp("moto"), enforce_iam=True).start()
    try:
        proxy = StrictAws(moto).start()
        try:
            yield StrictEndpoint(moto, proxy)
        finally:
            proxy.stop()
    finally:
        moto.stop()
