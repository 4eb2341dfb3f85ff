from __future__ import annotations

import os

import pytest

from tests.local_cloud import LocalCloud, cannot_host

# Its own port and VPC range, so that it runs beside `make demo`'s cloud (5055, 10.42.0.0/16).
PORT = int(os.environ.get("HELIX_E2E_PORT", "5070"))
# ECR tokens that live 2 minutes (AWS: 12 hours), so that the test sees a pull after the first token expired.
ECR_TOKEN_TTL = 120


@pytest.fixture(scope="module")
def local_cloud():
    why = cannot_host()
    if why:
        pytest.skip(f"this machine cannot host local cloud nodes: {why}")
    with LocalCloud(PORT, ecr_token_ttl=ECR_TOKEN_TTL) as cloud:
        yield cloud
