#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: node_group
short_description: Keep exactly N EC2 nodes of one cluster role, spread over availability zones
version_added: 0.1.0
description:
  - Makes exactly O(count) instances of one node role of a cluster exist, launched from a launch
    template and kept balanced over O(subnet_ids) (one subnet per availability zone), the way an
    Auto Scaling group balances its zones.
  - The nodes of a group are interchangeable. They all carry the Name tag C(<cluster_name>-<role>)
    and are told apart by instance id and private DNS name.
  - New nodes go to the subnets with the fewest nodes. Scale-down removes the newest node of the
    fullest subnet, one at a time, and reports the nodes it removes in RV(to_terminate).
  - Launches with one RunInstances call per subnet, with every tag given at launch, terminates with one
    call and waits for the whole batch with one EC2 waiter; the number of API calls does not grow with
    the number of nodes.
  - A new instance profile is invisible to EC2 for a few seconds; RunInstances is retried with
    jittered back-off for up to two minutes while EC2 answers C(InvalidParameterValue) for it.
  - In check mode nothing changes and RV(to_create) / RV(to_terminate) give the plan.
author:
  - Helix platform engineering (@helix)
options:
  cluster_name:
    description: Name of the cluster; instances are found by the tag C(kubernetes.io/cluster/<cluster_name>=owned).
    type: str
    required: true
  role:
    description: The node role of this group.
    type: str
    required: true
    choices: [control_plane, worker]
  count:
    description: How many instances of this role must exist.
    type: int
    required: true
  launch_template:
    description: Name of the launch template new instances are made from (its default version).
    type: str
  subnet_ids:
    description:
      - Subnets to balance the nodes over; on a tie the first subnet gets the next node.
      - Required when nodes must be created.
    type: list
    elements: str
    default: []
  private_ip:
    description:
      - Fixed private IPv4 address of the node, for a group of at most one node (the control plane,
        whose address kubeadm's C(controlPlaneEndpoint) names, so it survives a replacement).
      - O(subnet_ids) must then hold just the subnet of that address.
    type: str
  tags:
    description: Extra tags for new instances, their volumes and network interfaces.
    type: dict
    default: {}
  wait:
    description: Wait until new instances run and removed ones are terminated.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for the whole batch.
    type: int
    default: 600
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - helix.kubeadm_aws.aws
attributes:
  check_mode:
    support: full
    description: Returns the plan without launching or terminating anything.
  diff_mode:
    support: full
    description: Shows the number of nodes per subnet before and after.
"""

EXAMPLES = r"""
- name: Three workers spread over the cluster's subnets
  helix.kubeadm_aws.node_group:
    cluster_name: demo
    role: worker
    count: 3
    launch_template: demo-worker
    subnet_ids: "{{ subnet_ids }}"
  register: workers

- name: Which workers would a scale-down remove?
  helix.kubeadm_aws.node_group:
    cluster_name: demo
    role: worker
    count: 1
  check_mode: true
  register: scale_down_plan

- name: Remove every worker
  helix.kubeadm_aws.node_group:
    cluster_name: demo
    role: worker
    count: 0
"""

RETURN = r"""
nodes:
  description: The live nodes of the group after the change, oldest first (in check mode, before it).
  returned: always
  type: list
  elements: dict
  sample:
    - id: i-0123456789abcdef0
      name: ip-10-42-0-12.ec2.internal
      role: worker
      az: us-east-1a
      subnet_id: subnet-0123
      private_ip: 10.42.0.12
      public_ip: 203.0.113.7
      state: running
to_create:
  description: How many nodes were launched (or, in check mode, would be) in which subnet.
  returned: always
  type: list
  elements: dict
  sample: [{subnet_id: subnet-0123, count: 2}, {subnet_id: subnet-4567, count: 1}]
to_terminate:
  description: The nodes terminated (or, in check mode, that would be), in the form of RV(nodes).
  returned: always
  type: list
  elements: dict
  sample: [{name: ip-10-42-16-9.ec2.internal, id: i-0123456789abcdef0, private_ip: 10.42.16.9}]
"""

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import ec2_nodes
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import BotoCoreError, ClientError, HelixAWSModule
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.node_plan import group_name, plan_nodes
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.tagging import ROLE_TAG, cluster_tags


def check_can_launch(module, params, count):
    for option in ("subnet_ids", "launch_template"):
        if count > 0 and not params[option]:
            module.fail_json(msg=f"node_group: {option} is required to create {count} {params['role']} node(s)")


def check_private_ip(module, params):
    if params["private_ip"] and (params["count"] > 1 or len(params["subnet_ids"]) > 1):
        module.fail_json(
            msg="node_group: private_ip fixes the address of a single node: count must be 0 or 1 and subnet_ids "
            f"the one subnet of {params['private_ip']}, got count={params['count']}, subnet_ids={params['subnet_ids']}"
        )


def launch_nodes(ec2, params, launch):
    """One RunInstances call per subnet; every node carries its tags from the start."""
    tags = cluster_tags(params["cluster_name"], "infrastructure", **{ROLE_TAG: params["role"]})
    tags["Name"] = group_name(params["cluster_name"], params["role"])
    tags.update(params["tags"])
    return [
        instance
        for subnet_id, count in launch.items()
        for instance in ec2_nodes.launch(
            ec2, params["launch_template"], subnet_id, count, tags, private_ip=params["private_ip"]
        )
    ]


def per_subnet(instances, launch=None):
    counts = dict(launch or {})
    for instance in instances:
        counts[instance["SubnetId"]] = counts.get(instance["SubnetId"], 0) + 1
    return dict(sorted(counts.items()))


def ensure(aws, ec2):
    params = aws.params
    role = params["role"]
    current = ec2_nodes.describe_group(ec2, params["cluster_name"], role)
    check_can_launch(aws, params, params["count"] - len(current))
    launch, terminate_ids = plan_nodes(
        [(i["InstanceId"], i["SubnetId"]) for i in current],
        params["count"],
        params["subnet_ids"],
    )
    leaving = [i for i in current if i["InstanceId"] in terminate_ids]
    final = [i for i in current if i["InstanceId"] not in terminate_ids]
    changed = bool(launch or leaving)

    if changed and not aws.check_mode:
        ec2_nodes.terminate(ec2, terminate_ids)
        launched = launch_nodes(ec2, params, launch)
        launched_ids = [i["InstanceId"] for i in launched]
        if params["wait"]:
            ec2_nodes.wait(ec2, "instance_running", launched_ids, params["wait_timeout"])
            ec2_nodes.wait(ec2, "instance_terminated", terminate_ids, params["wait_timeout"])
        if launched_ids:
            launched = ec2_nodes.describe_ids(ec2, launched_ids)
        final += sorted(launched, key=ec2_nodes.oldest_first)

    return dict(
        changed=changed,
        nodes=[ec2_nodes.node_facts(i, role) for i in final],
        to_create=[{"subnet_id": subnet, "count": count} for subnet, count in launch.items()],
        to_terminate=[ec2_nodes.node_facts(i, role) for i in leaving],
        diff=dict(
            before={"nodes_per_subnet": per_subnet(current)},
            after={"nodes_per_subnet": per_subnet(final, launch if aws.check_mode else None)},
        ),
    )


def main():
    argument_spec = dict(
        cluster_name=dict(type="str", required=True),
        role=dict(type="str", required=True, choices=["control_plane", "worker"]),
        count=dict(type="int", required=True),
        launch_template=dict(type="str"),
        subnet_ids=dict(type="list", elements="str", default=[]),
        private_ip=dict(type="str"),
        tags=dict(type="dict", default={}),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=600),
    )
    aws = HelixAWSModule(argument_spec, supports_check_mode=True)
    if aws.params["count"] < 0:
        aws.fail_json(msg=f"node_group: count must be 0 or more, got {aws.params['count']}")
    check_private_ip(aws, aws.params)
    ec2 = aws.client("ec2")
    try:
        result = ensure(aws, ec2)
    except ec2_nodes.InstanceProfileNotVisible as e:
        aws.fail_json(
            msg=f"node_group: could not launch {aws.params['role']} nodes from {aws.params['launch_template']}: {e}. "
            "Check that the launch template's instance profile exists and holds its role."
        )
    except (BotoCoreError, ClientError) as e:
        aws.fail_json_aws(
            e, msg=f"node_group: could not reconcile the {aws.params['role']} nodes of {aws.params['cluster_name']}"
        )
    aws.exit_json(**result)


if __name__ == "__main__":
    main()
