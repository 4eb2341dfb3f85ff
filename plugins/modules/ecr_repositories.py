#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ecr_repositories
short_description: Tagged ECR repositories for a cluster's images
version_added: 0.1.0
description:
  - Makes the named ECR repositories exist with scan on push, AES256 encryption and the cluster's
    ownership tags, so that the cluster's teardown finds them by tag.
  - Written because C(community.aws.ecs_ecr) cannot tag repositories.
  - Repositories are removed with the bootstrap layer by M(helix.kubeadm_aws.layer_teardown).
author:
  - Helix platform engineering (@helix)
options:
  cluster_name:
    description: Name of the cluster that owns the repositories.
    type: str
    required: true
  names:
    description: Repository names, for example C(demo/api).
    type: list
    elements: str
    required: true
  scan_on_push:
    description: Scan every pushed image for vulnerabilities.
    type: bool
    default: true
  image_tag_mutability:
    description: Whether an image tag can be pushed again with another image.
    type: str
    choices: [MUTABLE, IMMUTABLE]
    default: MUTABLE
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - helix.kubeadm_aws.aws
attributes:
  check_mode:
    support: full
    description: Reports what would be created or changed.
  diff_mode:
    support: none
    description: Not supported.
"""

EXAMPLES = r"""
- name: Repositories for the demo application
  helix.kubeadm_aws.ecr_repositories:
    cluster_name: demo
    names: [demo/ui, demo/api, demo/db]
"""

RETURN = r"""
repositories:
  description: The repositories, in the order of O(names).
  returned: always
  type: list
  elements: dict
  sample:
    - name: demo/api
      uri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/api
      arn: arn:aws:ecr:us-east-1:123456789012:repository/demo/api
"""

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import (
    BotoCoreError,
    ClientError,
    HelixAWSModule,
    error_code,
)
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.tagging import cluster_tags, to_dict, to_list


def describe(ecr, names):
    found = {}
    for name in names:
        try:
            found[name] = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        except (BotoCoreError, ClientError) as e:
            if error_code(e) != "RepositoryNotFoundException":
                raise
    return found


def create(ecr, params, name, tags):
    return ecr.create_repository(
        repositoryName=name,
        imageTagMutability=params["image_tag_mutability"],
        imageScanningConfiguration={"scanOnPush": params["scan_on_push"]},
        encryptionConfiguration={"encryptionType": "AES256"},
        tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )["repository"]


def update(ecr, check_mode, params, repo, tags):
    changed = False
    if repo.get("imageScanningConfiguration", {}).get("scanOnPush") != params["scan_on_push"]:
        changed = True
        if not check_mode:
            ecr.put_image_scanning_configuration(
                repositoryName=repo["repositoryName"],
                imageScanningConfiguration={"scanOnPush": params["scan_on_push"]},
            )
    if repo.get("imageTagMutability") != params["image_tag_mutability"]:
        changed = True
        if not check_mode:
            ecr.put_image_tag_mutability(
                repositoryName=repo["repositoryName"], imageTagMutability=params["image_tag_mutability"]
            )
    current = to_dict(ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags"))
    missing = {k: v for k, v in tags.items() if current.get(k) != v}
    if missing:
        changed = True
        if not check_mode:
            ecr.tag_resource(resourceArn=repo["repositoryArn"], tags=to_list(missing))
    return changed


def main():
    argument_spec = dict(
        cluster_name=dict(type="str", required=True),
        names=dict(type="list", elements="str", required=True),
        scan_on_push=dict(type="bool", default=True),
        image_tag_mutability=dict(type="str", choices=["MUTABLE", "IMMUTABLE"], default="MUTABLE"),
    )
    aws = HelixAWSModule(argument_spec, supports_check_mode=True)
    params = aws.params
    ecr = aws.client("ecr")
    tags = cluster_tags(params["cluster_name"], "bootstrap")
    changed = False
    repositories = []
    try:
        existing = describe(ecr, params["names"])
        for name in params["names"]:
            repo = existing.get(name)
            if repo is None:
                changed = True
                repo = {"repositoryName": name} if aws.check_mode else create(ecr, params, name, tags)
            else:
                changed |= update(ecr, aws.check_mode, params, repo, tags)
            repositories.append({"name": name, "uri": repo.get("repositoryUri"), "arn": repo.get("repositoryArn")})
    except (BotoCoreError, ClientError) as e:
        aws.fail_json_aws(e, msg="ecr_repositories: could not reconcile the repositories")
    aws.exit_json(changed=changed, repositories=repositories)


if __name__ == "__main__":
    main()
