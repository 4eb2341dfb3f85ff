"""End to end on the local cloud: site.yml from an empty endpoint to the demo app answering, a rollout and a
rollback, scaling with the drain, destroy.

The same playbooks and inventory as `make demo` (inventories/local), on a local cloud of the test's own
(tests/e2e/conftest.py), with only inventory variables changed. Root, systemd-nspawn and Debian's chromium
needed (`make test-e2e` installs what is missing). The tests run in file order and share one cluster.
"""

from __future__ import annotations

import calendar
import gzip
import hashlib
import io
import ipaddress
import json
import os
import re
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from ansible_collections.helix.kubeadm_aws.plugins.modules import ecr_image
from tests.ansible_run import ROOT, run_playbook
from tests.demo_images import build_images, load_script
from tests.integration.leftovers import leftovers, owned
from tests.module_runner import run_module

pytestmark = pytest.mark.slow
app_round_trip = load_script("tools/app_round_trip.py")

CLUSTER = "helix-e2e"
VPC_CIDR = "10.43.0.0/16"
NAMESPACE = "demo"
TAG = "0.1.0"  # application_image_tag's default
MESSAGES = []  # written through the app by one test, read back by later ones
# The scaling tests are about nodes. Scaled down to one worker, the db may have lost the node its volume is
# bound to (local-path; on AWS an EBS volume is bound to its zone): the application layer would wait for it.
NODES_ONLY = {"lifecycle_skip_layers": ["application"]}
FIRST_PULL = {}  # the pull test's image, and where its pull starts and ends in the ECR front's log
# Root needs --no-sandbox; the virtual time budget lets the page's fetch() finish before the dump.
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
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
        "lifecycle_skip_layers": [],
    }

    def run(playbook, prefix=(), **extra):
        return run_playbook(playbook, local_cloud.url, {**variables, **extra}, env=local_cloud.env, prefix=prefix)

    return run, state_dir / "kubeconfig"


@pytest.fixture(scope="module")
def app_url(cluster):
    """The ui's URL, as the application layer wrote it for `make demo`."""
    return (Path(cluster[1]).parent / "app-url").read_text().strip()


def core(kubeconfig):
    return k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeconfig)))


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


def test_site_builds_the_cluster_and_the_app_on_booted_instances(local_cloud, cluster, tmp_path):
    run, kubeconfig = cluster
    trace = tmp_path / "connect.trace"
    strace = ["strace", "-f", "-qq", "-e", "trace=connect", "-e", "signal=none", "-o", str(trace)]
    result = run("site.yml", prefix=strace)
    assert result.returncode == 0, result.output[-6000:]
    assert_nodes_match_instances(local_cloud, kubeconfig, workers=2)
    assert foreign_connections(trace) == set()


def test_the_app_answers_a_write_and_a_read(app_url):
    assert ipaddress.ip_address(urlsplit(app_url).hostname) in ipaddress.ip_network(VPC_CIDR)
    MESSAGES.append(app_round_trip.round_trip(app_url))


def test_the_app_runs_ecr_images_by_digest_with_no_pull_secret_and_a_bound_volume(local_cloud, cluster):
    api = core(cluster[1])
    account = local_cloud.client("sts").get_caller_identity()["Account"]
    registry = f"{account}.dkr.ecr.us-east-1.amazonaws.com/{CLUSTER}/"
    ecr = local_cloud.client("ecr")
    pods = api.list_namespaced_pod(NAMESPACE).items
    assert {p.metadata.labels["app.kubernetes.io/name"] for p in pods} >= {"ui", "api", "db"}
    for pod in pods:
        assert not pod.spec.image_pull_secrets, pod.metadata.name
        for container in pod.spec.containers:
            repository, digest = container.image.removeprefix(registry).split("@")
            assert container.image.startswith(registry), container.image
            tagged = ecr.describe_images(repositoryName=f"{CLUSTER}/{repository}", imageIds=[{"imageTag": TAG}])
            assert tagged["imageDetails"][0]["imageDigest"] == digest, container.image
    assert not [s for s in api.list_secret_for_all_namespaces().items if s.type == "kubernetes.io/dockerconfigjson"]
    claims = api.list_namespaced_persistent_volume_claim(NAMESPACE).items
    assert claims and {c.status.phase for c in claims} == {"Bound"}


def test_the_ui_page_renders_data_from_the_api(app_url):
    """Debian's chromium, headless, runs the page's script, which lists the api's messages."""
    page = subprocess.run(
        [*CHROMIUM, "--dump-dom", app_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert f"<li>{MESSAGES[0]}</li>" in page, page[-2000:]


def test_the_db_keeps_its_data_over_a_pod_restart(cluster, app_url):
    api = core(cluster[1])
    before = api.read_namespaced_pod("db-0", NAMESPACE).metadata.uid
    api.delete_namespaced_pod("db-0", NAMESPACE)

    def restarted():
        pod = api.read_namespaced_pod("db-0", NAMESPACE)
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        return pod.metadata.uid != before and ready

    wait_until(lambda: exists(restarted), 180, "db-0 back and Ready")
    # The api is not ready while the db is away (its readiness probe asks the db): the ui answers 502 until then.
    wait_until(lambda: exists(lambda: MESSAGES[0] in messages(app_url)), 120, "the message read back after the restart")


def test_the_api_autoscaler_gets_metrics(cluster):
    """metrics-server answers the HorizontalPodAutoscaler (it scrapes every 15 s)."""
    autoscaling = k8s.AutoscalingV2Api(k8s_config.new_client_from_config(str(cluster[1])))
    wait_until(
        lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler("api", NAMESPACE).status.current_metrics,
        240,
        "the api's HPA reports current metrics",
    )


def test_pods_pull_from_ecr_without_a_pull_secret(local_cloud, cluster, capsys, tmp_path):
    """The kubelet's ECR credential provider gets the token with the node's own instance profile (IAM enforced)."""
    kubeconfig = cluster[1]
    pushed = run_module(
        capsys,
        ecr_image,
        {
            "images": [{"archive": str(pause_image(tmp_path / "pause.tar")), "repository": f"{CLUSTER}/api"}],
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
    api = core(kubeconfig)
    assert not [s for s in api.list_secret_for_all_namespaces().items if s.type == "kubernetes.io/dockerconfigjson"]
    image = pushed["images"][0]["image"]
    FIRST_PULL.update(image=image, log_start=front_log(local_cloud).stat().st_size)
    pull(api, "pull-test", image)
    FIRST_PULL["log_end"] = front_log(local_cloud).stat().st_size


def front_log(cloud):
    return ROOT / f".cache/localcloud/registry-{cloud.port + 1}.log"


def tokens(log, start, end=None):
    """(issued, expires) in epoch seconds of the tokens the front logged for the test image's manifest fetches."""
    with log.open("rb") as lines:
        lines.seek(start)
        text = lines.read((end - start) if end else -1).decode()
    repository = FIRST_PULL["image"].split("/", 1)[1].split("@")[0]
    return [
        tuple(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) for stamp in found)
        for found in re.findall(rf"{re.escape(repository)}:\S+ with a token issued (\S+), expiring (\S+)", text)
    ]


def pull(api, name, image):
    """A pod that pulls image (imagePullPolicy Always) and runs; removed once it ran."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "pause", "image": image, "imagePullPolicy": "Always"}]},
    }
    api.create_namespaced_pod("default", pod)
    wait_until(lambda: api.read_namespaced_pod(name, "default").status.phase == "Running", 120, f"{name} pulled")
    api.delete_namespaced_pod(name, "default", grace_period_seconds=0)


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


def test_a_new_tag_rolls_out_and_the_previous_one_rolls_back(local_cloud, cluster, app_url):
    run, kubeconfig = cluster
    apps = k8s.AppsV1Api(k8s_config.new_client_from_config(str(kubeconfig)))
    for tag in ("0.2.0", TAG):
        result = run("playbooks/application.yml", application_image_tag=tag)
        assert result.returncode == 0, result.output[-4000:]
        for name in ("ui", "api"):
            deployment = apps.read_namespaced_deployment(name, NAMESPACE)
            assert deployment.spec.template.metadata.labels["app.kubernetes.io/version"] == tag
            assert deployment.status.updated_replicas == deployment.status.ready_replicas == deployment.status.replicas
        assert MESSAGES[0] in messages(app_url)
    ecr = local_cloud.client("ecr")
    for tier in ("ui", "api", "db"):
        images = ecr.describe_images(repositoryName=f"{CLUSTER}/{tier}")["imageDetails"]
        assert {"0.2.0", TAG} <= {tag for image in images for tag in image["imageTags"]}


def test_a_pull_after_the_first_token_expired_gets_a_new_token(local_cloud, cluster):
    """ecr-credential-provider has the kubelet cache a token for half its life; the kubelet asks again after.

    The front's log names the token each manifest fetch used: the second pull's was issued after every
    token of the first pull had expired.
    """
    log = front_log(local_cloud)
    second = log.stat().st_size
    first_expiry = max(token[1] for token in tokens(log, FIRST_PULL["log_start"], FIRST_PULL["log_end"]))
    time.sleep(max(0.0, first_expiry - time.time() + 1))  # the earlier tests have usually waited long enough
    pull(core(cluster[1]), "pull-after-expiry", FIRST_PULL["image"])
    issued = [token[0] for token in tokens(log, second)]
    assert issued and min(issued) >= first_expiry, (issued, first_expiry)


def test_scale_up_joins_a_new_worker(local_cloud, cluster):
    run, kubeconfig = cluster
    result = run("site.yml", worker_count=3, **NODES_ONLY)
    assert result.returncode == 0, result.output[-4000:]
    assert_nodes_match_instances(local_cloud, kubeconfig, workers=3)


def test_scale_down_drains_then_terminates(local_cloud, cluster):
    run, kubeconfig = cluster
    apps = k8s.AppsV1Api(k8s_config.new_client_from_config(str(kubeconfig)))
    apps.create_namespaced_deployment("default", PAUSE_DEPLOYMENT)
    wait_until(lambda: ready_replicas(apps) == 4, 120, "4 pause pods ready")
    before = {i["InstanceId"] for i in running_instances(local_cloud)}

    result = run("site.yml", worker_count=1, **NODES_ONLY)
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
    # ECR deletes a repository's images with it: the registry's storage keeps nothing of them.
    storage = ROOT / f".cache/localcloud/registry-{local_cloud.port + 1}/data/docker/registry/v2"
    wait_until(lambda: not list(storage.glob(f"repositories/{CLUSTER}/*")), 30, "the repositories' data removed")
    assert not list(storage.glob("blobs/**/data")), "blobs of deleted repositories remain"

    again = run("destroy.yml")
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed == 0, again.recap


def messages(url):
    with urllib.request.urlopen(url + "/api/messages", timeout=10) as response:
        return [m["text"] for m in json.load(response)]


def exists(predicate):
    """predicate(), False while what it reads is missing (404) or not answering yet."""
    try:
        return predicate()
    except (k8s.ApiException, OSError):
        return False


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
