from __future__ import annotations

import pytest

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.node_plan import group_name, plan_nodes

SUBNETS = ["subnet-a", "subnet-b", "subnet-c"]


def nodes(*subnets):
    """Nodes i-0, i-1, ... (oldest first) in the given subnets, named by letter: nodes('a', 'b')."""
    return [(f"i-{age}", f"subnet-{s}") for age, s in enumerate(subnets)]


def test_group_name_is_the_role_in_dns_form():
    assert group_name("demo", "worker") == "demo-worker"
    assert group_name("demo", "control_plane") == "demo-control-plane"


@pytest.mark.parametrize(
    ("current", "count", "launch"),
    [
        ((), 1, {"subnet-a": 1}),
        ((), 5, {"subnet-a": 2, "subnet-b": 2, "subnet-c": 1}),
        (("a", "b", "c"), 4, {"subnet-a": 1}),
        (("a", "a", "b"), 5, {"subnet-b": 1, "subnet-c": 1}),
        (("a", "b", "c"), 3, {}),
    ],
)
def test_launches_go_to_the_emptiest_subnets(current, count, launch):
    assert plan_nodes(nodes(*current), count, SUBNETS) == (launch, [])


@pytest.mark.parametrize(
    ("current", "count", "terminate"),
    [
        (("a", "b", "c", "a", "b"), 2, ["i-4", "i-3", "i-2"]),
        (("a", "a", "a", "b"), 2, ["i-2", "i-1"]),
        (("a", "b", "c"), 0, ["i-2", "i-1", "i-0"]),
        (("c", "b", "a"), 2, ["i-2"]),
    ],
)
def test_scale_down_takes_the_newest_node_of_the_fullest_subnet(current, count, terminate):
    assert plan_nodes(nodes(*current), count, SUBNETS) == ({}, terminate)


def test_nodes_in_subnets_no_longer_listed_count_like_any_other():
    assert plan_nodes(nodes("x", "x", "a"), 1, SUBNETS) == ({}, ["i-1", "i-2"])


def test_the_scale_down_plan_does_not_depend_on_the_subnet_list():
    current = nodes("b", "a", "c", "a", "b")
    assert plan_nodes(current, 2, SUBNETS) == plan_nodes(current, 2, [])
