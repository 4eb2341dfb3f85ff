"""Keep the local endpoint's ECR in step with the local registry, as ECR's API and data plane are one on AWS.

On AWS an image pushed to <account>.dkr.ecr.<region>.amazonaws.com is at once an image of the
repository: DescribeImages and BatchGetImage list it under its tag and manifest digest. Locally the
registry (localcloud/registry.sh) and moto's ECR are two programs. The registry notifies this server
of every manifest push and delete (distribution's notifications); it records each in moto's ECR with
PutImage, giving the registry's digest (PutImage's imageDigest; moto would otherwise derive one of its
own from the layers), or removes it with BatchDeleteImage.

    python localcloud/ecr_sync.py --listen PORT --registry https://127.0.0.1:REGISTRY_PORT --endpoint URL

Administrator keys and AWS_CA_BUNDLE come from the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

MANIFESTS = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
log = logging.getLogger("ecr-sync")


class EcrSync:
    def __init__(self, registry, endpoint):
        self.registry = registry.rstrip("/")
        self.ecr = boto3.client("ecr", endpoint_url=endpoint, region_name="us-east-1")
        self.tls = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])

    def authorization(self):
        token = self.ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        return "Basic " + token  # the token is base64 of "AWS:<password>", as basic auth wants

    def manifest(self, repository, digest, media_type):
        request = urllib.request.Request(
            f"{self.registry}/v2/{repository}/manifests/{digest}",
            headers={"Accept": media_type, "Authorization": self.authorization()},
        )
        with urllib.request.urlopen(request, context=self.tls, timeout=10) as response:
            return response.read().decode()

    def handle(self, event):
        target = event.get("target", {})
        repository, digest, tag = target.get("repository"), target.get("digest"), target.get("tag")
        if target.get("mediaType") not in MANIFESTS or not repository or not digest:
            return
        if event.get("action") == "push" and tag:
            manifest = self.manifest(repository, digest, target["mediaType"])
            self.ecr.put_image(
                repositoryName=repository,
                imageManifest=manifest,
                imageManifestMediaType=target["mediaType"],
                imageTag=tag,
                imageDigest=digest,
            )
            log.info("%s:%s -> %s recorded in ECR", repository, tag, digest)
        elif event.get("action") == "delete":
            self.ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageDigest": digest}])
            log.info("%s@%s removed from ECR", repository, digest)


def handler_for(sync):
    class Events(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            failed = False
            for event in json.loads(body or b"{}").get("events", []):
                try:
                    sync.handle(event)
                except Exception as error:  # the registry retries a failed delivery; say what failed
                    log.error("%s %s: %s", event.get("action"), event.get("target", {}).get("repository"), error)
                    failed = True
            self.send_response(500 if failed else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    return Events


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--endpoint", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sync = EcrSync(args.registry, args.endpoint)
    ThreadingHTTPServer(("127.0.0.1", args.listen), handler_for(sync)).serve_forever()


if __name__ == "__main__":
    main()
