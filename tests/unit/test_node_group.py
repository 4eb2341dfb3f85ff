from __future__ import annotations

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


def live_names(ec2):
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return sorted(
        {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("Name")
        for page in pages
        for r in page["Reservations"]
        for i in r["Instances"]
    )


def test_creates_named_nodes_spread_over_zones(capsys, aws, network):
    result = reconcile(capsys, aws, network, 5)
    assert result["changed"]
    assert [n["name"] for n in result["nodes"]] == [f"demo-worker-0{i}" for i in range(1, 6)]
    assert [n["az"] for n in result["nodes"]] == ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1a", "us-east-1b"]
    assert all(n["private_ip"] and n["id"].startswith("i-") for n in result["nodes"])
    assert live_names(aws.client("ec2")) == [n["name"] for n in result["nodes"]]


def test_instances_carry_cluster_tags(capsys, aws, network):
    reconcile(capsys, aws, network, 1)
    ec2 = aws.client("ec2")
    instance = ec2.describe_instances()["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["kubernetes.io/cluster/demo"] == "owned"
    assert tags["helix/layer"] == "infrastructure"
    assert tags["helix/node-role"] == "worker"
    assert tags["helix/node-number"] == "1"


def test_second_run_changes_nothing(capsys, aws, network):
    reconcile(capsys, aws, network, 3)
    again = reconcile(capsys, aws, network, 3)
    assert not again["changed"]
    assert again["to_create"] == [] and again["to_terminate"] == []


def test_check_mode_returns_the_plan_and_changes_nothing(capsys, aws, network):
    reconcile(capsys, aws, network, 3)
    up = reconcile(capsys, aws, network, 5, check_mode=True)
    assert up["changed"] and up["to_create"] == ["demo-worker-04", "demo-worker-05"]
    down = reconcile(capsys, aws, network, 1, check_mode=True)
    assert [t["name"] for t in down["to_terminate"]] == ["demo-worker-02", "demo-worker-03"]
    assert live_names(aws.client("ec2")) == ["demo-worker-01", "demo-worker-02", "demo-worker-03"]


def test_scale_down_removes_highest_numbers_and_up_refills(capsys, aws, network):
    reconcile(capsys, aws, network, 5)
    down = reconcile(capsys, aws, network, 2)
    assert sorted(t["name"] for t in down["to_terminate"]) == ["demo-worker-03", "demo-worker-04", "demo-worker-05"]
    assert live_names(aws.client("ec2")) == ["demo-worker-01", "demo-worker-02"]
    up = reconcile(capsys, aws, network, 3)
    assert up["to_create"] == ["demo-worker-03"]
    assert up["nodes"][2]["az"] == "us-east-1c"


def test_roles_are_separate_groups(capsys, aws, network):
    reconcile(capsys, aws, network, 2)
    control_plane = reconcile(capsys, aws, network, 1, role="control_plane")
    assert [n["name"] for n in control_plane["nodes"]] == ["demo-control-plane-01"]
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
    assert live_names(aws.client("ec2")) == []
