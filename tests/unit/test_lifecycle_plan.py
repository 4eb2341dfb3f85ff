"""The lifecycle_plan module, run in-process as Ansible would run it."""

from __future__ import annotations

import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import layers
from ansible_collections.helix.kubeadm_aws.plugins.modules import lifecycle_plan


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        lifecycle_plan.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("check_mode", [False, True])
def test_delete_infrastructure(capsys, check_mode):
    result = run(
        capsys, layer="infrastructure", operation="delete", cluster_name="demo", _ansible_check_mode=check_mode
    )
    assert result["changed"] is False
    assert result["step_ids"] == ["delete_application", "delete_cluster", "delete_infrastructure"]
    assert result["steps"][0] == {"layer": "application", "action": "delete", "id": "delete_application"}
    assert result["text"] == layers.plan_text("infrastructure", "delete", cluster_name="demo")
    assert result["layers"] == list(layers.LAYERS)
    assert result["operations"] == list(layers.OPERATIONS)


@pytest.mark.parametrize("layer", layers.LAYERS)
@pytest.mark.parametrize("operation", layers.OPERATIONS)
def test_every_plan_matches_the_model(capsys, layer, operation):
    result = run(capsys, layer=layer, operation=operation)
    assert [(s["layer"], s["action"]) for s in result["steps"]] == [tuple(s) for s in layers.plan(layer, operation)]


def test_create_is_the_default(capsys):
    assert run(capsys, layer="cluster")["step_ids"] == ["create_cluster"]


def test_unknown_operation_fails(capsys):
    result = run(capsys, layer="cluster", operation="destroy")
    assert result["failed"] is True
    assert "operation" in result["msg"]


def test_documented_choices_are_the_model():
    doc = yaml.safe_load(lifecycle_plan.DOCUMENTATION)["options"]
    assert doc["layer"]["choices"] == list(layers.LAYERS)
    assert doc["operation"]["choices"] == list(layers.OPERATIONS)
