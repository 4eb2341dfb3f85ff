"""Seconds from an empty local cloud to the demo app answering, and of a no-op site.yml on the live cluster.

    python -m bench.local_cloud [--workers 1,2,4] [--port 5080] [--cluster-name N] [--vpc-cidr C]
                                                                    (root; `make bench-local-cloud`)

For each worker count: a fresh local cloud (localcloud/localcloud.sh, nothing on its endpoint) on a
settled machine, then `site.yml -i inventories/local -e worker_count=N` timed from start to finish
(every layer: the cluster layer ends when every Node is Ready, the application layer when the ui's URL
answers the ui page and /api through it), then the same again (nothing to change) once the fresh
cluster has settled, then destroy.yml. Settled: the 1-minute load average under SETTLED_LOAD, waited
for at most SETTLE_SECONDS (new nodes start pods and pull images for a few minutes, and the previous
count's destroy shuts its nodes down; a run beside that measures them, not the run). The machine's
load average is recorded before each run (other jobs on it slow both runs), and the share of its CPU
time the hypervisor took during each run (a host busy with other guests slows this one). The create's seconds to
every Node Ready are where the application layer's first task starts (ansible.posix.profile_tasks'
running total).
Writes bench/results/local_cloud.md; each run's output, with every task's seconds, goes to .cache/bench/logs/.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from pathlib import Path

from tests.ansible_run import run_playbook
from tests.local_cloud import LocalCloud, cannot_host

RESULTS = Path(__file__).parent / "results" / "local_cloud.md"
LOGS = Path(".cache/bench/logs")
PROFILED = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}
SETTLED_LOAD = 1.0
SETTLE_SECONDS = 300
# profile_tasks' banner under each task header ends with the run's total so far: "... 0:04:12.345 ***** ".
APPLICATION_STARTS = re.compile(
    r"^PLAY \[Create the application layer.*?\n.*?(\d+):(\d\d):(\d\d\.\d+) \*+ *$", re.M | re.S
)


def variables(cluster_name, vpc_cidr):
    return {
        "cluster_name": cluster_name,
        "vpc_cidr": vpc_cidr,
        "admin_cidrs": ["127.0.0.0/8", vpc_cidr],
        "app_cidrs": ["127.0.0.0/8", vpc_cidr],
        "lifecycle_skip_layers": [],
    }


def cpu_times():
    """(time the hypervisor took from this machine's CPUs, all CPU time), from /proc/stat, in ticks."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return steal, user + nice + system + idle + iowait + irq + softirq + steal


def timed(playbook, cloud, settings, log_name):
    """(seconds, result, (load average at the start, share of the CPU time the host took during the run))."""
    load = os.getloadavg()[0]
    steal_before, total_before = cpu_times()
    start = time.monotonic()
    result = run_playbook(playbook, cloud.url, settings, env={**cloud.env, **PROFILED})
    seconds = time.monotonic() - start
    steal_after, total_after = cpu_times()
    stolen = (steal_after - steal_before) / max(total_after - total_before, 1)
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / f"local_cloud-{log_name}.log").write_text(result.output)
    if result.returncode:
        raise SystemExit(f"{playbook} {settings} failed:\n{result.output[-4000:]}")
    return seconds, result, (load, stolen)


def settle():
    """Wait until the machine's 1-minute load average is under SETTLED_LOAD, or SETTLE_SECONDS have passed."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while os.getloadavg()[0] >= SETTLED_LOAD and time.monotonic() < deadline:
        time.sleep(5)


def nodes_ready_after(output):
    """Seconds into the run at which the application layer's first task started."""
    found = APPLICATION_STARTS.search(output)
    if not found:
        raise SystemExit("no task of the application layer in the create's output")
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def measure(workers, port, settings):
    settings = {**settings, "worker_count": workers}
    with LocalCloud(port) as cloud:
        settle()  # the previous count's destroy may still be shutting nodes down
        create, created, create_conditions = timed("site.yml", cloud, settings, f"{workers}-create")
        settle()
        noop, rerun, noop_conditions = timed("site.yml", cloud, settings, f"{workers}-noop")
        timed("destroy.yml", cloud, settings, f"{workers}-destroy")
    return {
        "workers": workers,
        "ready": nodes_ready_after(created.output),
        "create": create,
        "noop": noop,
        "changed": rerun.changed,
        "conditions": (create_conditions, noop_conditions),
    }


def table(rows):
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({platform.machine()}), warm caches "
        "(node images, binaries, rootfs).",
        "",
        "| nodes | empty endpoint → every Node Ready (s) | → app answering (s) | no-op site.yml (s) "
        "| no-op / create | changed on no-op | load average before create / no-op | CPU stolen during create / no-op |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ratio = r["noop"] / r["create"]
        load = " / ".join(f"{conditions[0]:.1f}" for conditions in r["conditions"])
        stolen = " / ".join(f"{conditions[1]:.0%}" for conditions in r["conditions"])
        lines.append(
            f"| 1 + {r['workers']} | {r['ready']:.0f} | {r['create']:.0f} | {r['noop']:.0f} | {ratio:.2f} "
            f"| {r['changed']} | {load} | {stolen} |"
        )
    lines += [
        "",
        f"Load average: the 1-minute load of the {os.cpu_count()}-core machine when each run started; above "
        f"{os.cpu_count()} other jobs were running beside the benchmark and every figure is an upper bound. "
        f"The create and the no-op start once the load is under {SETTLED_LOAD} (or after {SETTLE_SECONDS} s "
        "of waiting). CPU stolen: the share of the machine's CPU time its hypervisor gave to other guests "
        "during the run (steal in /proc/stat); the no-op is CPU-bound, so it slows by about that share.",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--port", type=int, default=5080)
    parser.add_argument("--cluster-name", default="helix-bench")
    parser.add_argument("--vpc-cidr", default="10.44.0.0/16")
    args = parser.parse_args()
    why = cannot_host()
    if why:
        raise SystemExit(f"this machine cannot host local cloud nodes: {why}")
    state_dir = Path(".cache/bench/local-cloud-state").resolve()
    settings = {**variables(args.cluster_name, args.vpc_cidr), "state_dir": str(state_dir)}
    rows = [measure(int(n), args.port, settings) for n in args.workers.split(",")]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("# The local cloud: create and no-op\n\n" + table(rows))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
