"""AWX / Automation Controller: what can be checked without a controller.

- `ansible-builder create` accepts execution-environment.yml, and its Python packages are lines of
  requirements.txt, verbatim.
- awx/configure.yml passes --syntax-check, and in --check mode without its controller tasks it
  builds one job template per layer and operation, the site and destroy workflows in the model's
  order, and a survey that agrees with roles/preflight/meta/argument_specs.yml.
  (The awx.awx modules query the controller's API even in check mode, so the tasks tagged
  `controller` need a running AWX.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import layers
from tests.ansible_run import ROOT

BIN = Path(sys.executable).parent
ENV = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
OPTIONS = yaml.safe_load((ROOT / "roles/preflight/meta/argument_specs.yml").read_text())["argument_specs"]["main"][
    "options"
]


def ansible_playbook(*args, env=None):
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        cwd=ROOT,
        env=dict(ENV, **(env or {})),
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def configured():
    """The facts and output of awx/configure.yml in check mode, controller tasks skipped."""
    done = ansible_playbook(
        "awx/configure.yml",
        "--check",
        "--skip-tags",
        "controller",
        env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    report = json.loads(done.stdout[done.stdout.index("{") :])
    tasks = {t["task"]["name"]: t["hosts"]["localhost"] for t in report["plays"][0]["tasks"]}
    facts = tasks["Build the job templates and workflows from the layer model"]["ansible_facts"]
    return facts, tasks


def test_execution_environment_builds(tmp_path):
    builder = BIN / "ansible-builder"
    if not builder.exists():
        pytest.skip("ansible-builder is not installed (requirements.txt: ansible-builder>=3.1,<4)")
    done = subprocess.run(
        [str(builder), "create", "-f", "execution-environment.yml", "-c", str(tmp_path / "context")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    build = tmp_path / "context" / "_build"
    assert (build / "requirements.yml").read_text() == (ROOT / "requirements.yml").read_text()
    assert "boto3" in (build / "requirements.txt").read_text()
    assert "openssh-clients" in (build / "bindep.txt").read_text()


def test_execution_environment_python_is_requirements_txt():
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    assert ee["dependencies"]["galaxy"] == "requirements.yml"
    requirements = {line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()}
    assert set(ee["dependencies"]["python"]) <= requirements


def test_syntax_check():
    done = ansible_playbook("awx/configure.yml", "--syntax-check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_job_template_per_layer_and_operation(configured):
    facts, _tasks = configured
    templates = {(t["playbook"], t["operation"]) for t in facts["awx_job_templates"]}
    assert templates == {(f"playbooks/{layer}.yml", op) for layer in layers.LAYERS for op in layers.OPERATIONS}
    assert len(facts["awx_job_templates"]) == len(templates)


def test_workflows_follow_the_model(configured):
    facts, _tasks = configured
    workflows = {w["name"]: w["nodes"] for w in facts["awx_workflows"]}
    expected = {
        "helix site": [f"create_{layer}" for layer in layers.LAYERS],
        "helix destroy": [layers.step_id(s) for s in layers.plan("bootstrap", "delete")],
    }
    names = {t["id"]: t["name"] for t in facts["awx_job_templates"]}
    for name, steps in expected.items():
        nodes = workflows[name]
        assert [n["identifier"] for n in nodes] == steps
        assert [n["unified_job_template"]["name"] for n in nodes] == [names[s] for s in steps]
        links = [[s["identifier"] for s in n["related"]["success_nodes"]] for n in nodes]
        assert links == [[following] for following in steps[1:]] + [[]]


@pytest.fixture(scope="module")
def questions(configured):
    facts, tasks = configured
    assert tasks["Show what is configured"]["msg"]["survey"] == [q["variable"] for q in facts["awx_survey"]["spec"]]
    return facts["awx_survey"]["spec"]


SURVEY_TYPES = {"str": {"text", "multiplechoice"}, "int": {"integer", "multiplechoice"}, "list": {"text"}}


def test_survey_questions_agree_with_argument_specs(questions):
    assert questions, "empty survey"
    for question in questions:
        name = question["variable"]
        assert name in OPTIONS, f"survey asks for {name}, which preflight does not know"
        option = OPTIONS[name]
        kind = option.get("type", "str")
        assert question["type"] in SURVEY_TYPES[kind], (name, kind, question["type"])
        if "choices" in option:
            assert question["type"] == "multiplechoice"
            assert question["choices"] == [str(c) for c in option["choices"]]
        default = option.get("default", "")
        if kind == "list":
            # A text answer "a,b" becomes ["a", "b"] when preflight validates type list.
            assert question["default"] == ",".join(default)
        elif question["type"] == "multiplechoice":
            assert question["default"] == str(default)
        else:
            assert question["default"] == default, name
        if option.get("required"):
            assert question["required"] is True, name


def test_survey_leaves_out_the_operation(questions):
    """The operation is fixed per job template (extra_vars lifecycle_action), never asked for."""
    assert "lifecycle_action" not in {q["variable"] for q in questions}
