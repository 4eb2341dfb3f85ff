"""Put a prebuilt set of images into the scenario's ECR: each tier's image under the tag (PutImage).

    python put_images.py ENDPOINT_URL CLUSTER_NAME TAG

kwok pulls nothing and runs nothing, so the images are only manifests; what the role does with them is
what it does on a real cluster: DescribeImages for the tag, and the manifests name each image by the
digest ECR reports. Prints `<tier> <digest>` for each. Credentials and AWS_CA_BUNDLE from the environment.
"""

from __future__ import annotations

import hashlib
import json
import sys

import boto3

MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def main(endpoint_url, cluster_name, tag):
    ecr = boto3.client("ecr", endpoint_url=endpoint_url, region_name="us-east-1")
    for tier in ("ui", "api", "db"):
        blob = "sha256:" + hashlib.sha256(f"{tier} {tag}".encode()).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": blob},
                "layers": [{"mediaType": LAYER, "size": 2, "digest": blob}],
            },
            separators=(",", ":"),
        )
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        ecr.put_image(
            repositoryName=f"{cluster_name}/{tier}",
            imageManifest=manifest,
            imageManifestMediaType=MEDIA_TYPE,
            imageTag=tag,
            imageDigest=digest,
        )
        print(tier, digest)


if __name__ == "__main__":
    main(*sys.argv[1:])
