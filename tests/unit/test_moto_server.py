"""tests/moto_server.py: the TLS-only statement never applies on a TLS-only endpoint; others still do.
ECR tokens: moto's fixed one, or with a token key, signed ones that expire after their TTL.
Launch templates: their tags as they are now."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import time
from datetime import datetime, timezone

import boto3
from moto import mock_aws
from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult

from tests import moto_server
from tests.ansible_run import ROOT

BUCKET = "arn:aws:s3:::demo"


def policy(*statements):
    return IAMPolicy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


def test_importing_the_server_installs_the_evaluation():
    assert IAMPolicyStatement.is_action_permitted is moto_server.is_action_permitted


def test_the_tls_only_deny_does_not_apply_to_requests_over_tls():
    tls_only = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [BUCKET, f"{BUCKET}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    assert policy(tls_only).is_action_permitted("s3:GetObject", f"{BUCKET}/join/worker") == PermissionResult.NEUTRAL


def test_other_denies_still_apply():
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": BUCKET}
    assert policy(deny).is_action_permitted("s3:DeleteBucket", BUCKET) == PermissionResult.DENIED


def test_a_launch_template_shows_the_tags_added_after_it_was_made():
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        template = ec2.create_launch_template(
            LaunchTemplateName="helix-lt", LaunchTemplateData={"InstanceType": "t3.small"}
        )
        template_id = template["LaunchTemplate"]["LaunchTemplateId"]
        ec2.create_tags(Resources=[template_id], Tags=[{"Key": "owner", "Value": "helix"}])
        described = ec2.describe_launch_templates(LaunchTemplateNames=["helix-lt"])["LaunchTemplates"][0]
    assert described["Tags"] == [{"Key": "owner", "Value": "helix"}]


# --- ECR authorization tokens that expire (HELIX_ECR_TOKEN_KEY, HELIX_ECR_TOKEN_TTL) ---


def ecr_front():
    spec = importlib.util.spec_from_file_location("ecr_front", ROOT / "localcloud" / "ecr_front.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def authorization_data(**kwargs):
    with mock_aws():
        return boto3.client("ecr", region_name="us-east-1").get_authorization_token(**kwargs)["authorizationData"]


def password(data):
    user, secret = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    assert user == "AWS"
    return secret


def test_without_a_token_key_moto_issues_its_fixed_token(monkeypatch):
    monkeypatch.delenv("HELIX_ECR_TOKEN_KEY", raising=False)
    (data,) = authorization_data()
    assert password(data) == "123456789012-auth-token"
    assert data["expiresAt"] == datetime(2015, 1, 1, tzinfo=timezone.utc)


def test_with_a_token_key_each_token_is_signed_and_expires_after_the_ttl(monkeypatch, tmp_path):
    key = os.urandom(32)
    (tmp_path / "key").write_bytes(key)
    monkeypatch.setenv("HELIX_ECR_TOKEN_KEY", str(tmp_path / "key"))
    monkeypatch.setenv("HELIX_ECR_TOKEN_TTL", "600")
    before = time.time()
    (first,), (second,) = authorization_data(), authorization_data()
    assert password(first) != password(second)  # a new token each time, as ECR issues
    expires = first["expiresAt"].timestamp()
    assert int(before) + 600 <= expires <= time.time() + 600
    assert first["proxyEndpoint"] == "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
    front = ecr_front()
    claims = front.check_password(key, password(first), now=expires - 1)
    assert (claims["account"], claims["region"], claims["expires"]) == ("123456789012", "us-east-1", expires)
    assert front.check_password(key, password(first), now=expires) is None  # expired at expiresAt
    assert front.check_password(os.urandom(32), password(first), now=before) is None  # another key


def test_the_ttl_defaults_to_ecrs_12_hours(monkeypatch, tmp_path):
    (tmp_path / "key").write_bytes(os.urandom(32))
    monkeypatch.setenv("HELIX_ECR_TOKEN_KEY", str(tmp_path / "key"))
    monkeypatch.delenv("HELIX_ECR_TOKEN_TTL", raising=False)
    (data,) = authorization_data()
    assert abs(data["expiresAt"].timestamp() - time.time() - 12 * 3600) < 60
