"""AWX / Automation Controller: what can be checked without a controller.

- The execution environment: `ansible-builder create` accepts execution-environment.yml with the
  collection's artifact where `make ee` puts it, the build context installs that artifact, and the
  image's Python packages are the runtime lines of requirements.txt, verbatim: none come from the
  collection's own requirements.txt, which lists the test tools too.
- awx/configure.yml passes --syntax-check, and in --check mode without its controller tasks it
  builds one job template per layer and operation, the site and destroy workflows in the model's
  order, and surveys that agree with roles/preflight/meta/argument_specs.yml, those of templates
  that only delete leaving out admin_cidrs. (The awx.awx modules query the controller's API even
  in check mode, so the tasks tagged `controller` need a running AWX.) test_awx_jobs.py runs the
  templates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import layers
from tests.ansible_run import ROOT
from tests.integration.awx_config import SHOW_TASK
from tests.integration.awx_config import configured as read_configuration

BIN = Path(sys.executable).parent
ENV = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
OPTIONS = yaml.safe_load((ROOT / "roles/preflight/meta/argument_specs.yml").read_text())["argument_specs"]["main"][
    "options"
]
EE = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
(ARTIFACT,) = [f["src"] for f in EE.get("additional_build_files", []) if f["src"].endswith(".tar.gz")]
CREATE_ONLY = {"admin_cidrs"}


def run(*command, **kwargs):
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def ansible_playbook(*args):
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args], cwd=ROOT, env=ENV, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def ee_context(tmp_path_factory):
    """The build context of execution-environment.yml, with the artifact next to it where `make ee` puts it."""
    if not (BIN / "ansible-builder").exists():
        pytest.skip("ansible-builder is not installed (requirements.txt: ansible-builder>=3.1,<4)")
    work = tmp_path_factory.mktemp("ee")
    shutil.copy(ROOT / "execution-environment.yml", work)
    build = work / "build"
    run(BIN / "ansible-galaxy", "collection", "build", "--output-path", build, ROOT, env=ENV)
    (work / ARTIFACT).parent.mkdir(parents=True)
    next(build.glob("helix-kubeadm_aws-*.tar.gz")).rename(work / ARTIFACT)
    run(BIN / "ansible-builder", "create", "-f", work / "execution-environment.yml", "-c", work / "context")
    return work / "context"


def test_make_ee_puts_the_artifact_where_the_definition_takes_it():
    commands = run("make", "-n", "--no-print-directory", "ee", cwd=ROOT).splitlines()
    assert any(c.startswith("mv ") and c.endswith(f" {ARTIFACT}") for c in commands), commands
    assert any(c.endswith(" create -f execution-environment.yml -c .cache/ee/context") for c in commands), commands


def test_execution_environment_installs_the_collection(ee_context):
    build = ee_context / "_build"
    (requirement,) = yaml.safe_load((build / "requirements.yml").read_text())["collections"]
    assert requirement["type"] == "file"
    # The galaxy stage copies _build to /build and installs from there: the path is relative to it.
    assert (build / requirement["name"]).is_file()
    assert "openssh-clients" in (build / "bindep.txt").read_text()


def test_execution_environment_python_is_requirements_txt(ee_context, tmp_path):
    """What the builder stage installs: the packages the definition lists, none from the collection."""
    build, installed = ee_context / "_build", tmp_path / "collections"
    artifact = build / "collections" / Path(ARTIFACT).name
    install_env = dict(ENV, ANSIBLE_COLLECTIONS_PATH=str(installed))
    run(BIN / "ansible-galaxy", "collection", "install", "--no-deps", "-p", installed, artifact, env=install_env)
    run(
        sys.executable,
        build / "scripts/introspect.py",
        "introspect",
        installed,
        f"--user-pip={build / 'requirements.txt'}",
        f"--exclude-collection-reqs={build / 'exclude-collections.txt'}",
        f"--write-pip={tmp_path / 'requirements.txt'}",
        f"--write-bindep={tmp_path / 'bindep.txt'}",
    )
    lines = (tmp_path / "requirements.txt").read_text().splitlines()
    packages = [line.split("#")[0].strip() for line in lines if line.strip()]
    assert sorted(packages) == sorted(EE["dependencies"]["python"])
    requirements = {line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()}
    assert set(EE["dependencies"]["python"]) <= requirements


@pytest.fixture(scope="module")
def configured():
    return read_configuration()


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


def test_job_templates_set_the_operation(configured):
    """The operation is what the template is (extra_vars lifecycle_action), never a survey question."""
    facts, _tasks = configured
    for template in facts["awx_job_templates"]:
        assert template["extra_vars"] == {"lifecycle_action": template["operation"]}, template["name"]
        assert "lifecycle_action" not in {q["variable"] for q in template["survey_spec"]["spec"]}


def creates(layer, operation):
    return any(step.action == "create" for step in layers.plan(layer, operation))


def asked(launchable):
    return [q["variable"] for q in launchable["survey_spec"]["spec"]]


def test_only_templates_that_create_ask_for_admin_cidrs(configured):
    facts, _tasks = configured
    every = max((asked(t) for t in facts["awx_job_templates"]), key=len)
    for template in facts["awx_job_templates"]:
        wanted = (
            every if creates(template["layer"], template["operation"]) else [v for v in every if v not in CREATE_ONLY]
        )
        assert asked(template) == wanted, template["name"]
    workflows = {w["name"]: asked(w) for w in facts["awx_workflows"]}
    assert workflows == {"helix site": every, "helix destroy": [v for v in every if v not in CREATE_ONLY]}


def test_what_is_shown_is_what_is_configured(configured):
    facts, tasks = configured
    shown = tasks[SHOW_TASK]["msg"]
    assert shown["job_templates"] == {t["name"]: asked(t) for t in facts["awx_job_templates"]}
    assert shown["workflows"] == {w["name"]: asked(w) for w in facts["awx_workflows"]}


SURVEY_TYPES = {"str": {"text", "multiplechoice"}, "int": {"integer", "multiplechoice"}, "list": {"text"}}


def test_survey_questions_agree_with_argument_specs(configured):
    facts, _tasks = configured
    questions = [q for t in facts["awx_job_templates"] + facts["awx_workflows"] for q in t["survey_spec"]["spec"]]
    assert questions, "empty surveys"
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
            # A text answer "a,b" becomes ["a", "b"] in preflight (the helix.kubeadm_aws.as_list filter).
            assert question["default"] == ",".join(default)
        elif question["type"] == "multiplechoice":
            assert question["default"] == str(default)
        else:
            assert question["default"] == default, name
        if option.get("required"):
            assert question["required"] is True, name
