"""Images recorded straight in an endpoint's ECR (PutImage), for tests that need a tag without a registry."""

from __future__ import annotations

import hashlib
import json

MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def put_image(ecr, repository, tag, content):
    """An image under the tag whose manifest names one layer (content: str or bytes); the manifest's digest, as
    a registry computes it."""
    content = content.encode() if isinstance(content, str) else content
    layer = "sha256:" + hashlib.sha256(content).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": layer},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2, "digest": layer}],
        },
        separators=(",", ":"),
    )
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    ecr.put_image(
        repositoryName=repository,
        imageManifest=manifest,
        imageManifestMediaType=MEDIA_TYPE,
        imageTag=tag,
        imageDigest=digest,
    )
    return digest
