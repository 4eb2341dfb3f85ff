"""A moto server on a free loopback port, over TLS: the local AWS endpoint of the tests.

It speaks TLS, as AWS does, so boto3's and amazon.aws's TLS paths run as they do against AWS.
All servers of a test session share one self-signed certificate, exported as AWS_CA_BUNDLE so that
boto3 in this process and in every ansible-playbook it starts trusts it.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"
ADMIN_USER = "admin"
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
# moto checks no request while it has served fewer than INITIAL_NO_AUTH_ACTION_COUNT: these three
# make the admin user whose keys sign everything after them.
ADMIN_SETUP_REQUESTS = 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.lru_cache(maxsize=1)
def certificate():
    """(cert, key) paths of a self-signed certificate for 127.0.0.1, made once per session."""
    directory = Path(tempfile.mkdtemp(prefix="helix-moto-tls-"))
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        + ["-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    os.environ["AWS_CA_BUNDLE"] = str(cert)
    return str(cert), str(key)


class MotoServer:
    """moto_server on a free loopback port.

    With enforce_iam, moto checks every request's signature and IAM policies, as AWS does, after
    the few it takes to create an admin user (AdministratorAccess-like inline policy); the admin's
    keys are then `credentials`, used by `client()` and to be given to anything else that calls it.
    reset() forgets that user too, so an enforcing server is not for the per-test `aws` fixtures.
    """

    def __init__(self, log_dir: Path, enforce_iam=False):
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_bundle, self._key = certificate()
        self.log = open(log_dir / f"moto-{self.port}.log", "wb")  # noqa: SIM115 - lives as long as the server
        self.process = None
        self.enforce_iam = enforce_iam
        self.credentials = dict(CREDENTIALS)

    def start(self, timeout=30):
        server = Path(__file__).with_name("moto_server.py")
        environment = dict(os.environ)
        if self.enforce_iam:
            environment["INITIAL_NO_AUTH_ACTION_COUNT"] = str(ADMIN_SETUP_REQUESTS)
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(server),
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-c",
                self.ca_bundle,
                "-k",
                self._key,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1, context=self._tls())
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"moto server did not answer at {self.url}")
        if self.enforce_iam:
            self.credentials = self._create_admin()
        return self

    def _create_admin(self):
        iam = self.client("iam")
        iam.create_user(UserName=ADMIN_USER)
        iam.put_user_policy(
            UserName=ADMIN_USER, PolicyName="AdministratorAccess", PolicyDocument=json.dumps(ADMIN_POLICY)
        )
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def stop(self):
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.close()

    def reset(self):
        """Forget every resource: each test module starts from an empty account."""
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), context=self._tls())

    def _tls(self):
        return ssl.create_default_context(cafile=self.ca_bundle)

    def client(self, service):
        return boto3.client(
            service, endpoint_url=self.url, region_name=REGION, verify=self.ca_bundle, **self.credentials
        )
