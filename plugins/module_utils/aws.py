# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What our AWS modules add to amazon.aws's AnsibleAWSModule, and nothing else.

The base gives every module the common options (credentials, region, endpoint, validate_certs,
aws_ca_bundle, aws_config), fail_json_aws with the AWS error code, request id and traceback, and
client construction. Ours adds the endpoint fallback of the collection (HELIX_AWS_ENDPOINT_URL,
then amazon.aws's AWS_URL) and adaptive retries with jittered back-off for every client.
"""

from __future__ import annotations

from ansible.module_utils.basic import env_fallback
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule fails with a clear message before any call

    class BotoCoreError(Exception):
        """Stands in for botocore's when it is missing."""

    class ClientError(BotoCoreError):
        """Stands in for botocore's when it is missing."""


# ClientError and BotoCoreError are exported: modules catch both.
__all__ = ["S3_MISSING", "BotoCoreError", "ClientError", "HelixAWSModule", "error_code"]

# What S3 answers for an object that is not there (GetObject, HeadObject).
S3_MISSING = ("NoSuchKey", "404", "NotFound")

ENDPOINT_URL_ENV = ["HELIX_AWS_ENDPOINT_URL", "AWS_URL"]

# Adaptive retries back off with jitter on throttling and transient errors, for every call,
# paginators and waiters included.
CLIENT_CONFIG = {"retries": {"max_attempts": 10, "mode": "adaptive"}}


class HelixAWSModule(AnsibleAWSModule):
    """AnsibleAWSModule with the collection's endpoint fallback and client retries."""

    def __init__(self, argument_spec, **kwargs):
        spec = dict(endpoint_url=dict(aliases=["aws_endpoint_url"], fallback=(env_fallback, ENDPOINT_URL_ENV)))
        spec.update(argument_spec)
        super().__init__(argument_spec=spec, **kwargs)

    def client(self, service, retry_decorator=None, **extra_params):
        extra_params.setdefault("config", CLIENT_CONFIG)
        return super().client(service, retry_decorator=retry_decorator, **extra_params)


def error_code(error):
    return getattr(error, "response", {}).get("Error", {}).get("Code", "")
