"""Seconds from an empty local cloud to every Node Ready, and of a no-op site.yml on the live cluster.

    python -m bench.local_cloud [--workers 1,2,4] [--port 5080]     (root; `make bench-local-cloud`)

For each worker count: a fresh local cloud (localcloud/localcloud.sh, nothing on its endpoint), then
`site.yml -i inventories/local -e worker_count=N` timed from start to finish (the cluster layer ends
when every Node is Ready), then the same again (nothing to change), then destroy.yml. The application
layer is skipped (issue #15). Writes bench/results/local_cloud.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from tests.ansible_run import run_playbook
from tests.local_cloud import LocalCloud, cannot_host

RESULTS = Path(__file__).parent / "results" / "local_cloud.md"
VARIABLES = {
    "cluster_name": "helix-bench",
    "vpc_cidr": "10.44.0.0/16",
    "admin_cidrs": ["127.0.0.0/8", "10.44.0.0/16"],
    "app_cidrs": ["127.0.0.0/8", "10.44.0.0/16"],
    "lifecycle_skip_layers": ["application"],
}


def timed(playbook, cloud, **extra):
    start = time.monotonic()
    result = run_playbook(playbook, cloud.url, {**VARIABLES, **extra}, env=cloud.env)
    seconds = time.monotonic() - start
    if result.returncode:
        raise SystemExit(f"{playbook} {extra} failed:\n{result.output[-4000:]}")
    return seconds, result.changed


def measure(workers, port, state_dir):
    with LocalCloud(port) as cloud:
        create = timed("site.yml", cloud, worker_count=workers, state_dir=state_dir)[0]
        noop, changed = timed("site.yml", cloud, worker_count=workers, state_dir=state_dir)
        timed("destroy.yml", cloud, state_dir=state_dir)
    return {"workers": workers, "create": create, "noop": noop, "changed": changed}


def table(rows):
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({platform.machine()}), warm caches "
        "(node images, binaries, rootfs).",
        "",
        "| nodes | empty endpoint → all Nodes Ready (s) | no-op site.yml (s) | no-op / create | changed on no-op |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ratio = r["noop"] / r["create"]
        lines.append(f"| 1 + {r['workers']} | {r['create']:.0f} | {r['noop']:.0f} | {ratio:.2f} | {r['changed']} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--port", type=int, default=5080)
    args = parser.parse_args()
    why = cannot_host()
    if why:
        raise SystemExit(f"this machine cannot host local cloud nodes: {why}")
    state_dir = Path(".cache/bench/local-cloud-state").resolve()
    rows = [measure(int(n), args.port, str(state_dir)) for n in args.workers.split(",")]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("# The local cloud: create and no-op\n\n" + table(rows))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
