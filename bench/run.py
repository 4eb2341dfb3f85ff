"""Measure the infrastructure layer and the ec2_instance baseline for several worker counts.

The infrastructure layer is measured alone: its layer playbook, without the lifecycle planning
and cascade of playbooks/infrastructure.yml. For each worker count, on a freshly reset local AWS
endpoint (moto server) with the bootstrap layer applied (not measured), in this order:
  ours      create  playbooks/layers/infrastructure/create.yml -e worker_count=N
  ours      noop    the same again
  baseline  create  bench/baseline.yml -e worker_count=N (same VPC and worker launch template)
  baseline  noop    the same again
  baseline  delete  bench/baseline.yml -e lifecycle_step=delete
  ours      delete  playbooks/layers/infrastructure/delete.yml
Each run records its wall time, every AWS request (through bench/aws_proxy.py, by operation and
by the module that sent it), the peak RSS of the ansible-playbook process tree and the per-task
times of the profile_tasks callback. Writes results.json, then results.md and results.png.

    python -m bench.run [--workers 1,10,50,100] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

from bench import report
from bench.aws_proxy import CountingProxy
from bench.procmon import PeakTreeRss
from tests.aws_endpoint import MotoServer, certificate

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CACHE = ROOT / ".cache" / "bench"
CLUSTER = "helix-bench"
INFRASTRUCTURE = "playbooks/layers/infrastructure/{}.yml"
BOOTSTRAP = "playbooks/layers/bootstrap/create.yml"
BASELINE = "bench/baseline.yml"
TASK_TIME = re.compile(r"^(.+?) -+ (\d+\.\d+)s$", re.M)
RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
INSTANCE_OPERATIONS = {"RunInstances", "DescribeInstances", "CreateTags", "TerminateInstances"}

# What "node provisioning" is in each run: which module's requests count (and which operations,
# None for all), and the tasks whose times add up to the node step.
NODE_GROUP_TASKS = ("Ask node_group which workers", "Make exactly the wanted number of nodes")
NODE_STEP = {
    ("ours", "create"): ("node_group", None, NODE_GROUP_TASKS),
    ("ours", "noop"): ("node_group", None, NODE_GROUP_TASKS),
    ("ours", "delete"): ("layer_teardown", INSTANCE_OPERATIONS, ("Delete everything of the infrastructure layer",)),
    ("baseline", "create"): ("ec2_instance", None, ("One instance per worker",)),
    ("baseline", "noop"): ("ec2_instance", None, ("One instance per worker",)),
    ("baseline", "delete"): ("ec2_instance", None, ("Remove the baseline workers",)),
}


def node_step_seconds(subject, action, task_seconds):
    """Summed time of the node step's tasks, from the profile_tasks recap."""
    patterns = NODE_STEP[(subject, action)][2]
    times = [s for name, s in task_seconds.items() if any(p in name for p in patterns)]
    return round(sum(times), 2) if times else None


def playbook_command(playbook, extra_vars):
    return [str(BIN / "ansible-playbook"), playbook, "-i", "inventories/local", "-e", json.dumps(extra_vars)]


def environment(endpoint_url):
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        HELIX_AWS_ENDPOINT_URL=endpoint_url,
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
        PROFILE_TASKS_TASK_OUTPUT_LIMIT="all",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    return env


def run_playbook(command, env, log_path):
    """Run ansible-playbook; returns (seconds, peak tree RSS in bytes, returncode, output)."""
    with open(log_path, "w") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        monitor = PeakTreeRss(process.pid).start()
        returncode = process.wait()
        seconds = time.monotonic() - started
        peak = monitor.stop()
    return seconds, peak, returncode, log_path.read_text()


def measure(proxy, subject, workers, action, extra_vars, log_dir):
    playbook = INFRASTRUCTURE.format(extra_vars["lifecycle_step"]) if subject == "ours" else BASELINE
    log_path = log_dir / f"{subject}-{workers}-{action}.log"
    proxy.take()
    seconds, peak, returncode, output = run_playbook(
        playbook_command(playbook, extra_vars), environment(proxy.url), log_path
    )
    calls = proxy.take()
    if returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise SystemExit(f"{subject} {action} with {workers} workers failed (rc {returncode}), see {log_path}:\n{tail}")
    module, operations, _tasks = NODE_STEP[(subject, action)]
    node_calls = [c for c in calls if c.module == module and (operations is None or c.operation in operations)]
    tasks = {name.strip(): float(s) for name, s in TASK_TIME.findall(output)}
    recap = RECAP.search(output)
    result = dict(
        subject=subject,
        workers=workers,
        action=action,
        seconds=round(seconds, 2),
        peak_rss_mib=round(peak / 2**20, 1),
        changed=int(recap.group(2)) if recap else None,
        api_calls=len(calls),
        failed_calls=sum(1 for c in calls if c.status >= 400),
        calls_by_operation=dict(Counter(f"{c.service}:{c.operation}" for c in calls).most_common()),
        calls_by_module=dict(Counter(c.module for c in calls).most_common()),
        node_calls=len(node_calls),
        node_calls_by_operation=dict(Counter(c.operation for c in node_calls).most_common()),
        node_step_seconds=node_step_seconds(subject, action, tasks),
        task_seconds=tasks,
    )
    print(
        f"{subject:8} {action:6} workers={workers:<3} {seconds:6.1f}s calls={len(calls):<4} "
        f"node_calls={len(node_calls):<4} rss={result['peak_rss_mib']}MiB changed={result['changed']}",
        flush=True,
    )
    return result


def bootstrap(moto, log_dir, settings):
    command = playbook_command(BOOTSTRAP, settings)
    _seconds, _peak, returncode, output = run_playbook(command, environment(moto.url), log_dir / "bootstrap.log")
    if returncode != 0:
        raise SystemExit("bootstrap failed:\n" + "\n".join(output.splitlines()[-25:]))


def run(workers_counts, out_dir):
    log_dir = CACHE / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"cluster_name": CLUSTER, "state_dir": str(CACHE / "state")}
    moto = MotoServer(log_dir).start()
    cert, key = certificate()  # the local endpoint speaks TLS; so does the proxy, with the same certificate
    proxy = CountingProxy(moto.url, cafile=cert, certfile=cert, keyfile=key).start()
    started = time.monotonic()
    results = []
    try:
        for workers in workers_counts:
            moto.reset()
            bootstrap(moto, log_dir, settings)
            create = {**settings, "worker_count": workers, "lifecycle_step": "create"}
            delete = {**create, "lifecycle_step": "delete"}
            for subject, action, extra_vars in [
                ("ours", "create", create),
                ("ours", "noop", create),
                ("baseline", "create", create),
                ("baseline", "noop", create),
                ("baseline", "delete", delete),
                ("ours", "delete", delete),
            ]:
                results.append(measure(proxy, subject, workers, action, extra_vars, log_dir))
                (CACHE / "results.partial.json").write_text(json.dumps(results, indent=1))
    finally:
        proxy.stop()
        moto.stop()
    total = time.monotonic() - started
    print(f"whole run: {total:.0f}s", flush=True)
    data = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": {name: metadata.version(name) for name in ("ansible-core", "ansible", "boto3", "moto")},
        "workers": workers_counts,
        "total_seconds": round(total),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "results": results,
    }
    (out_dir / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    report.write(data, out_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,10,50,100", help="comma-separated worker counts")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="directory of the results")
    args = parser.parse_args()
    run([int(w) for w in args.workers.split(",")], Path(args.out))


if __name__ == "__main__":
    main()
