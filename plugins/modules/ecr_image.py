#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ecr_image
short_description: Push container images from local archives to ECR repositories
version_added: 0.1.0
description:
  - Pushes the image of each OCI image layout archive (a tar with C(oci-layout), C(index.json) and
    C(blobs/sha256/<hex>), as C(demo_app/build_images.py) writes it) to its ECR repository under a tag,
    with the Docker Registry HTTP API v2 over HTTPS. No container engine and no registry client program
    are needed.
  - The manifest's bytes are pushed as they are in the archive, so an image's digest in ECR is the
    digest that its archive's C(index.json) names.
  - Authenticates with one ECR authorization token (C(ecr:GetAuthorizationToken)) for every image. The token is
    never returned or logged.
  - Every archive is read and every repository looked up before anything is pushed.
  - When the tag already points to an archive's manifest, nothing is uploaded for it and nothing changes.
    Otherwise only the blobs the repository lacks are uploaded, then the manifest is put under the tag.
    The images are pushed in the order given.
author:
  - Helix platform engineering (@helix)
options:
  images:
    description: The images to push, each an archive and the repository it goes to.
    type: list
    elements: dict
    required: true
    suboptions:
      archive:
        description:
          - Path of the image archive on the host the module runs on.
          - Its C(index.json) must name exactly one image, whose manifest has the media type
            C(application/vnd.docker.distribution.manifest.v2+json) or C(application/vnd.oci.image.manifest.v1+json).
        type: path
        required: true
      repository:
        description:
          - Name of the ECR repository, for example C(demo/api). It must exist; M(helix.kubeadm_aws.ecr_repositories)
            makes it.
        type: str
        required: true
  tag:
    description: Tag to put every image under, for example C(0.1.0).
    type: str
    required: true
  registry_url:
    description:
      - Base URL of the registry, when it is not the C(proxyEndpoint) of the authorization token; for example
        C(https://127.0.0.1:5056) for a local registry that stands in for ECR.
      - Its certificate is checked as the AWS endpoint's is, with O(aws_ca_bundle) when it is set and
        not at all with O(validate_certs=false).
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - helix.kubeadm_aws.aws
notes:
  - The caller needs C(ecr:GetAuthorizationToken) and C(ecr:DescribeRepositories), and on each repository
    C(ecr:BatchGetImage), C(ecr:BatchCheckLayerAvailability), C(ecr:InitiateLayerUpload),
    C(ecr:UploadLayerPart), C(ecr:CompleteLayerUpload) and C(ecr:PutImage).
  - Each blob is uploaded in one request (POST, then a monolithic PUT), streamed from the archive.
  - In a repository with immutable tags, pushing other content under an existing tag fails.
attributes:
  check_mode:
    support: full
    description: Reads each tag and which blobs each repository has, and uploads nothing.
  diff_mode:
    support: full
    description: Shows, by repository, the digest the tag pointed to before and points to after.
"""

EXAMPLES = r"""
- name: Push the demo's images
  helix.kubeadm_aws.ecr_image:
    images:
      - archive: "{{ playbook_dir }}/../.cache/images/api.tar"
        repository: demo/api
      - archive: "{{ playbook_dir }}/../.cache/images/ui.tar"
        repository: demo/ui
    tag: "0.1.0"
  register: pushed

- name: Deploy by digest
  ansible.builtin.debug:
    msg: "images: {{ pushed.images | map(attribute='image') }}"

- name: Push to the local cloud's registry, which stands in for ECR
  helix.kubeadm_aws.ecr_image:
    images:
      - archive: /tmp/images/ui.tar
        repository: demo/ui
    tag: "0.1.0"
    registry_url: https://127.0.0.1:5056
    endpoint_url: https://127.0.0.1:5055
    aws_ca_bundle: .cache/moto/cert.pem
"""

RETURN = r"""
images:
  description: Each image as pushed (in check mode, as it would be), in the order given.
  returned: success
  type: list
  elements: dict
  contains:
    repository:
      description: The repository, as given.
      type: str
      sample: demo/api
    digest:
      description: Digest of the image's manifest, which the tag points to.
      type: str
      sample: sha256:0b9f8b7d6a3f1e0c5d4b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5
    image:
      description: The image by digest, with the ECR registry host of the authorization token.
      type: str
      sample: "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/api@\
        sha256:0b9f8b7d6a3f1e0c5d4b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5"
    changed:
      description: Whether the tag was moved to this image (in check mode, would be).
      type: bool
      sample: false
    uploaded_blobs:
      description:
        - Number of blobs (config and layers) uploaded because the repository did not have them.
        - In check mode, the number that would be uploaded.
      type: int
      sample: 2
tag:
  description: The tag, as given.
  returned: success
  type: str
  sample: "0.1.0"
"""

import contextlib  # noqa: E402 - imports follow the documentation in Ansible modules
import re  # noqa: E402

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import (  # noqa: E402
    BotoCoreError,
    ClientError,
    HelixAWSModule,
    error_code,
)
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.ecr import authorization  # noqa: E402
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.oci_registry import (  # noqa: E402
    ArchiveError,
    ImageArchive,
    Registry,
    RegistryError,
)

TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def missing_repository(aws, repository):
    aws.fail_json(
        msg=f"ecr_image: ECR repository {repository} does not exist in {aws.region}; the bootstrap layer makes it"
    )


def check_repository(aws, ecr, repository):
    try:
        ecr.describe_repositories(repositoryNames=[repository])
    except (BotoCoreError, ClientError) as e:
        if error_code(e) == "RepositoryNotFoundException":
            missing_repository(aws, repository)
        aws.fail_json_aws(e, msg=f"ecr_image: could not look up ECR repository {repository}")


def get_credentials(aws, ecr):
    """(registry host, user, password) of an ECR authorization token; the secrets hidden from every output."""
    try:
        data = authorization(aws, ecr)
    except (BotoCoreError, ClientError) as e:
        aws.fail_json_aws(e, msg="ecr_image: could not get an ECR authorization token")
    return data["host"], data["user"], data["password"]


def registry_for(aws, host, user, password):
    """The registry at registry_url or the token's host, with the TLS checks of the AWS client."""
    params = aws.params
    ca_path = params["aws_ca_bundle"] if params["validate_certs"] else None
    url = params["registry_url"] or f"https://{host}"
    return Registry(url, user, password, validate_certs=params["validate_certs"], ca_path=ca_path)


def push(registry, archive, repository, tag, check_mode):
    """Upload the blobs the repository lacks, then put the manifest under the tag; (changed, before, uploaded)."""
    before = registry.tag_digest(repository, tag)
    if before == archive.digest:
        return False, before, 0
    missing = [digest for digest in archive.blobs if not registry.has_blob(repository, digest)]
    if not check_mode:
        for digest in missing:
            with archive.open_blob(digest) as stream:
                registry.upload_blob(repository, digest, archive.blobs[digest], stream)
        stored = registry.put_manifest(repository, tag, archive.media_type, archive.manifest)
        if stored and stored != archive.digest:
            raise RegistryError(
                f"PUT manifest {tag}", detail=f"the registry stored it as {stored}, not {archive.digest}"
            )
    return True, before, len(missing)


def ensure_pushed(aws, archives, tag):
    """archives: (repository, ImageArchive) pairs, every repository checked before the first push."""
    ecr = aws.client("ecr")
    for repository, _archive in archives:
        check_repository(aws, ecr, repository)
    host, user, password = get_credentials(aws, ecr)
    registry = registry_for(aws, host, user, password)
    images, before, after = [], {}, {}
    for repository, archive in archives:
        try:
            changed, before_digest, uploaded = push(registry, archive, repository, tag, aws.check_mode)
        except RegistryError as e:
            if "NAME_UNKNOWN" in e.codes:
                missing_repository(aws, repository)
            aws.fail_json(msg=f"ecr_image: pushing {repository}:{tag} to {registry.url} failed: {e}")
        images.append(
            dict(
                repository=repository,
                digest=archive.digest,
                image=f"{host}/{repository}@{archive.digest}",
                changed=changed,
                uploaded_blobs=uploaded,
            )
        )
        if before_digest:
            before[repository] = before_digest
        after[repository] = archive.digest
    return dict(
        changed=any(image["changed"] for image in images),
        images=images,
        tag=tag,
        diff=dict(before=before, after=after),
    )


def main():
    argument_spec = dict(
        images=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(archive=dict(type="path", required=True), repository=dict(type="str", required=True)),
        ),
        tag=dict(type="str", required=True),
        registry_url=dict(type="str"),
    )
    aws = HelixAWSModule(argument_spec, supports_check_mode=True)
    tag = aws.params["tag"]
    if not TAG.fullmatch(tag):
        aws.fail_json(msg=f"ecr_image: {tag!r} is not an image tag (letters, digits, _ . -; at most 128 characters)")
    with contextlib.ExitStack() as stack:
        archives = []
        for image in aws.params["images"]:
            try:
                archive = ImageArchive(image["archive"])
            except ArchiveError as e:
                aws.fail_json(msg=f"ecr_image: {image['repository']}:{tag}: {e}")
            archives.append((image["repository"], stack.enter_context(archive)))
        result = ensure_pushed(aws, archives, tag)
    aws.exit_json(**result)


if __name__ == "__main__":
    main()
