"""The local cloud (localcloud/localcloud.sh) on a port of its own: an AWS endpoint whose instances boot as nodes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import boto3

from tests.ansible_run import ROOT

REGION = "us-east-1"
LOCALCLOUD = str(ROOT / "localcloud/localcloud.sh")


def cannot_host():
    """Why this machine cannot host nodes, or '' when it can."""
    done = subprocess.run([LOCALCLOUD, "can-host"], capture_output=True, text=True, check=False)
    return done.stderr.strip() if done.returncode else ""


class LocalCloud:
    """`with LocalCloud(port) as cloud:` starts an empty local cloud and removes it, nodes and all.

    ecr_token_ttl: the lifetime in seconds of the ECR tokens its endpoint issues (HELIX_ECR_TOKEN_TTL of
    localcloud.sh up; default ECR's 12 hours), for a test that waits for one to expire.
    """

    def __init__(self, port, ecr_token_ttl=None):
        self.port = port
        self.ecr_token_ttl = ecr_token_ttl
        self.url = f"https://127.0.0.1:{port}"
        self.ca_bundle = str(ROOT / ".cache/moto/cert.pem")
        self.state = Path(f"/run/helix-localcloud/{port}")
        self.env = {}

    def __enter__(self):
        env = dict(os.environ)
        if self.ecr_token_ttl is not None:
            env["HELIX_ECR_TOKEN_TTL"] = str(int(self.ecr_token_ttl))
        subprocess.run([LOCALCLOUD, "up", str(self.port)], cwd=ROOT, check=True, env=env)
        admin = (ROOT / f".cache/moto/admin-{self.port}.env").read_text().split()
        self.env = {**dict(line.split("=", 1) for line in admin), "AWS_CA_BUNDLE": self.ca_bundle}
        return self

    def __exit__(self, *_):
        subprocess.run([LOCALCLOUD, "down", str(self.port)], cwd=ROOT, check=False)

    def client(self, service):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            verify=self.ca_bundle,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )
