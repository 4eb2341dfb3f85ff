"""The local cloud (localcloud/localcloud.sh) on a port of its own: an AWS endpoint whose instances boot as nodes."""

from __future__ import annotations

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
    """`with LocalCloud(port) as cloud:` starts an empty local cloud and removes it, nodes and all."""

    def __init__(self, port):
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.ca_bundle = str(ROOT / ".cache/moto/cert.pem")
        self.state = Path(f"/run/helix-localcloud/{port}")
        self.env = {}

    def __enter__(self):
        subprocess.run([LOCALCLOUD, "up", str(self.port)], cwd=ROOT, check=True)
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
