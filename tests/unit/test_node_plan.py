from __future__ import annotations

import pytest

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.node_plan import (
    batches_by_subnet,
    node_name,
    plan_nodes,
    subnet_for,
)

SUBNETS = ["subnet-a", "subnet-b", "subnet-c"]


def test_names_are_stable_and_zero_padded():
    assert node_name("demo", "worker", 3) == "demo-worker-03"
    assert node_name("demo", "control_plane", 1) == "demo-control-plane-01"
    assert node_name("demo", "worker", 120) == "demo-worker-120"


def test_nodes_go_round_robin_over_subnets():
    assert [subnet_for(n, SUBNETS) for n in range(1, 8)] == [
        "subnet-a",
        "subnet-b",
        "subnet-c",
        "subnet-a",
        "subnet-b",
        "subnet-c",
        "subnet-a",
    ]


def test_one_batch_per_subnet():
    assert batches_by_subnet([1, 2, 3, 4, 5], SUBNETS) == {
        "subnet-a": [1, 4],
        "subnet-b": [2, 5],
        "subnet-c": [3],
    }


@pytest.mark.parametrize(
    ("numbers", "count", "create", "terminate"),
    [
        ([], 3, [1, 2, 3], []),
        ([1, 2, 3], 3, [], []),
        ([1, 2, 3], 5, [4, 5], []),
        ([1, 2, 3, 4, 5], 2, [], [3, 4, 5]),
        ([1, 3], 3, [2], []),
        ([1, 3], 2, [], []),
        ([2, 3, 4], 0, [], [2, 3, 4]),
    ],
)
def test_plan_keeps_lowest_numbers_and_fills_gaps(numbers, count, create, terminate):
    keep, adopt, planned_create, planned_terminate, terminate_unnumbered = plan_nodes(numbers, [], count)
    assert planned_create == create
    assert planned_terminate == terminate
    assert adopt == {}
    assert terminate_unnumbered == []
    assert len(keep) + len(planned_create) == count


def test_unnumbered_instances_are_adopted_before_anything_is_launched():
    keep, adopt, create, terminate, terminate_unnumbered = plan_nodes([1], ["i-b", "i-a"], 3)
    assert adopt == {"i-b": 2, "i-a": 3}
    assert create == []
    assert terminate_unnumbered == []


def test_surplus_unnumbered_instances_are_terminated():
    _keep, adopt, create, terminate, terminate_unnumbered = plan_nodes([1, 2], ["i-x"], 2)
    assert (adopt, create, terminate, terminate_unnumbered) == ({}, [], [], ["i-x"])
