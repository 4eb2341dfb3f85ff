from __future__ import annotations

import time

import pytest

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

    def counting_launch(ec2, template, subnet_id, count, tags):
        calls.append((subnet_id, count))
        return original(ec2, template, subnet_id, count, tags)

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
