"""A strict AWS stand-in: a proxy in front of moto that enforces three AWS rules moto does not model.

Every request is forwarded to moto byte for byte (tests/reverse_proxy.py) unless a rule refuses it;
refusals are recorded so that a test can assert that a rule fired. The rules, their sources and
how each is detected are in docs/testing.md ("What the local endpoint does not model").
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import boto3
from botocore.exceptions import ClientError

from tests.aws_endpoint import REGION, certificate
from tests.aws_protocol import credential_scope, ec2_error, object_read, query_parameters, s3_access_denied
from tests.reverse_proxy import ReverseProxy

NETWORK_INTERFACES_WITH_INSTANCE_LEVEL_NETWORK = "network interfaces with an instance-level subnet or groups"
INSTANCE_PROFILE_NOT_YET_VISIBLE = "instance profile not yet visible to EC2"
S3_403_WITHOUT_LIST_BUCKET = "S3 403 instead of 404 without s3:ListBucket"

PROFILE_CHANGES = {"CreateInstanceProfile", "AddRoleToInstanceProfile"}


@dataclass(frozen=True)
class Refusal:
    rule: str
    operation: str
    subject: str


class StrictAws(ReverseProxy):
    """Listens at `url` with the moto server's certificate and forwards to `moto` (a MotoServer).

    moto's admin credentials (`moto.credentials`) read launch templates; the credentials given to
    register_credentials() are the only ones rule 3 applies to: it asks moto, with them, whether
    they may list the key.
    """

    def __init__(self, moto, profile_delay=6):
        super().__init__(moto.url, moto.ca_bundle, *certificate())
        self.moto = moto
        self.profile_delay = profile_delay
        self._profile_changed_at = {}
        self._registered = {}
        self._clients = {}
        self._refusals = []
        self._lock = threading.Lock()

    def register_credentials(self, access_key_id, secret_access_key, session_token=None):
        with self._lock:
            self._registered[access_key_id] = {
                "aws_access_key_id": access_key_id,
                "aws_secret_access_key": secret_access_key,
                "aws_session_token": session_token,
            }

    @property
    def refusals(self):
        with self._lock:
            return list(self._refusals)

    def _refuse(self, rule, operation, subject, response):
        with self._lock:
            self._refusals.append(Refusal(rule, operation, subject))
        return response

    def _client(self, service, credentials):
        """A boto3 client straight to moto, signed with the given credentials."""
        cache_key = (service, credentials["aws_access_key_id"])
        with self._lock:
            if cache_key not in self._clients:
                self._clients[cache_key] = boto3.session.Session(**credentials).client(
                    service, endpoint_url=self.moto.url, region_name=REGION, verify=self.moto.ca_bundle
                )
            return self._clients[cache_key]

    def answer(self, request):
        access_key_id, service = credential_scope(request)
        params = query_parameters(request) if service in ("ec2", "iam") else {}
        action = params.get("Action", "")
        if service == "ec2" and action == "RunInstances":
            template = self._launch_template_data(params)
            refusal = self._network_interface_refusal(params, template) or self._profile_refusal(params, template)
            if refusal:
                return refusal
        response = self.forward(request)
        if service == "iam" and action in PROFILE_CHANGES and response.status == 200:
            with self._lock:
                self._profile_changed_at[params.get("InstanceProfileName", "")] = time.monotonic()
        if service == "s3" and response.status == 404:
            return self._s3_missing_key(request, access_key_id, response)
        return response

    def _launch_template_data(self, params):
        """LaunchTemplateData of the version a RunInstances names; {} without one, or one moto does not know."""
        name = params.get("LaunchTemplate.LaunchTemplateName")
        template_id = params.get("LaunchTemplate.LaunchTemplateId")
        if not (name or template_id):
            return {}
        which = {"LaunchTemplateName": name} if name else {"LaunchTemplateId": template_id}
        ec2 = self._client("ec2", self.moto.credentials)
        try:
            versions = ec2.describe_launch_template_versions(
                **which, Versions=[params.get("LaunchTemplate.Version", "$Default")]
            )["LaunchTemplateVersions"]
        except ClientError:
            return {}  # moto answers the RunInstances with its own error
        return versions[0]["LaunchTemplateData"] if versions else {}

    # Rule 1. RunInstances (Amazon EC2 API Reference,
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html):
    # SubnetId and SecurityGroupId "If you specify a network interface, you must specify any subnets /
    # security groups as part of the network interface instead of using this parameter" - also when
    # the interface comes from the launch template. EC2 answers InvalidParameterCombination.
    def _network_interface_refusal(self, params, template):
        interfaces = template.get("NetworkInterfaces") or any(p.startswith("NetworkInterface.") for p in params)
        if not interfaces:
            return None
        if "SubnetId" in params:
            message = "Network interfaces and an instance-level subnet ID may not be specified on the same request"
        elif any(p.startswith(("SecurityGroupId.", "SecurityGroup.")) for p in params):
            message = (
                "Network interfaces and an instance-level security groups may not be specified on the same request"
            )
        else:
            return None
        subject = params.get("LaunchTemplate.LaunchTemplateName") or params.get("LaunchTemplate.LaunchTemplateId", "")
        return self._refuse(
            NETWORK_INTERFACES_WITH_INSTANCE_LEVEL_NETWORK,
            "RunInstances",
            subject,
            ec2_error("InvalidParameterCombination", message),
        )

    # Rule 2. IAM is eventually consistent (IAM User Guide, "Troubleshoot IAM", "Changes that I make
    # are not always immediately visible"):
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
    # For several seconds after CreateInstanceProfile or AddRoleToInstanceProfile, RunInstances with
    # that profile fails with InvalidParameterValue (kOps and amazon.aws.ec2_instance retry it).
    def _profile_refusal(self, params, template):
        given = {
            part: params[f"IamInstanceProfile.{part}"]
            for part in ("Name", "Arn")
            if f"IamInstanceProfile.{part}" in params
        }
        profile = given or template.get("IamInstanceProfile", {})
        name = profile.get("Name") or profile.get("Arn", "").rsplit("/", 1)[-1]
        with self._lock:
            changed_at = self._profile_changed_at.get(name)
        if changed_at is None or time.monotonic() - changed_at >= self.profile_delay:
            return None
        parameter, value = ("name", name) if "Name" in profile else ("arn", profile["Arn"])
        message = (
            f"Value ({value}) for parameter iamInstanceProfile.{parameter} is invalid. "
            f"Invalid IAM Instance Profile {'name' if parameter == 'name' else 'ARN'}"
        )
        return self._refuse(
            INSTANCE_PROFILE_NOT_YET_VISIBLE, "RunInstances", name, ec2_error("InvalidParameterValue", message)
        )

    # Rule 3. GetObject (Amazon S3 API Reference,
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html; HeadObject alike):
    # "If the object you request doesn't exist, the error that Amazon S3 returns
    # depends on whether you also have the s3:ListBucket permission. [...] If you don't have the
    # s3:ListBucket permission, Amazon S3 returns an HTTP status code 403 Access Denied error."
    def _s3_missing_key(self, request, access_key_id, response):
        read = object_read(request)
        if read is None or (request.method == "GET" and b"<Code>NoSuchKey</Code>" not in response.body):
            return response
        with self._lock:
            credentials = self._registered.get(access_key_id)
        if credentials is None:
            return response
        bucket, key = read
        try:
            self._client("s3", credentials).list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "AccessDenied":
                return response
            operation = "GetObject" if request.method == "GET" else "HeadObject"
            return self._refuse(
                S3_403_WITHOUT_LIST_BUCKET, operation, f"{bucket}/{key}", s3_access_denied(request.method)
            )
        return response
