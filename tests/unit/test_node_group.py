from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from ansible_collections.helix.kubeadm_aws.plugins.modules import node_group
from tests.module_runner import run_module
from tests.unit.ec2_fixture import make_network


@pytest.fixture
def network(aws):
    return make_network(aws.client("ec2"), "demo")


def reconcile(capsys, aws, network, count, check_mode=False, role="worker"):
    args = {
        "cluster_name": "demo",
        "role": role,
        "count": count,
        "launch_template": network["launch_template"],
        "subnet_ids": network["subnet_ids"],
    }
    return run_module(capsys, node_group, args, aws=aws, check_mode=check_mode)


def live(ec2):
    """(instance id, Name tag, zone) of the live instances."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return sorted(
        (
            i["InstanceId"],
            {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("Name"),
            i["Placement"]["AvailabilityZone"],
        )
        for page in pages
        for r in page["Reservations"]
        for i in r["Instances"]
    )


def zones(nodes):
    return sorted(n["az"] for n in nodes)


def test_creates_nodes_balanced_over_zones(capsys, aws, network):
    result = reconcile(capsys, aws, network, 5)
    assert result["changed"]
    assert zones(result["nodes"]) == ["us-east-1a", "us-east-1a", "us-east-1b", "us-east-1b", "us-east-1c"]
    assert all(n["private_ip"] and n["id"].startswith("i-") and n["name"].startswith("ip-") for n in result["nodes"])
    assert sorted((n["id"], "demo-worker", n["az"]) for n in result["nodes"]) == live(aws.client("ec2"))


def test_instances_carry_their_tags_from_launch(capsys, aws, network):
    reconcile(capsys, aws, network, 1)
    ec2 = aws.client("ec2")
    instance = ec2.describe_instances()["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"] if not t["Key"].startswith("aws:")}
    assert tags == {
        "Name": "demo-worker",
        "kubernetes.io/cluster/demo": "owned",
        "helix/layer": "infrastructure",
        "helix/node-role": "worker",
    }
    volume_ids = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]]
    for volume in ec2.describe_volumes(VolumeIds=volume_ids)["Volumes"]:
        assert {"Key": "kubernetes.io/cluster/demo", "Value": "owned"} in volume["Tags"]


def test_second_run_changes_nothing(capsys, aws, network):
    reconcile(capsys, aws, network, 3)
    again = reconcile(capsys, aws, network, 3)
    assert not again["changed"]
    assert again["to_create"] == [] and again["to_terminate"] == []


def test_check_mode_returns_the_plan_and_changes_nothing(capsys, aws, network):
    first = reconcile(capsys, aws, network, 3)["nodes"]
    up = reconcile(capsys, aws, network, 5, check_mode=True)
    assert up["changed"] and up["to_create"] == [
        {"subnet_id": network["subnet_ids"][0], "count": 1},
        {"subnet_id": network["subnet_ids"][1], "count": 1},
    ]
    down = reconcile(capsys, aws, network, 1, check_mode=True)
    assert {t["id"] for t in down["to_terminate"]} == {first[2]["id"], first[1]["id"]}
    assert [i[0] for i in live(aws.client("ec2"))] == sorted(n["id"] for n in first)


def test_scale_down_removes_the_newest_and_keeps_zones_balanced(capsys, aws, network):
    first = reconcile(capsys, aws, network, 3)["nodes"]
    time.sleep(1.1)  # LaunchTime has one-second resolution: make the added nodes the newest
    added = [n for n in reconcile(capsys, aws, network, 5)["nodes"] if n not in first]
    down = reconcile(capsys, aws, network, 2)
    removed = {t["id"] for t in down["to_terminate"]}
    assert removed == {added[0]["id"], added[1]["id"], first[2]["id"]}
    assert [n["id"] for n in down["nodes"]] == [first[0]["id"], first[1]["id"]]
    up = reconcile(capsys, aws, network, 3)
    assert up["to_create"] == [{"subnet_id": first[2]["subnet_id"], "count": 1}]
    assert zones(up["nodes"]) == ["us-east-1a", "us-east-1b", "us-east-1c"]


def test_roles_are_separate_groups(capsys, aws, network):
    reconcile(capsys, aws, network, 2)
    control_plane = reconcile(capsys, aws, network, 1, role="control_plane")
    assert [n["role"] for n in control_plane["nodes"]] == ["control_plane"]
    assert not reconcile(capsys, aws, network, 2)["changed"]


def test_launches_with_one_call_per_subnet(capsys, aws, network, monkeypatch):
    calls = []
    original = node_group.ec2_nodes.launch

    def counting_launch(ec2, template, subnet_id, count, tags, **options):
        calls.append((subnet_id, count))
        return original(ec2, template, subnet_id, count, tags, **options)

    monkeypatch.setattr(node_group.ec2_nodes, "launch", counting_launch)
    reconcile(capsys, aws, network, 7)
    assert sorted(calls) == sorted(zip(network["subnet_ids"], [3, 2, 2]))


def test_negative_count_fails_clearly(capsys, aws, network):
    result = reconcile(capsys, aws, network, -1)
    assert result["failed"] and "count must be 0 or more" in result["msg"]


def test_creating_without_subnets_fails_before_anything_changes(capsys, aws, network):
    args = {"cluster_name": "demo", "role": "worker", "count": 2, "launch_template": network["launch_template"]}
    result = run_module(capsys, node_group, args, aws=aws)
    assert result["failed"] and "subnet_ids is required" in result["msg"]
    assert live(aws.client("ec2")) == []


def test_a_fixed_private_ip_is_the_nodes_address(capsys, aws, network):
    subnet, address = network["subnet_ids"][0], "10.42.0.10"  # the 10th host of the first subnet, 10.42.0.0/20
    args = {"cluster_name": "demo", "role": "control_plane", "count": 1, "launch_template": network["launch_template"]}
    result = run_module(capsys, node_group, {**args, "subnet_ids": [subnet], "private_ip": address}, aws=aws)
    assert [n["private_ip"] for n in result["nodes"]] == [address]


def test_a_fixed_private_ip_needs_one_node_in_one_subnet(capsys, aws, network):
    args = {"cluster_name": "demo", "role": "worker", "count": 2, "launch_template": network["launch_template"]}
    result = run_module(
        capsys, node_group, {**args, "subnet_ids": network["subnet_ids"], "private_ip": "10.0.0.10"}, aws=aws
    )
    assert result["failed"] and "private_ip fixes the address of a single node" in result["msg"]


class ProfileNotYetVisible:
    """An EC2 client whose RunInstances refuses a new instance profile `refusals` times, as EC2 does."""

    def __init__(self, refusals):
        self.refusals = refusals
        self.calls = 0

    def run_instances(self, **request):
        self.calls += 1
        if self.calls <= self.refusals:
            error = {
                "Code": "InvalidParameterValue",
                "Message": "Value (demo-worker) for parameter iamInstanceProfile.name is invalid. "
                "Invalid IAM Instance Profile name",
            }
            raise ClientError({"Error": error}, "RunInstances")
        return {"Instances": [{"InstanceId": "i-1"}]}


def test_runinstances_waits_for_a_new_instance_profile(monkeypatch):
    monkeypatch.setattr(node_group.ec2_nodes.time, "sleep", lambda seconds: None)
    ec2 = ProfileNotYetVisible(refusals=3)
    assert node_group.ec2_nodes.run_instances_retrying_profile(ec2, MinCount=1)["Instances"] == [{"InstanceId": "i-1"}]
    assert ec2.calls == 4


def test_an_instance_profile_that_never_appears_fails_clearly(monkeypatch):
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(node_group.ec2_nodes.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(node_group.ec2_nodes.time, "monotonic", lambda: next(clock))
    with pytest.raises(node_group.ec2_nodes.InstanceProfileNotVisible, match="still refuses the instance profile"):
        node_group.ec2_nodes.run_instances_retrying_profile(ProfileNotYetVisible(refusals=1000), MinCount=1)
