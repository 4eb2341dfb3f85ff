"""What awx/configure.yml builds, read without a controller.

It runs in --check mode with `--skip-tags controller` (the awx.awx modules query the controller's
API even in check mode) and the ansible.posix.json callback; the facts of its build task are the
job templates and workflows, each with its extra_vars and survey, exactly as the controller tasks
would send them to AWX.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.ansible_run import ROOT

BUILD_TASK = "Build the job templates and workflows from the layer model"
SHOW_TASK = "Show what is configured"


def configured():
    """(facts, tasks): the facts awx/configure.yml sets, and every task's result by task name."""
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "awx/configure.yml", "--check"]
        + ["--skip-tags", "controller"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    report = json.loads(done.stdout[done.stdout.index("{") :])
    tasks = {t["task"]["name"]: t["hosts"]["localhost"] for t in report["plays"][0]["tasks"]}
    return tasks[BUILD_TASK]["ansible_facts"], tasks
