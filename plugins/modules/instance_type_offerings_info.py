#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_type_offerings_info
short_description: Which availability zones offer which EC2 instance types
version_added: 0.2.0
description:
  - Reads EC2's instance type offerings per availability zone (C(DescribeInstanceTypeOfferings)) for
    the given instance types, in one paginated call, and reports the pairs of instance type and zone
    that are not offered.
  - Lets a preflight fail before anything is made, naming the zone, instead of a RunInstances that
    fails with C(Unsupported) halfway through a layer.
  - Written because neither amazon.aws nor community.aws reads instance type offerings.
author:
  - Helix platform engineering (@helix)
options:
  instance_types:
    description: The instance types to look up, for example C(t3.large).
    type: list
    elements: str
    required: true
  zones:
    description: Availability zones that must offer every instance type; empty reports no gaps.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - helix.kubeadm_aws.aws
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Reads only.
"""

EXAMPLES = r"""
- name: Find zones that lack the node instance types
  helix.kubeadm_aws.instance_type_offerings_info:
    instance_types: [t3.medium, t3.large]
    zones: [us-east-1a, us-east-1b, us-east-1e]
  register: offerings

- name: Stop naming the zone
  ansible.builtin.assert:
    that: offerings.not_offered | length == 0
    fail_msg: "{{ offerings.not_offered }}"
"""

RETURN = r"""
zones:
  description: For each instance type, the availability zones of the region that offer it, sorted.
  returned: always
  type: dict
  sample: {t3.large: [us-east-1a, us-east-1b, us-east-1c]}
not_offered:
  description: Each instance type and zone of O(zones) where that type is not offered.
  returned: always
  type: list
  elements: dict
  sample: [{instance_type: t3.large, zone: us-east-1e}]
"""

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import BotoCoreError, ClientError, HelixAWSModule


def offered_zones(ec2, instance_types):
    zones = {instance_type: set() for instance_type in instance_types}
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": instance_types}],
    )
    for page in pages:
        for offering in page["InstanceTypeOfferings"]:
            zones[offering["InstanceType"]].add(offering["Location"])
    return {instance_type: sorted(found) for instance_type, found in zones.items()}


def main():
    argument_spec = dict(
        instance_types=dict(type="list", elements="str", required=True),
        zones=dict(type="list", elements="str", default=[]),
    )
    aws = HelixAWSModule(argument_spec, supports_check_mode=True)
    instance_types = aws.params["instance_types"]
    try:
        zones = offered_zones(aws.client("ec2"), instance_types)
    except (BotoCoreError, ClientError) as e:
        aws.fail_json_aws(
            e, msg=f"instance_type_offerings_info: could not read the offerings of {', '.join(instance_types)}"
        )
    not_offered = [
        {"instance_type": instance_type, "zone": zone}
        for instance_type in instance_types
        for zone in aws.params["zones"]
        if zone not in zones[instance_type]
    ]
    aws.exit_json(changed=False, zones=zones, not_offered=not_offered)


if __name__ == "__main__":
    main()
