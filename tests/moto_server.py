"""moto's server, with the one condition of the cluster bucket's policy that moto does not evaluate.

moto evaluates a bucket policy's statements without their Condition (moto/s3/models.py,
put_bucket_policy: "Conditions are not taken into account"), so the TLS-only statement every
cluster bucket carries,
    {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
denies every object request, although AWS applies it only to requests not sent over TLS
(IAM User Guide, "AWS global condition context keys", aws:SecureTransport; S3 User Guide,
"Enforce encryption in transit"). This server only speaks TLS, so aws:SecureTransport is true
for every request it gets, and such a statement never applies here.

    python tests/moto_server.py -H 127.0.0.1 -p PORT -c CERT -k KEY     (moto_server's arguments)
"""

from __future__ import annotations

import sys

from moto.iam import access_control
from moto.server import main

NOT_OVER_TLS = {"Bool": {"aws:SecureTransport": "false"}}
_evaluate = access_control.IAMPolicyStatement.is_action_permitted


def _condition(statement):
    condition = statement.get("Condition") or {}
    return {operator: {key: str(value).lower() for key, value in keys.items()} for operator, keys in condition.items()}


def is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
    if _condition(self._statement) == NOT_OVER_TLS:
        return access_control.PermissionResult.NEUTRAL
    return _evaluate(self, action, resource, principal, incoming_condition_values)


access_control.IAMPolicyStatement.is_action_permitted = is_action_permitted

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
