"""The decisions of helix.kubeadm_aws.ecr_pull_secret, without AWS or a cluster."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.helix.kubeadm_aws.plugins.modules import ecr_pull_secret as m

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
HOURS = timedelta(hours=6)


def secret(host=HOST, expires=NOW + timedelta(hours=10), auths_host=HOST, registry_annotation=True):
    annotations = {m.EXPIRES_AT: m.format_time(expires)} if expires else {}
    if registry_annotation:
        annotations[m.REGISTRY] = host
    config = {"auths": {auths_host: {"auth": "dG9rZW4="}}}
    return {
        "type": m.SECRET_TYPE,
        "metadata": {"annotations": annotations},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


@pytest.mark.parametrize(
    "stored, reason",
    [
        (None, "missing"),
        (secret(), None),
        (secret(expires=NOW + HOURS), "expiring"),
        (secret(expires=NOW - timedelta(minutes=1)), "expiring"),
        (secret(expires=None), "no recorded expiry"),
        (secret(host="210987654321.dkr.ecr.us-east-1.amazonaws.com"), "for another registry"),
        (secret(auths_host="other.example"), "for another registry"),
        (secret(registry_annotation=False), "for another registry"),
        ({"metadata": {}, "data": {".dockerconfigjson": "bm90IGpzb24="}}, "for another registry"),
    ],
    ids=[
        "missing",
        "fresh",
        "at-threshold",
        "expired",
        "no-expiry",
        "other-account",
        "other-auths",
        "no-registry",
        "bad",
    ],
)
def test_stale_reason(stored, reason):
    assert m.stale_reason(stored, HOST, HOURS, NOW) == reason


def test_the_secret_body_holds_the_token_for_the_registry_host():
    token = {"token": "QVdTOnB3", "password": "pw", "host": HOST, "issued": NOW, "expires": NOW + timedelta(hours=12)}
    body = m.secret_body({"name": "pull"}, "demo", token)
    assert body["type"] == "kubernetes.io/dockerconfigjson"
    assert body["metadata"]["annotations"] == {
        m.ISSUED_AT: "2026-11-25T12:00:00Z",
        m.EXPIRES_AT: "2026-11-26T00:00:00Z",
        m.REGISTRY: HOST,
    }
    config = json.loads(base64.b64decode(body["data"][".dockerconfigjson"]))
    assert config == {"auths": {HOST: {"username": "AWS", "password": "pw", "auth": "QVdTOnB3"}}}
    assert m.summary(body) == {
        "type": m.SECRET_TYPE,
        "registry": HOST,
        "issued_at": "2026-11-25T12:00:00Z",
        "expires_at": "2026-11-26T00:00:00Z",
    }


class FakeAws:
    """Just enough of AwsModule for get_token: an ECR client and the AnsibleModule bits it touches."""

    def __init__(self, expires_at):
        self.expires_at = expires_at
        self.module = self
        self.no_log_values = set()
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)

    def client(self, service):
        assert service == "ecr"
        return self

    def get_authorization_token(self, **kwargs):
        self.kwargs = kwargs
        token = base64.b64encode(b"AWS:secret-password").decode()
        return {
            "authorizationData": [
                {"authorizationToken": token, "expiresAt": self.expires_at, "proxyEndpoint": f"https://{HOST}"}
            ]
        }


def test_get_token_hides_the_token_and_keeps_a_real_expiry():
    expires = datetime.now(timezone.utc) + timedelta(hours=12)
    aws = FakeAws(expires)
    token = m.get_token(aws, "123456789012")
    assert aws.kwargs == {"registryIds": ["123456789012"]}
    assert token["host"] == HOST and token["password"] == "secret-password" and token["expires"] == expires
    assert {token["token"], "secret-password"} <= aws.no_log_values
    assert not aws.warnings


def test_get_token_assumes_twelve_hours_when_the_endpoint_reports_a_past_expiry():
    aws = FakeAws(datetime(2015, 1, 1, tzinfo=timezone.utc))  # what moto reports
    token = m.get_token(aws, None)
    assert aws.kwargs == {}
    assert token["expires"] - token["issued"] == timedelta(hours=12)
    assert "not in the future" in aws.warnings[0]
