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
    template and spread round-robin over O(subnet_ids).
  - Node N is named C(<cluster_name>-<role>-NN) and always placed in subnet (N - 1) mod the number of
    subnets, so a node keeps its name and availability zone for its whole life.
  - Launches with one RunInstances call per subnet, terminates with one call, and waits for the whole
    batch with one EC2 waiter.
  - Scale-down removes the highest-numbered nodes first and reports them in RV(to_terminate).
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
      - Subnets to spread the nodes over, in order; node N goes to subnet (N - 1) mod length.
      - Required when nodes must be created.
    type: list
    elements: str
    default: []
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
  - helix.kubeadm_aws.aws
attributes:
  check_mode:
    support: full
    description: Returns the plan without launching or terminating anything.
  diff_mode:
    support: full
    description: Shows the node names before and after.
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
  description: The nodes of the group after the change (the planned ones in check mode), by number.
  returned: always
  type: list
  elements: dict
  sample:
    - id: i-0123456789abcdef0
      name: demo-worker-01
      role: worker
      number: 1
      az: us-east-1a
      subnet_id: subnet-0123
      private_ip: 10.42.0.12
      public_ip: 203.0.113.7
      state: running
to_create:
  description: Names of the nodes launched (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [demo-worker-04, demo-worker-05]
to_terminate:
  description: Nodes terminated (or, in check mode, that would be), as C(name), C(id) and C(private_ip).
  returned: always
  type: list
  elements: dict
  sample: [{name: demo-worker-05, id: i-0123456789abcdef0, private_ip: 10.42.16.9}]
"""

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import ec2_nodes
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import AwsModule, BotoCoreError, ClientError
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.node_plan import (
    batches_by_subnet,
    node_name,
    plan_nodes,
)
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.tagging import ROLE_TAG, cluster_tags


def current_state(ec2, params):
    numbered, unnumbered = {}, []
    for instance in ec2_nodes.describe_group(ec2, params["cluster_name"], params["role"]):
        number = ec2_nodes.node_number(instance)
        if number is None or number in numbered:
            unnumbered.append(instance)
        else:
            numbered[number] = instance
    unnumbered.sort(key=lambda i: i["InstanceId"])
    return numbered, unnumbered


def check_can_create(module, params, create):
    if create and not params["subnet_ids"]:
        module.fail_json(msg=f"node_group: subnet_ids is required to create {len(create)} {params['role']} node(s)")
    if create and not params["launch_template"]:
        module.fail_json(
            msg=f"node_group: launch_template is required to create {len(create)} {params['role']} node(s)"
        )


def launch_nodes(ec2, params, create):
    """Launch the numbered nodes, one RunInstances call per subnet; returns {number: instance}."""
    tags = cluster_tags(params["cluster_name"], "infrastructure", **{ROLE_TAG: params["role"]})
    tags.update(params["tags"])
    launched = {}
    for subnet_id, numbers in batches_by_subnet(create, params["subnet_ids"]).items():
        instances = ec2_nodes.launch(ec2, params["launch_template"], subnet_id, len(numbers), tags)
        for number, instance in zip(numbers, instances):
            launched[number] = instance
    return launched


def name_nodes(ec2, params, numbered_instances):
    for number, instance in numbered_instances.items():
        name = node_name(params["cluster_name"], params["role"], number)
        ec2_nodes.name_instance(ec2, instance["InstanceId"], name, number)


def ensure(aws, ec2):
    params = aws.params
    cluster, role = params["cluster_name"], params["role"]
    numbered, unnumbered = current_state(ec2, params)
    keep, adopt, create, terminate_numbers, terminate_unnumbered = plan_nodes(
        list(numbered), [i["InstanceId"] for i in unnumbered], params["count"]
    )
    by_id = {i["InstanceId"]: i for i in unnumbered}
    to_terminate = [
        {
            "name": node_name(cluster, role, n),
            "id": numbered[n]["InstanceId"],
            "private_ip": numbered[n].get("PrivateIpAddress"),
        }
        for n in terminate_numbers
    ]
    to_terminate += [
        {"name": None, "id": i, "private_ip": by_id[i].get("PrivateIpAddress")} for i in terminate_unnumbered
    ]
    before = sorted(node_name(cluster, role, n) for n in numbered)
    changed = bool(create or adopt or to_terminate)
    check_can_create(aws, params, create)

    final = {n: numbered[n] for n in keep}
    final.update({number: by_id[instance_id] for instance_id, number in adopt.items()})
    if not aws.check_mode and changed:
        terminate_ids = [t["id"] for t in to_terminate]
        ec2_nodes.terminate(ec2, terminate_ids)
        launched = launch_nodes(ec2, params, create)
        name_nodes(ec2, params, {**{n: by_id[i] for i, n in adopt.items()}, **launched})
        final.update(launched)
        if params["wait"]:
            ec2_nodes.wait(
                ec2, "instance_running", [i["InstanceId"] for i in launched.values()], params["wait_timeout"]
            )
            ec2_nodes.wait(ec2, "instance_terminated", terminate_ids, params["wait_timeout"])
        if launched:
            fresh = {i["InstanceId"]: i for i in ec2_nodes.describe_ids(ec2, [i["InstanceId"] for i in final.values()])}
            final = {n: fresh.get(i["InstanceId"], i) for n, i in final.items()}

    nodes = [ec2_nodes.node_facts(final[n], role, n, node_name(cluster, role, n)) for n in sorted(final)]
    for number in create if aws.check_mode else []:
        nodes.append(
            {"id": None, "name": node_name(cluster, role, number), "role": role, "number": number, "state": "planned"}
        )
    after = sorted(node["name"] for node in nodes)
    return dict(
        changed=changed,
        nodes=sorted(nodes, key=lambda node: node["number"]),
        to_create=[node_name(cluster, role, n) for n in create],
        to_terminate=to_terminate,
        diff=dict(before={"nodes": before}, after={"nodes": after}),
    )


def main():
    argument_spec = dict(
        cluster_name=dict(type="str", required=True),
        role=dict(type="str", required=True, choices=["control_plane", "worker"]),
        count=dict(type="int", required=True),
        launch_template=dict(type="str"),
        subnet_ids=dict(type="list", elements="str", default=[]),
        tags=dict(type="dict", default={}),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=600),
    )
    aws = AwsModule(argument_spec, supports_check_mode=True)
    if aws.params["count"] < 0:
        aws.fail_json(msg=f"node_group: count must be 0 or more, got {aws.params['count']}")
    ec2 = aws.client("ec2")
    try:
        result = ensure(aws, ec2)
    except (BotoCoreError, ClientError) as e:
        aws.fail_aws(
            e, f"node_group: could not reconcile the {aws.params['role']} nodes of {aws.params['cluster_name']}"
        )
    aws.exit_json(**result)


if __name__ == "__main__":
    main()
