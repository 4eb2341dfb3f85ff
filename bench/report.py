"""Turn bench/results/results.json into results.md (tables) and results.png (plot).

python -m bench.report [results dir]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NODE_TARGET_RATIO = 2.0
NOOP_TARGET_RATIO = 0.25


def _index(data):
    return {(r["subject"], r["workers"], r["action"]): r for r in data["results"]}


def _fmt(value, digits=1):
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ratio(a, b):
    return a / b if a is not None and b else None


def headline(data):
    """The figures the README quotes, computed from the results."""
    runs = _index(data)
    low, high = min(data["workers"]), max(data["workers"])

    def get(subject, workers, action, key):
        return runs[(subject, workers, action)][key]

    return {
        "low": low,
        "high": high,
        "node_calls_low": get("ours", low, "create", "node_calls"),
        "node_calls_high": get("ours", high, "create", "node_calls"),
        "node_call_growth": _ratio(get("ours", high, "create", "node_calls"), get("ours", low, "create", "node_calls")),
        "noop_ratio": {
            w: _ratio(get("ours", w, "noop", "seconds"), get("ours", w, "create", "seconds")) for w in data["workers"]
        },
        "node_noop_ratio": {
            w: _ratio(get("ours", w, "noop", "node_step_seconds"), get("ours", w, "create", "node_step_seconds"))
            for w in data["workers"]
        },
        "calls_vs_baseline": _ratio(
            get("ours", high, "create", "node_calls"), get("baseline", high, "create", "node_calls")
        ),
        "node_time_vs_baseline": _ratio(
            get("ours", high, "create", "node_step_seconds"), get("baseline", high, "create", "node_step_seconds")
        ),
        "layer_time_vs_baseline": _ratio(
            get("ours", high, "create", "seconds"), get("baseline", high, "create", "seconds")
        ),
        "noop_calls_vs_baseline": _ratio(
            get("ours", high, "noop", "node_calls"), get("baseline", high, "noop", "node_calls")
        ),
    }


def markdown(data):
    runs = _index(data)
    h = headline(data)
    versions = ", ".join(f"{k} {v}" for k, v in data.get("versions", {}).items())
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` ({data.get('date', '')}): {data['cpus']} CPUs, load average "
        f"{', '.join(f'{x:.1f}' for x in data['load_average_at_end'])} at the end, whole run "
        f"{data['total_seconds']} s. Local AWS endpoint: moto server behind a counting proxy; {versions}.",
        "Times are wall seconds on a shared machine (noisy); API calls are counted from the requests.",
        "",
        "## Node provisioning: ours (`node_group`) against the baseline (`ec2_instance` once per node)",
        "",
        "Calls and seconds of the node step only: the `node_group` tasks of the infrastructure layer",
        "(both node groups, 1 control-plane node and the workers, and the check-mode plan of the drain",
        "step), and the `ec2_instance` loop of bench/baseline.yml. For delete: the instance calls of",
        "`layer_teardown`, and the baseline's one `ec2_instance` task with a tag filter.",
        "",
        "| workers | run | ours calls | baseline calls | ours s | baseline s |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for w in data["workers"]:
        for action in ("create", "noop", "delete"):
            ours, base = runs[("ours", w, action)], runs[("baseline", w, action)]
            lines.append(
                f"| {w} | {action} | {ours['node_calls']} | {base['node_calls']} | "
                f"{_fmt(ours['node_step_seconds'])} | {_fmt(base['node_step_seconds'])} |"
            )
    lines += [
        "",
        "## Whole playbook runs",
        "",
        "ours = the infrastructure layer, playbooks/layers/infrastructure/create.yml (network, IAM, launch templates,",
        "1 control-plane node and the workers); baseline = bench/baseline.yml (the workers only, on the",
        "subnets and launch template ours made).",
        "",
        "| workers | playbook | run | wall s | API calls | node calls | node step s | peak RSS MiB | changed |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for w in data["workers"]:
        for subject in ("ours", "baseline"):
            for action in ("create", "noop", "delete"):
                r = runs[(subject, w, action)]
                lines.append(
                    f"| {w} | {subject} | {action} | {_fmt(r['seconds'])} | {r['api_calls']} | {r['node_calls']} | "
                    f"{_fmt(r['node_step_seconds'])} | {_fmt(r['peak_rss_mib'])} | {_fmt(r['changed'])} |"
                )
    growth_ok = h["node_call_growth"] is not None and h["node_call_growth"] <= NODE_TARGET_RATIO
    lines += [
        "",
        "## Targets",
        "",
        f"- Node provisioning calls, create, {h['high']} workers against {h['low']}: "
        f"{h['node_calls_high']} / {h['node_calls_low']} = {_fmt(h['node_call_growth'], 2)} "
        f"(target at most {NODE_TARGET_RATIO:g}): {'met' if growth_ok else 'NOT met'}.",
        "- No-op re-run / create, wall time of the whole layer (target at most "
        f"{NOOP_TARGET_RATIO:g}): " + ", ".join(f"{w} workers {_fmt(r, 2)}" for w, r in h["noop_ratio"].items()) + ".",
        "- The same for the node step alone: "
        + ", ".join(f"{w} workers {_fmt(r, 2)}" for w, r in h["node_noop_ratio"].items())
        + ".",
        "",
        f"## Ours against the baseline at {h['high']} workers",
        "",
        f"- Node provisioning API calls, create: {_fmt(h['calls_vs_baseline'], 2)} of the baseline's; "
        f"no-op: {_fmt(h['noop_calls_vs_baseline'], 2)}.",
        f"- Create time of the node step: {_fmt(h['node_time_vs_baseline'], 2)} of the baseline's; the whole "
        f"layer (network, IAM, templates and nodes): {_fmt(h['layer_time_vs_baseline'], 2)} of the baseline "
        "playbook's (nodes only).",
        "",
        f"## Calls by operation, create with {h['high']} workers",
        "",
        "| operation | ours, whole layer | ours, node step | baseline |",
        "| --- | ---: | ---: | ---: |",
    ]
    ours, base = runs[("ours", h["high"], "create")], runs[("baseline", h["high"], "create")]
    operations = dict.fromkeys([*ours["calls_by_operation"], *base["calls_by_operation"]])
    for op in operations:
        name = op.split(":", 1)[1]
        node = ours["node_calls_by_operation"].get(name, 0) if op.startswith("ec2:") else 0
        lines.append(
            f"| {op} | {ours['calls_by_operation'].get(op, 0)} | {node} | {base['calls_by_operation'].get(op, 0)} |"
        )
    return "\n".join(lines) + "\n"


# (subject, run, figure, line style, colour, legend) of each line of the plot.
CALL_LINES = [
    ("ours", "create", "node_calls", "o-", "tab:blue", "ours: node_group, create"),
    ("ours", "noop", "node_calls", "o--", "tab:blue", "ours: node_group, no-op"),
    ("ours", "create", "api_calls", "s:", "tab:cyan", "ours: whole layer, create"),
    ("baseline", "create", "node_calls", "o-", "tab:red", "baseline: create"),
    ("baseline", "noop", "node_calls", "o--", "tab:red", "baseline: no-op"),
]
TIME_LINES = [
    ("ours", "create", "seconds", "s:", "tab:cyan", "ours: whole layer, create"),
    ("ours", "noop", "seconds", "s-.", "tab:cyan", "ours: whole layer, no-op"),
    ("ours", "create", "node_step_seconds", "o-", "tab:blue", "ours: node step, create"),
    ("ours", "noop", "node_step_seconds", "o--", "tab:blue", "ours: node step, no-op"),
    ("baseline", "create", "node_step_seconds", "o-", "tab:red", "baseline: create"),
    ("baseline", "noop", "node_step_seconds", "o--", "tab:red", "baseline: no-op"),
]


def plot(data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _index(data)
    workers = data["workers"]

    def series(subject, action, key):
        return [runs[(subject, w, action)][key] for w in workers]

    fig, (calls, times) = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, lines in ((calls, CALL_LINES), (times, TIME_LINES)):
        for subject, action, key, style, color, label in lines:
            ax.plot(workers, series(subject, action, key), style, color=color, label=label)
    calls.set(title="AWS API calls", xlabel="worker nodes", ylabel="requests")
    times.set(title="Wall time", xlabel="worker nodes", ylabel="seconds")
    for ax in (calls, times):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_xticks(workers)
    fig.suptitle("helix.kubeadm_aws infrastructure layer against one ec2_instance call per node (local endpoint)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(data, out_dir):
    out_dir = Path(out_dir)
    (out_dir / "results.md").write_text(markdown(data))
    plot(data, out_dir / "results.png")
    print(f"wrote {out_dir / 'results.md'} and {out_dir / 'results.png'}")


if __name__ == "__main__":
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results")
    write(json.loads((directory / "results.json").read_text()), directory)
