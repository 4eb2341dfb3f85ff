"""tests/moto_server.py: the TLS-only statement never applies on a TLS-only endpoint; others still do."""

from __future__ import annotations

import json

from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult

from tests import moto_server

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
