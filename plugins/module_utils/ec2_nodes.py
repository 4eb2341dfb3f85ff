# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""EC2 calls for node groups: every call covers the whole group, never one node."""

from __future__ import annotations

import random
import time

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import waiters
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import ClientError, error_code
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.tagging import (
    ROLE_TAG,
    cluster_filter,
    tag_specifications,
)

LIVE_STATES = ["pending", "running", "stopping", "stopped"]


def _instances(ec2, **query):
    paginator = ec2.get_paginator("describe_instances")
    return [
        instance
        for page in paginator.paginate(**query)
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    ]


def oldest_first(instance):
    return (instance["LaunchTime"], instance.get("AmiLaunchIndex", 0), instance["InstanceId"])


def describe_group(ec2, cluster_name, role):
    """Live instances of one node group, oldest first, in one paginated call."""
    filters = [
        cluster_filter(cluster_name),
        {"Name": f"tag:{ROLE_TAG}", "Values": [role]},
        {"Name": "instance-state-name", "Values": LIVE_STATES},
    ]
    return sorted(_instances(ec2, Filters=filters), key=oldest_first)


def describe_ids(ec2, instance_ids):
    return _instances(ec2, InstanceIds=instance_ids)


# EC2 answers InvalidParameterValue ("Invalid IAM Instance Profile name/ARN") for several seconds
# after CreateInstanceProfile or AddRoleToInstanceProfile: IAM is eventually consistent
# (IAM user guide, "Changes that I make are not always immediately visible").
PROFILE_NOT_VISIBLE = "InvalidParameterValue"
PROFILE_RETRY_SECONDS = 120


class InstanceProfileNotVisible(Exception):
    """The launch template's instance profile stayed invisible to EC2 for PROFILE_RETRY_SECONDS."""


def _profile_not_visible(error):
    return error_code(error) == PROFILE_NOT_VISIBLE and "iaminstanceprofile" in str(error).lower().replace(" ", "")


def run_instances_retrying_profile(ec2, timeout=PROFILE_RETRY_SECONDS, **request):
    """RunInstances, retried with jittered back-off while a new instance profile is not yet visible."""
    deadline = time.monotonic() + timeout
    delay = 2.0
    while True:
        try:
            return ec2.run_instances(**request)
        except ClientError as e:
            if not _profile_not_visible(e):
                raise
            if time.monotonic() + delay > deadline:
                raise InstanceProfileNotVisible(f"EC2 still refuses the instance profile after {timeout} s: {e}") from e
        time.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, 20.0)


def launch(ec2, launch_template, subnet_id, count, tags, private_ip=None):
    """Launch `count` instances in one subnet with a single RunInstances call, tagged as they start.

    The launch template holds no network interface, so the subnet is given here at the instance
    level (EC2 refuses an instance-level SubnetId next to a template's network interfaces).
    """
    request = dict(
        LaunchTemplate={"LaunchTemplateName": launch_template, "Version": "$Default"},
        SubnetId=subnet_id,
        MinCount=count,
        MaxCount=count,
        TagSpecifications=tag_specifications(["instance", "volume", "network-interface"], tags),
    )
    if private_ip:
        request["PrivateIpAddress"] = private_ip
    return run_instances_retrying_profile(ec2, **request)["Instances"]


def terminate(ec2, instance_ids):
    if instance_ids:
        ec2.terminate_instances(InstanceIds=instance_ids)


def wait(ec2, waiter_name, instance_ids, timeout):
    """One waiter for the whole batch, not one per node."""
    if instance_ids:
        waiters.wait(ec2, waiter_name, timeout, InstanceIds=instance_ids)


def node_facts(instance, role):
    """What the playbooks need of a node, named by its private DNS name (unique, unlike the Name tag)."""
    return {
        "id": instance["InstanceId"],
        "name": instance.get("PrivateDnsName") or instance["InstanceId"],
        "role": role,
        "az": instance.get("Placement", {}).get("AvailabilityZone"),
        "subnet_id": instance.get("SubnetId"),
        "private_ip": instance.get("PrivateIpAddress"),
        "public_ip": instance.get("PublicIpAddress"),
        "state": instance.get("State", {}).get("Name"),
    }
