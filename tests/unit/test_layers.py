"""The layer model: every cascade of every layer and operation, spelled out."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import layers
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.layers import Step, plan

ROOT = Path(__file__).resolve().parents[2]

BOOT, INFRA, CLUSTER, APP = "bootstrap", "infrastructure", "cluster", "application"
SHORT = {"b": BOOT, "i": INFRA, "c": CLUSTER, "a": APP}


def steps(text):
    """'-a -c +c' = delete application, delete cluster, create cluster."""
    return [Step(SHORT[word[1]], {"-": "delete", "+": "create"}[word[0]]) for word in text.split()]


# Every (layer, operation) and the steps it must give, written out by hand, not derived.
EXPECTED = {
    (BOOT, "create"): steps("+b"),
    (INFRA, "create"): steps("+i"),
    (CLUSTER, "create"): steps("+c"),
    (APP, "create"): steps("+a"),
    (BOOT, "update"): steps("+b +i +c +a"),
    (INFRA, "update"): steps("+i +c +a"),
    (CLUSTER, "update"): steps("+c +a"),
    (APP, "update"): steps("+a"),
    (BOOT, "delete"): steps("-a -c -i -b"),
    (INFRA, "delete"): steps("-a -c -i"),
    (CLUSTER, "delete"): steps("-a -c"),
    (APP, "delete"): steps("-a"),
    (BOOT, "recreate"): steps("-a -c -i -b +b +i +c +a"),
    (INFRA, "recreate"): steps("-a -c -i +i +c +a"),
    (CLUSTER, "recreate"): steps("-a -c +c +a"),
    (APP, "recreate"): steps("-a +a"),
}


def test_layers_and_operations():
    assert layers.LAYERS == (BOOT, INFRA, CLUSTER, APP)
    assert layers.OPERATIONS == ("create", "update", "recreate", "delete")
    assert set(EXPECTED) == {(layer, op) for layer in layers.LAYERS for op in layers.OPERATIONS}
    assert set(layers.LAYER_CONTENTS) == set(layers.LAYERS)


@pytest.mark.parametrize(("layer", "operation"), sorted(EXPECTED))
def test_cascade(layer, operation):
    assert plan(layer, operation) == EXPECTED[(layer, operation)]


@pytest.mark.parametrize(("layer", "operation"), sorted(EXPECTED))
def test_cascade_rules(layer, operation):
    """The rules of the issue, checked against the model for every layer and operation."""
    result = plan(layer, operation)
    deletes = [s.layer for s in result if s.action == "delete"]
    creates = [s.layer for s in result if s.action == "create"]
    above = list(layers.layers_above(layer))
    # APP delete never leaves a layer standing on a deleted one; deletes come before creates.
    if deletes:
        assert deletes == list(reversed([layer, *above]))
    if operation in ("delete", "recreate"):
        assert deletes[-1] == layer
    assert result == [s for s in result if s.action == "delete"] + [s for s in result if s.action == "create"]
    # The layers below are never touched.
    assert not set(layers.layers_below(layer)) & {s.layer for s in result}
    if operation in ("update", "recreate"):
        assert creates == [layer, *above]
    if operation == "create":
        assert creates == [layer]
    if operation == "delete":
        assert creates == []


@pytest.mark.parametrize(("layer", "operation"), sorted(EXPECTED))
def test_every_plan_keeps_the_canonical_order(layer, operation):
    canonical = layers.canonical_steps()
    positions = [canonical.index(step) for step in plan(layer, operation)]
    assert positions == sorted(positions)


def test_neighbours():
    assert layers.layers_below(BOOT) == ()
    assert layers.layers_below(CLUSTER) == (BOOT, INFRA)
    assert layers.layers_above(INFRA) == (CLUSTER, APP)
    assert layers.layers_above(APP) == ()


@pytest.mark.parametrize(("layer", "operation"), [("network", "create"), (INFRA, "destroy"), (None, "create")])
def test_unknown_layer_or_operation(layer, operation):
    with pytest.raises(ValueError, match="unknown"):
        plan(layer, operation)


def test_plan_text():
    text = layers.plan_text(INFRA, "delete", cluster_name="demo")
    lines = text.splitlines()
    assert lines[0] == "Plan: delete infrastructure of cluster demo, 3 step(s)"
    assert [line.split()[:3] for line in lines[1:]] == [
        ["1.", "delete", APP],
        ["2.", "delete", CLUSTER],
        ["3.", "delete", INFRA],
    ]


def test_step_id():
    assert layers.step_id(Step(CLUSTER, "delete")) == "delete_cluster"


def test_lifecycle_playbook_plans_then_runs_each_canonical_step_once():
    """playbooks/lifecycle.yml is written by hand: its imports must follow the model's canonical order."""
    plan_play, *entries = yaml.safe_load((ROOT / "playbooks" / "lifecycle.yml").read_text())
    assert plan_play["tasks"][0]["helix.kubeadm_aws.lifecycle_plan"]["layer"] == "{{ lifecycle_layer }}"
    steps = layers.canonical_steps()
    assert [e["ansible.builtin.import_playbook"] for e in entries] == [
        f"layers/{s.layer}/{s.action}.yml" for s in steps
    ]
    for entry, step in zip(entries, steps):
        assert f"'{layers.step_id(step)}' in" in entry["vars"]["lifecycle_gate"]


def test_plan_text_marks_skipped_layers():
    lines = layers.plan_text(CLUSTER, "update", skip_layers=[APP]).splitlines()
    assert lines[1:] == ["  1. create cluster", "  2. create application - skipped (lifecycle_skip_layers)"]


def test_committed_picture_is_current():
    """docs/architecture.svg is drawn from the model; a change to the model must redraw it."""
    spec = importlib.util.spec_from_file_location("draw_layers", ROOT / "tools" / "draw_layers.py")
    draw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(draw)
    fresh = draw.render_svg()
    ElementTree.fromstring(fresh.encode())  # well-formed XML
    for operation in layers.OPERATIONS:
        for layer in layers.LAYERS:
            assert f">{operation} {layer}<" in fresh
    committed = (ROOT / "docs" / "architecture.svg").read_text()
    assert committed == fresh, "docs/architecture.svg is stale: run tools/draw_layers.py"
