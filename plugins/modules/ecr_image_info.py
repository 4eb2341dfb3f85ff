#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ecr_image_info
short_description: The images of an ECR repository under given tags, with their digests
version_added: 0.1.0
description:
  - Reads the images that tags of an ECR repository point to, with C(ecr:DescribeImages), and names the
    tags that point to no image.
  - Written because neither C(amazon.aws) nor C(community.aws) has a module for C(DescribeImages).
  - A playbook deploys an image by the digest this returns, so that a tag pushed again later never
    leaves a node on the image it pulled before.
author:
  - Helix platform engineering (@helix)
options:
  repository:
    description: Name of the ECR repository, for example C(demo/api).
    type: str
    required: true
  tags:
    description:
      - The tags to look up. Each found tag's image is in RV(images), each missing one in RV(missing_tags).
      - Empty lists every tagged image of the repository.
    type: list
    elements: str
    default: []
  registry_id:
    description: Account id of the registry; empty means the caller's account.
    type: str
    default: ""
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - helix.kubeadm_aws.aws
notes:
  - The caller needs C(ecr:DescribeImages) on the repository.
  - A repository that does not exist fails the module, naming it.
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Reads only.
"""

EXAMPLES = r"""
- name: Read the digest of the api image under the tag 0.1.0
  helix.kubeadm_aws.ecr_image_info:
    repository: demo/api
    tags: ["0.1.0"]
  register: api_image

- name: Fail naming the image when the tag points to nothing
  ansible.builtin.assert:
    that: api_image.missing_tags | length == 0
    fail_msg: "demo/api:0.1.0 is not in ECR"

- name: Deploy by digest
  ansible.builtin.debug:
    msg: "image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/api@{{ api_image.images[0].image_digest }}"
"""

RETURN = r"""
images:
  description:
    - The images found, one per tag asked for in the order of O(tags) (an image under two of them is listed
      twice), or every tagged image when O(tags) is empty.
  returned: success
  type: list
  elements: dict
  contains:
    tag:
      description: The tag asked for; with O(tags) empty, the first of RV(images[].image_tags).
      type: str
      sample: "0.1.0"
    image_digest:
      description: Digest of the image's manifest.
      type: str
      sample: sha256:0b9f8b7d6a3f1e0c5d4b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5
    image_tags:
      description: Every tag that points to the image.
      type: list
      elements: str
      sample: ["0.1.0", "latest"]
    image_pushed_at:
      description: When the image was pushed, ISO 8601.
      type: str
      sample: "2026-12-03T14:00:00+00:00"
    image_size_in_bytes:
      description: Size of the image as ECR reports it.
      type: int
      sample: 15728640
    image_manifest_media_type:
      description: Media type of the image's manifest, when ECR reports it.
      type: str
      sample: application/vnd.docker.distribution.manifest.v2+json
missing_tags:
  description: The tags of O(tags) that point to no image of the repository.
  returned: success
  type: list
  elements: str
  sample: ["0.2.0"]
repository:
  description: The repository, as given.
  returned: success
  type: str
  sample: demo/api
"""

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import (  # noqa: E402
    BotoCoreError,
    ClientError,
    HelixAWSModule,
    error_code,
)


def image_record(detail, tag):
    pushed = detail.get("imagePushedAt")
    record = dict(
        tag=tag,
        image_digest=detail["imageDigest"],
        image_tags=detail.get("imageTags", []),
        image_pushed_at=pushed.isoformat() if hasattr(pushed, "isoformat") else pushed,
        image_size_in_bytes=detail.get("imageSizeInBytes"),
    )
    if detail.get("imageManifestMediaType"):
        record["image_manifest_media_type"] = detail["imageManifestMediaType"]
    return record


def describe_tag(ecr, base, tag):
    """The image the tag points to; None when there is none."""
    try:
        details = ecr.describe_images(imageIds=[{"imageTag": tag}], **base)["imageDetails"]
    except ClientError as e:
        if error_code(e) == "ImageNotFoundException":
            return None
        raise
    return details[0] if details else None


def describe_all(ecr, base):
    paginator = ecr.get_paginator("describe_images")
    for page in paginator.paginate(filter={"tagStatus": "TAGGED"}, **base):
        yield from page["imageDetails"]


def read_images(ecr, repository, tags, registry_id):
    base = dict(repositoryName=repository, **({"registryId": registry_id} if registry_id else {}))
    if not tags:
        details = sorted(describe_all(ecr, base), key=lambda d: sorted(d.get("imageTags") or [""]))
        return [image_record(d, sorted(d.get("imageTags") or [""])[0]) for d in details], []
    images, missing = [], []
    for tag in tags:
        detail = describe_tag(ecr, base, tag)
        if detail is None:
            missing.append(tag)
        else:
            images.append(image_record(detail, tag))
    return images, missing


def main():
    argument_spec = dict(
        repository=dict(type="str", required=True),
        tags=dict(type="list", elements="str", default=[]),
        registry_id=dict(type="str", default=""),
    )
    aws = HelixAWSModule(argument_spec, supports_check_mode=True)
    repository = aws.params["repository"]
    ecr = aws.client("ecr")
    try:
        images, missing = read_images(ecr, repository, aws.params["tags"], aws.params["registry_id"])
    except (BotoCoreError, ClientError) as e:
        if error_code(e) == "RepositoryNotFoundException":
            aws.fail_json(
                msg=f"ecr_image_info: ECR repository {repository} does not exist in {aws.region};"
                " the bootstrap layer makes it"
            )
        aws.fail_json_aws(e, msg=f"ecr_image_info: could not read the images of ECR repository {repository}")
    aws.exit_json(changed=False, images=images, missing_tags=missing, repository=repository)


if __name__ == "__main__":
    main()
