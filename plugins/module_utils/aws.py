# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The thin AWS layer of our modules: one argument spec, one way to get a client."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    BOTO3_IMPORT_ERROR = traceback.format_exc()

    class BotoCoreError(Exception):
        """Stands in for botocore's when it is missing; AwsModule then fails before any call."""

    class ClientError(BotoCoreError):
        """Stands in for botocore's when it is missing."""

else:
    BOTO3_IMPORT_ERROR = None

# ClientError and BotoCoreError are exported: modules catch both.
__all__ = ["AWS_ARGUMENT_SPEC", "AwsModule", "BotoCoreError", "ClientError", "error_code"]

AWS_ARGUMENT_SPEC = dict(
    region=dict(type="str", aliases=["aws_region"], fallback=(env_fallback, ["AWS_REGION", "AWS_DEFAULT_REGION"])),
    endpoint_url=dict(type="str", aliases=["aws_endpoint_url"], fallback=(env_fallback, ["HELIX_AWS_ENDPOINT_URL"])),
    access_key=dict(type="str", aliases=["aws_access_key_id", "aws_access_key"], no_log=False),
    secret_key=dict(type="str", aliases=["aws_secret_access_key", "aws_secret_key"], no_log=True),
    session_token=dict(type="str", aliases=["aws_session_token"], no_log=True),
    profile=dict(type="str", aliases=["aws_profile"]),
    aws_ca_bundle=dict(type="path", fallback=(env_fallback, ["AWS_CA_BUNDLE"])),
)

# Adaptive retries back off with jitter on throttling and transient errors.
_CLIENT_CONFIG = dict(retries={"max_attempts": 10, "mode": "adaptive"})


class AwsModule:
    """AnsibleModule with the common AWS options merged in and a client factory."""

    def __init__(self, argument_spec, **kwargs):
        spec = dict(AWS_ARGUMENT_SPEC)
        spec.update(argument_spec)
        self.module = AnsibleModule(argument_spec=spec, **kwargs)
        if BOTO3_IMPORT_ERROR:
            self.module.fail_json(msg=missing_required_lib("boto3 and botocore"), exception=BOTO3_IMPORT_ERROR)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self._session = None

    def session(self):
        if self._session is None:
            p = self.params
            self._session = boto3.session.Session(
                aws_access_key_id=p["access_key"],
                aws_secret_access_key=p["secret_key"],
                aws_session_token=p["session_token"],
                profile_name=p["profile"],
                region_name=p["region"],
            )
        return self._session

    def client(self, service):
        return self.session().client(
            service,
            endpoint_url=self.params["endpoint_url"] or None,
            verify=self.params["aws_ca_bundle"] or None,
            config=Config(**_CLIENT_CONFIG),
        )

    def fail_aws(self, error, msg):
        """Fail with the AWS error code and message, never with request parameters."""
        code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
        self.module.fail_json(msg=f"{msg}: {code}: {error}")

    def exit_json(self, **kwargs):
        self.module.exit_json(**kwargs)

    def fail_json(self, **kwargs):
        self.module.fail_json(**kwargs)


def error_code(error):
    return getattr(error, "response", {}).get("Error", {}).get("Code", "")
