"""End to end on the local cloud: site.yml from an empty endpoint to Ready nodes, scaling with the drain, destroy.

The same playbooks and inventory as `make demo` (inventories/local), on a local cloud of the test's own
(tests/e2e/conftest.py), with only inventory variables changed. Root and systemd-nspawn needed; the
application layer waits for the demo images in the local cloud's ECR (issue #15).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import os
import re
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from ansible_collections.helix.kubeadm_aws.plugins.modules import ecr_image
from tests.ansible_run import run_playbook
from tests.demo_images import build_images
from tests.integration.leftovers import leftovers, owned
from tests.module_runner import run_module

pytestmark = pytest.mark.slow

CLUSTER = "helix-e2e"
VPC_CIDR = "10.43.0.0/16"
# strace's rendering of the address connect() was given, IPv4 and IPv6.
CONNECT = (
    re.compile(r'sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)'),
    re.compile(r'sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"'),
)


@pytest.fixture(scope="module")
def cluster(local_cloud, tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("state")
    variables = {
        "cluster_name": CLUSTER,
        "vpc_cidr": VPC_CIDR,
        "admin_cidrs": ["127.0.0.0/8", VPC_CIDR],
        "app_cidrs": ["127.0.0.0/8", VPC_CIDR],
        "state_dir": str(state_dir),
        "lifecycle_skip_layers": ["application"],
    }

    def run(playbook, prefix=(), **extra):
        return run_playbook(playbook, local_cloud.url, {**variables, **extra}, env=local_cloud.env, prefix=prefix)

    return run, state_dir / "kubeconfig"


def running_instances(cloud):
    ec2 = cloud.client("ec2")
    filters = [*owned(CLUSTER), {"Name": "instance-state-name", "Values": ["running"]}]
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def nodes(kubeconfig):
    api = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeconfig)))
    found = {}
    for node in api.list_node().items:
        ready = next(c.status for c in node.status.conditions if c.type == "Ready")
        internal = next(a.address for a in node.status.addresses if a.type == "InternalIP")
        found[node.metadata.name] = (ready, internal)
    return found


def assert_nodes_match_instances(cloud, kubeconfig, workers):
    instances = running_instances(cloud)
    assert len(instances) == 1 + workers
    expected = {i["PrivateDnsName"]: ("True", i["PrivateIpAddress"]) for i in instances}
    assert nodes(kubeconfig) == expected


def foreign_connections(trace):
    """(address, port) of every connection outside loopback and the VPC."""
    vpc = ipaddress.ip_network(VPC_CIDR)
    foreign = set()
    text = Path(trace).read_text()
    for port, address in (found for pattern in CONNECT for found in pattern.findall(text)):
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip in vpc or ip.is_unspecified):
            foreign.add((address, int(port)))
    return foreign


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(2)


def host_leftovers(cloud, instance_ids):
    """What of the given instances' nodes is still on this machine."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return {
        "node directories": [i for i in instance_ids if (cloud.state / "nodes" / i).exists()],
        "netns": [i for i in instance_ids if f"hx-{i[-8:]}" in netns],
        "nspawn or metadata servers": [i for i in instance_ids if i in processes],
        # localcloud/node.sh makes <its own cgroup>/helix/<instance id> in every v1 controller.
        "cgroups": sorted({str(p) for i in instance_ids for p in Path("/sys/fs/cgroup").glob(f"*/**/helix/{i}")}),
    }


def test_site_builds_the_cluster_on_booted_instances(local_cloud, cluster, tmp_path):
    run, kubeconfig = cluster
    trace = tmp_path / "connect.trace"
    strace = ["strace", "-f", "-qq", "-e", "trace=connect", "-e", "signal=none", "-o", str(trace)]
    result = run("site.yml", prefix=strace)
    assert result.returncode == 0, result.output[-6000:]
    assert_nodes_match_instances(local_cloud, kubeconfig, workers=2)
    assert foreign_connections(trace) == set()


def test_pods_pull_from_ecr_without_a_pull_secret(local_cloud, cluster, capsys, tmp_path):
    """The kubelet's ECR credential provider gets the token with the node's own instance profile (IAM enforced)."""
    kubeconfig = cluster[1]
    pushed = run_module(
        capsys,
        ecr_image,
        {
            "archive": str(pause_image(tmp_path / "pause.tar")),
            "repository": f"{CLUSTER}/api",
            "tag": "pull-test",
            "registry_url": f"https://127.0.0.1:{local_cloud.port + 1}",
            "endpoint_url": local_cloud.url,
            "region": "us-east-1",
            "access_key": local_cloud.env["AWS_ACCESS_KEY_ID"],
            "secret_key": local_cloud.env["AWS_SECRET_ACCESS_KEY"],
            "aws_ca_bundle": local_cloud.ca_bundle,
        },
    )
    assert not pushed.get("failed"), pushed
    api = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeconfig)))
    assert not [s for s in api.list_secret_for_all_namespaces().items if s.type == "kubernetes.io/dockerconfigjson"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pull-test"},
        "spec": {"containers": [{"name": "pause", "image": pushed["image"], "imagePullPolicy": "Always"}]},
    }
    api.create_namespaced_pod("default", pod)
    wait_until(
        lambda: api.read_namespaced_pod("pull-test", "default").status.phase == "Running", 120, "pulled and running"
    )
    api.delete_namespaced_pod("pull-test", "default", grace_period_seconds=0)


def pause_image(path):
    """A one-layer image of the nodes' pause binary, in demo_app/build_images.py's archive format."""
    binary = Path(os.environ.get("HELIX_CACHE_DIR") or Path.home() / ".cache/helix") / "nodes/bin/pause"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode, info.mtime = binary.stat().st_size, 0o755, 0
        with binary.open("rb") as content:
            tar.addfile(info, content)
    layer = buffer.getvalue()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    build_images.write_archive(path, f"{CLUSTER}/pause:1", config, gzip.compress(layer, mtime=0))
    return path


def test_second_run_changes_nothing(cluster):
    run = cluster[0]
    result = run("site.yml")
    assert result.returncode == 0, result.output[-4000:]
    assert result.changed == 0, result.recap


def test_scale_up_joins_a_new_worker(local_cloud, cluster):
    run, kubeconfig = cluster
    result = run("site.yml", worker_count=3)
    assert result.returncode == 0, result.output[-4000:]
    assert_nodes_match_instances(local_cloud, kubeconfig, workers=3)


def test_scale_down_drains_then_terminates(local_cloud, cluster):
    run, kubeconfig = cluster
    apps = k8s.AppsV1Api(k8s_config.new_client_from_config(str(kubeconfig)))
    apps.create_namespaced_deployment("default", PAUSE_DEPLOYMENT)
    wait_until(lambda: ready_replicas(apps) == 4, 120, "4 pause pods ready")
    before = {i["InstanceId"] for i in running_instances(local_cloud)}

    result = run("site.yml", worker_count=1)
    assert result.returncode == 0, result.output[-4000:]

    assert_nodes_match_instances(local_cloud, kubeconfig, workers=1)
    gone = before - {i["InstanceId"] for i in running_instances(local_cloud)}
    assert len(gone) == 2
    # Evicted before the terminate, the pods are back on the worker that stays.
    wait_until(lambda: ready_replicas(apps) == 4, 120, "the drained pods rescheduled")
    gone = sorted(gone)
    wait_until(lambda: not any(host_leftovers(local_cloud, gone).values()), 90, "the terminated nodes removed")


def test_destroy_leaves_nothing(local_cloud, cluster):
    run = cluster[0]
    ids = [i["InstanceId"] for i in running_instances(local_cloud)]
    result = run("destroy.yml")
    assert result.returncode == 0, result.output[-4000:]
    assert not any(leftovers(local_cloud, CLUSTER).values()), leftovers(local_cloud, CLUSTER)
    wait_until(lambda: not any(host_leftovers(local_cloud, ids).values()), 90, "every node removed from this machine")
    assert list((local_cloud.state / "bridges").glob("*")) == []

    again = run("destroy.yml")
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed == 0, again.recap


def ready_replicas(apps):
    return apps.read_namespaced_deployment("pause", "default").status.ready_replicas or 0


PAUSE_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "pause"},
    "spec": {
        "replicas": 4,
        "selector": {"matchLabels": {"app": "pause"}},
        "template": {
            "metadata": {"labels": {"app": "pause"}},
            "spec": {
                # On every node already (node_prep imports it): nothing is pulled.
                "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10.1", "imagePullPolicy": "Never"}]
            },
        },
    },
}
