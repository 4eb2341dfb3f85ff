"""Run the real playbooks with ansible-playbook, as a user would, and read the recap."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The tests' own endpoints have no data plane: their instances are records, so through the local
# inventory the layers that need booted nodes are skipped unless a test says otherwise (tests/e2e boots
# them on the local cloud). Through inventories/aws, as before the local cloud, nothing is skipped.
RECORDS_ONLY_SKIP = ["cluster", "application"]
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass
class PlaybookRun:
    returncode: int
    output: str

    @property
    def recap(self):
        return {
            host: {"ok": int(ok), "changed": int(changed), "unreachable": int(unreachable), "failed": int(failed)}
            for host, ok, changed, unreachable, failed in RECAP.findall(self.output)
        }

    @property
    def changed(self):
        return sum(host["changed"] for host in self.recap.values())


def run_playbook(playbook, endpoint_url, extra_vars=None, inventory="inventories/local", args=(), env=None, prefix=()):
    """ansible-playbook from the repo root against the given AWS endpoint; never raises on failure.

    prefix: a command that runs ansible-playbook (strace, say).
    """
    environment = dict(os.environ)
    environment.update(
        {
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "HELIX_AWS_ENDPOINT_URL": endpoint_url,
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{Path(sys.executable).parent}:{environment.get('PATH', '')}",
        }
    )
    environment.update(env or {})
    command = [*prefix, str(Path(sys.executable).with_name("ansible-playbook")), playbook, "-i", inventory]
    skip = {"lifecycle_skip_layers": RECORDS_ONLY_SKIP} if inventory == "inventories/local" else {}
    command += ["-e", json.dumps({**skip, **(extra_vars or {})})]
    command += list(args)
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, check=False)
    return PlaybookRun(done.returncode, done.stdout + done.stderr)
