#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: layer_teardown
short_description: Delete every AWS resource of one cluster layer, found by the cluster tag
version_added: 0.1.0
description:
  - Finds the AWS resources of one layer of a cluster by the tag C(kubernetes.io/cluster/<cluster_name>=owned)
    (IAM by the path C(/helix/<cluster_name>/), ECR by the name prefix C(<cluster_name>/) confirmed by that tag,
    the S3 bucket by its exact name O(bucket) confirmed by that tag) and deletes them in dependency order.
  - Because resources are found, not remembered, a half-created layer is deleted too, and deleting twice is
    a no-op.
  - O(layer=infrastructure) first sweeps what the cluster itself made in AWS and tagged as its own
    (the AWS cloud provider and the EBS CSI driver tag it C(kubernetes.io/cluster/<cluster_name>=owned)),
    classic and ELBv2 load balancers of Services of type LoadBalancer, then ELBv2 target groups.
    It then removes instances (terminated with one call and one wait), Elastic IPs (disassociated
    first, since an associated public address keeps the internet gateway from being detached),
    launch templates, instance profiles, IAM roles with their policies, detached network interfaces,
    volumes that outlive their instances (those of PersistentVolumeClaims), security groups, subnets,
    route tables, internet gateways and VPCs.
  - Kinds are found and deleted one after the other, so what an earlier kind frees (a volume detached
    from a terminated instance) is swept too. Deletes that AWS refuses while something it removes by
    itself still holds on (C(DependencyViolation)) are retried with back-off for a few minutes.
  - O(layer=bootstrap) removes the key pair, the ECR repositories with their images and the S3 bucket named
    O(bucket) with every object version.
author:
  - Helix platform engineering (@helix)
options:
  cluster_name:
    description: Name of the cluster.
    type: str
    required: true
  layer:
    description: The layer whose resources are deleted.
    type: str
    required: true
    choices: [bootstrap, infrastructure]
  bucket:
    description:
      - The exact name of the cluster's S3 bucket, deleted with O(layer=bootstrap) if it carries the cluster tag.
      - Required with O(layer=bootstrap), so that the bucket is never left behind unnoticed. S3 cannot filter
        buckets by tag, and this module never searches for buckets by a part of their name (a look-alike name
        may be another team's bucket).
      - Not used with O(layer=infrastructure).
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - helix.kubeadm_aws.aws
attributes:
  check_mode:
    support: full
    description: Lists what would be deleted.
  diff_mode:
    support: none
    description: Not supported.
"""

EXAMPLES = r"""
- name: Delete the infrastructure layer of the demo cluster
  helix.kubeadm_aws.layer_teardown:
    cluster_name: demo
    layer: infrastructure

- name: Delete the bootstrap layer of the demo cluster, with its bucket
  helix.kubeadm_aws.layer_teardown:
    cluster_name: demo
    layer: bootstrap
    bucket: demo-123456789012-us-east-1
"""

RETURN = r"""
deleted:
  description:
    - What was deleted, in deletion order, as C(kind) and C(id) (an ARN for ELBv2 resources, an allocation id
      for Elastic IPs, a name for classic load balancers, IAM, ECR and S3).
    - In check mode, what would be deleted as found now; volumes and interfaces that a deletion frees
      (by terminating the instance they are attached to) are only found when it runs.
  returned: always
  type: list
  elements: dict
  sample:
    - kind: load_balancer
      id: arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/a1b2c3/0123456789abcdef
    - kind: instance
      id: i-0123456789abcdef0
    - kind: elastic_ip
      id: eipalloc-0123456789abcdef0
    - kind: volume
      id: vol-0123456789abcdef0
    - kind: vpc
      id: vpc-0123
"""

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import teardown
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import BotoCoreError, ClientError, HelixAWSModule


def main():
    argument_spec = dict(
        cluster_name=dict(type="str", required=True),
        layer=dict(type="str", required=True, choices=sorted(teardown.LAYER_KINDS)),
        bucket=dict(type="str"),
    )
    aws = HelixAWSModule(argument_spec, supports_check_mode=True, required_if=[("layer", "bootstrap", ["bucket"])])
    cluster, layer = aws.params["cluster_name"], aws.params["layer"]
    api = teardown.Api(aws.client)
    try:
        act = teardown.find if aws.check_mode else teardown.remove
        found = act(api, cluster, teardown.LAYER_KINDS[layer], aws.params["bucket"])
    except (BotoCoreError, ClientError) as e:
        aws.fail_json_aws(e, msg=f"layer_teardown: could not delete the {layer} layer of {cluster}")
    aws.exit_json(changed=bool(found), deleted=[{"kind": kind, "id": rid} for kind, rid in found])


if __name__ == "__main__":
    main()
