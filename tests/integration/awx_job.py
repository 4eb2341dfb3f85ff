"""An AWX job, run by ansible-runner (AWX's engine) in a private data directory laid out as AWX does.

    <private data dir>/
      project/          the project's files, as AWX copies them from its SCM checkout
      inventory/hosts   an executable script printing the inventory as JSON, as AWX writes it
      env/extravars     the template's extra_vars merged with the survey answers (awx_launch)
      env/envvars       the credentials' and the execution environment's environment variables

Nothing else reaches the job: HOME is the private data directory (the execution environment's
HOME, /runner, is where AWX mounts it), so what a job keeps under HOME is gone for the next job,
and ANSIBLE_CONFIG is the project's ansible.cfg, which ansible-playbook finds in its working
directory under AWX.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner
import yaml

from tests.ansible_run import ROOT

BIN = Path(sys.executable).parent


def copy_tracked_files(destination):
    """The checkout's tracked files (as they are in the work tree) under `destination`: a fresh clone."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in listed.decode().split("\0"):
        source = ROOT / name
        if not name or not (source.exists() or source.is_symlink()):
            continue  # deleted in the work tree, not yet in the index
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    return destination


def install_collection(project, work_dir):
    """Build the collection artifact from `project` and install it, as the execution environment holds it.

    Returns the collections path. The collection's dependencies come from the `ansible` package of
    this Python (the execution environment installs them with the artifact, from galaxy.yml).
    """
    build, installed = work_dir / "build", work_dir / "collections"
    galaxy = str(BIN / "ansible-galaxy")
    # Only the new path counts as installed: the checkout's .collections link must not satisfy the install.
    env = dict(os.environ, ANSIBLE_CONFIG=str(project / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(installed))
    subprocess.run([galaxy, "collection", "build", "--output-path", str(build), str(project)], env=env, check=True)
    (artifact,) = build.glob("helix-kubeadm_aws-*.tar.gz")
    install = [galaxy, "collection", "install", "--no-deps", "-p", str(installed), str(artifact)]
    subprocess.run(install, env=env, check=True, capture_output=True)
    if not (installed / "ansible_collections/helix/kubeadm_aws/MANIFEST.json").exists():
        raise RuntimeError(f"{artifact} was not installed into {installed}")
    return installed


@dataclass
class Job:
    template: str
    status: str
    rc: int
    seconds: float
    private_data_dir: Path
    stdout: str
    events: list = field(repr=False)

    def role_task_paths(self):
        """Files of the role tasks that ran (a role's argument validation is the play's, so left out)."""
        paths = (e["event_data"].get("task_path", "") for e in self.events if e["event_data"].get("role"))
        return [path for path in paths if "/roles/" in path]


def inventory_script(inventory_vars):
    """AWX's inventory/hosts: the controller host local, with the venv's Python, and the inventory's variables."""
    data = {
        "all": {"hosts": ["localhost"], "vars": inventory_vars},
        "_meta": {
            "hostvars": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
        },
    }
    return f"#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint({json.dumps(data)!r})\n"


def run_job(private_data_dir, project, template, extra_vars, inventory_vars, envvars):
    """Run `template` (a job template of awx/configure.yml) like AWX; the finished Job."""
    private_data_dir = Path(private_data_dir)
    shutil.copytree(project, private_data_dir / "project", symlinks=True)
    hosts = private_data_dir / "inventory" / "hosts"
    hosts.parent.mkdir()
    hosts.write_text(inventory_script(inventory_vars))
    hosts.chmod(0o700)
    env = private_data_dir / "env"
    env.mkdir()
    (env / "extravars").write_text(yaml.safe_dump(extra_vars))
    environment = {
        **envvars,
        "HOME": str(private_data_dir),
        "XDG_STATE_HOME": str(private_data_dir / ".local" / "state"),
        "ANSIBLE_CONFIG": str(private_data_dir / "project" / "ansible.cfg"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    (env / "envvars").write_text(yaml.safe_dump(environment))
    started = time.monotonic()
    runner = ansible_runner.run(private_data_dir=str(private_data_dir), playbook=template["playbook"], quiet=True)
    seconds = time.monotonic() - started
    return Job(
        template=template["name"],
        status=runner.status,
        rc=runner.rc,
        seconds=seconds,
        private_data_dir=private_data_dir,
        stdout=runner.stdout.read(),
        events=list(runner.events),
    )
