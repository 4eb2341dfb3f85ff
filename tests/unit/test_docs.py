from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT


def test_readme_variables_table_matches_argument_specs():
    done = subprocess.run(
        [sys.executable, "tools/variables_table.py", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_role_readmes_match_argument_specs():
    done = subprocess.run(
        [sys.executable, "tools/role_readme.py", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_role_readme_examples_pass_syntax_check(tmp_path):
    readmes = sorted(ROOT.glob("roles/*/README.md"))
    assert readmes, "no role README"
    plays = []
    for readme in readmes:
        block = re.search(r"^```yaml\n(.*?)^```", readme.read_text(), re.M | re.S)
        assert block, f"{readme} has no example playbook"
        plays += yaml.safe_load(block.group(1))
    playbook = tmp_path / "examples.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "--syntax-check", "-i", "localhost,", str(playbook)],
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
