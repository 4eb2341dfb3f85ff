"""moto's server, with the one condition of the cluster bucket's policy that moto does not evaluate.

moto evaluates a bucket policy's statements without their Condition (moto/s3/models.py,
put_bucket_policy: "Conditions are not taken into account"), so the TLS-only statement every
cluster bucket carries,
    {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
denies every object request, although AWS applies it only to requests not sent over TLS
(IAM User Guide, "AWS global condition context keys", aws:SecureTransport; S3 User Guide,
"Enforce encryption in transit"). This server only speaks TLS, so aws:SecureTransport is true
for every request it gets, and such a statement never applies here.

It also plays the EC2 service where the local cloud needs it. EC2 gets an instance's credentials by
assuming its instance profile's role as the service principal ec2.amazonaws.com, which the role's
trust policy names (IAM User Guide, "Using an IAM role to grant permissions to applications running
on Amazon EC2 instances"); no IAM user may assume such a role. The local cloud's data plane
(localcloud/reconciler.py) signs as the IAM user `localcloud-ec2`, which this server treats as that
service principal in a trust policy, and only there. moto itself fails with a TypeError (HTTP 500) on a
trust policy without an "AWS" principal; here such a statement simply does not match an IAM caller.

And, given a token key, it issues ECR authorization tokens that expire. moto's GetAuthorizationToken
answers one fixed password, `<account>-auth-token`, with expiresAt 2015-01-01; ECR issues a new token
each time, valid for 12 hours (ECR User Guide, "Private registry authentication"). With
HELIX_ECR_TOKEN_KEY naming a file of secret bytes, each token's password is
`helix1.<base64url of {"account", "region", "issued", "expires"}>.<base64url of their HMAC-SHA256 under
the key>` and expiresAt is `expires`: now + HELIX_ECR_TOKEN_TTL seconds (default 43200, ECR's 12 h).
The local registry's front (localcloud/ecr_front.py) holds the same key and refuses a password it did
not sign or whose time is up. Without the variable, moto's own fixed token stands.

And DescribeLaunchTemplates answers each template's tags as they are now, as EC2 does (Amazon EC2 API
Reference, LaunchTemplate: "Tags - The tags for the launch template"); moto answers the tags the
template was created with (moto/ec2/models/launch_templates.py: `self.tags = self.get_tags()` in
__init__), so tags added by CreateTags never show and a run that checks them tags again every time.

    python tests/moto_server.py -H 127.0.0.1 -p PORT -c CERT -k KEY     (moto_server's arguments)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from datetime import datetime, timezone

from moto.core.responses import ActionResult
from moto.ec2.models.launch_templates import LaunchTemplate
from moto.ecr.responses import ECRResponse
from moto.iam import access_control
from moto.server import main

NOT_OVER_TLS = {"Bool": {"aws:SecureTransport": "false"}}
EC2_SERVICE_USER = "localcloud-ec2"
EC2_SERVICE = "ec2.amazonaws.com"
_evaluate = access_control.IAMPolicyStatement.is_action_permitted
_check_principal = access_control.IAMPolicyStatement._check_principal
_check_trust = access_control.IAMRequestBase._check_role_trust_relationship


def _condition(statement):
    condition = statement.get("Condition") or {}
    return {operator: {key: str(value).lower() for key, value in keys.items()} for operator, keys in condition.items()}


def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
    if _condition(self._statement) == NOT_OVER_TLS:
        return access_control.PermissionResult.NEUTRAL
    return _evaluate(self, action, resource, principal, incoming_condition_values)


def as_list(value):
    return value if isinstance(value, list) else [value]


def trusts_ec2(trust_policy):
    statements = as_list(json.loads(trust_policy).get("Statement", []))
    return any(
        s.get("Effect") == "Allow"
        and "sts:AssumeRole" in as_list(s.get("Action", []))
        and isinstance(s.get("Principal"), dict)
        and EC2_SERVICE in as_list(s["Principal"].get("Service", []))
        for s in statements
    )


def check_role_trust_relationship(self, role_arn):
    if self._access_key.arn.endswith(f":user/{EC2_SERVICE_USER}"):
        return trusts_ec2(self.backend.get_role_by_arn(role_arn).assume_role_policy_document)
    return _check_trust(self, role_arn)


def check_principal(self, principal):
    expected = self._statement.get("Principal")
    if isinstance(expected, dict) and "AWS" not in expected:
        return False
    return _check_principal(self, principal)


ECR_TOKEN_TTL = 12 * 3600  # seconds, as on ECR


def ecr_password(key, claims):
    """An ECR token password: the claims and their HMAC-SHA256 under `key` (localcloud/ecr_front.py checks it)."""
    payload = base64.urlsafe_b64encode(json.dumps(claims, sort_keys=True).encode()).rstrip(b"=")
    mac = base64.urlsafe_b64encode(hmac.new(key, payload, hashlib.sha256).digest()).rstrip(b"=")
    return f"helix1.{payload.decode()}.{mac.decode()}"


def get_authorization_token(self):
    key_file = os.environ.get("HELIX_ECR_TOKEN_KEY")
    if not key_file:
        return _get_authorization_token(self)
    with open(key_file, "rb") as key:
        secret = key.read()
    issued = time.time()
    expires = int(issued) + int(os.environ.get("HELIX_ECR_TOKEN_TTL") or ECR_TOKEN_TTL)
    auth_data = []
    for registry_id in self._get_param("registryIds") or [self.current_account]:
        claims = {"account": registry_id, "region": self.region, "issued": issued, "expires": expires}
        auth_data.append(
            {
                "authorizationToken": base64.b64encode(f"AWS:{ecr_password(secret, claims)}".encode()).decode(),
                "expiresAt": datetime.fromtimestamp(expires, timezone.utc),
                "proxyEndpoint": f"https://{registry_id}.dkr.ecr.{self.region}.amazonaws.com",
            }
        )
    return ActionResult({"authorizationData": auth_data})


_get_authorization_token = ECRResponse.get_authorization_token
ECRResponse.get_authorization_token = get_authorization_token
access_control.IAMPolicyStatement.is_action_permitted = is_action_permitted
access_control.IAMPolicyStatement._check_principal = check_principal
access_control.IAMRequestBase._check_role_trust_relationship = check_role_trust_relationship
# The setter ignores the snapshot __init__ assigns.
LaunchTemplate.tags = property(LaunchTemplate.get_tags, lambda self, value: None)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
