"""playbooks/application.yml against a real kube-apiserver (kwok nodes) and the local AWS endpoint.

The tests of this module form one story and run in file order on one namespace: create, re-run,
upgrade and roll back, a tag pushed again, a tag missing from ECR, bad input, no kubeconfig, delete.
Needs the fixtures of tests/kube/fixtures.py (``pytest_plugins`` in tests/conftest.py).

kwok pulls nothing and runs nothing, so the layer runs with a prebuilt set of images: the test puts
each tag's images into the endpoint's ECR itself (PutImage, as the registry's push does on AWS), and
the playbook skips the build, the push (tested against a real registry in tests/unit/test_ecr_image.py
and on the local cloud) and the ui check. What it still does: DescribeImages for each tag, and the
manifests name every image by the digest ECR has for it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from tests.ansible_run import run_playbook
from tests.ecr_records import put_image

pytestmark = pytest.mark.slow

CLUSTER = "helix-apptest"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"  # moto's default account, via preflight
FIRST_TAG, SECOND_TAG = "1.0.0", "1.1.0"
WORKLOADS = [("Deployment", "ui"), ("Deployment", "api"), ("StatefulSet", "db")]
TIERS = ("ui", "api", "db")


class App:
    """The application layer of one test namespace, and a reader of what it made."""

    def __init__(self, aws, control_plane, api_client):
        from kubernetes.dynamic import DynamicClient

        self.aws = aws
        self.kubeconfig = control_plane.kubeconfig
        self.namespace = f"app-{uuid.uuid4().hex[:8]}"
        self.kube = DynamicClient(api_client)
        # The bootstrap layer's repositories, with each tag's images: {tag: {tier: digest}}.
        ecr = aws.client("ecr")
        for tier in TIERS:
            ecr.create_repository(repositoryName=f"{CLUSTER}/{tier}")
        self.digests = {
            tag: {tier: put_image(ecr, f"{CLUSTER}/{tier}", tag, f"{tier} {tag}") for tier in TIERS}
            for tag in (FIRST_TAG, SECOND_TAG)
        }

    def playbook(self, **extra_vars):
        extra = {
            "kubeconfig": self.kubeconfig,
            "cluster_name": CLUSTER,
            "application_namespace": self.namespace,
            # The local inventory skips the layers it cannot host; this cluster is the test's own.
            "lifecycle_skip_layers": [],
            # The images are in ECR already (above); kwok runs no ui to check.
            "application_build_images": False,
            "application_push_images": False,
            "application_ui_check": False,
        }
        extra.update(extra_vars)
        return run_playbook("playbooks/application.yml", self.aws.url, extra_vars=extra)

    def get(self, kind, name, api_version="v1"):
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self.kube.resources.get(api_version=api_version, kind=kind)
        try:
            return resource.get(name=name, namespace=None if kind == "Namespace" else self.namespace).to_dict()
        except NotFoundError:
            return None

    def workload(self, kind, name):
        return self.get(kind, name, api_version="apps/v1")

    def wait_rolled_out(self, tag):
        """The rollout state of every workload, once all run tag on all their ready replicas (or after 90 s)."""
        return eventually(
            lambda: {name: rollout_state(self.workload(kind, name)) for kind, name in WORKLOADS},
            {name: ("done", tag) for _kind, name in WORKLOADS},
        )

    def images(self):
        return {
            name: self.workload(kind, name)["spec"]["template"]["spec"]["containers"][0]["image"]
            for kind, name in WORKLOADS
        }

    def expected_images(self, tag):
        return {tier: f"{REGISTRY}/{CLUSTER}/{tier}@{digest}" for tier, digest in self.digests[tag].items()}


def eventually(read, expected, timeout=90):
    """What read() returns once it equals expected, or when timeout seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(1)


def flat(output):
    """The output with YAML line folding undone, so that long messages read as written."""
    return " ".join(output.split())


def rollout_state(workload):
    spec, status = workload["spec"], workload.get("status", {})
    done = (
        status.get("observedGeneration") == workload["metadata"]["generation"]
        and status.get("replicas") == spec["replicas"]
        and status.get("updatedReplicas") == spec["replicas"]
        and status.get("readyReplicas") == spec["replicas"]
        and status.get("currentRevision", "") == status.get("updateRevision", "")
    )
    return ("done" if done else "rolling", spec["template"]["metadata"]["labels"]["app.kubernetes.io/version"])


@pytest.fixture(scope="module")
def app(aws, kube_control_plane, kube_api_client):
    app = App(aws, kube_control_plane, kube_api_client)
    yield app
    namespaces = app.kube.resources.get(api_version="v1", kind="Namespace")
    if app.get("Namespace", app.namespace):
        namespaces.delete(name=app.namespace)


def test_create_deploys_the_app_and_waits_for_its_rollouts(app):
    run = app.playbook(application_image_tag=FIRST_TAG)
    assert run.returncode == 0, run.output

    # The Deployment starts with one replica; the autoscaler's controller raises it to the minimum.
    assert eventually(lambda: app.workload("Deployment", "api")["spec"]["replicas"], 2) == 2
    assert app.wait_rolled_out(FIRST_TAG) == {name: ("done", FIRST_TAG) for _kind, name in WORKLOADS}
    assert app.images() == app.expected_images(FIRST_TAG)  # by digest, the tag in the version label

    # Nodes pull with the kubelet's credential provider: no pull secret unless it is asked for.
    assert app.get("Secret", "ecr-pull-secret") is None
    for kind, name in WORKLOADS:
        assert "imagePullSecrets" not in app.workload(kind, name)["spec"]["template"]["spec"]

    ui, api, db = (app.get("Service", name) for name in ("ui", "api", "db"))
    assert ui["spec"]["type"] == "NodePort" and 30000 <= ui["spec"]["ports"][0]["nodePort"] <= 32767
    assert api["spec"]["type"] == db["spec"]["type"] == "ClusterIP"
    assert app.get("PersistentVolumeClaim", "data-db-0")["status"]["phase"] == "Bound"
    hpa = app.get("HorizontalPodAutoscaler", "api", api_version="autoscaling/v2")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert len(base64.b64decode(app.get("Secret", "db-credentials")["data"]["password"])) == 32


def test_a_second_run_changes_nothing(app):
    password = app.get("Secret", "db-credentials")["data"]["password"]
    node_port = app.get("Service", "ui")["spec"]["ports"][0]["nodePort"]

    run = app.playbook(application_image_tag=FIRST_TAG)

    assert run.returncode == 0, run.output
    assert run.changed == 0, run.output
    assert app.get("Secret", "db-credentials")["data"]["password"] == password
    assert app.get("Service", "ui")["spec"]["ports"][0]["nodePort"] == node_port


def test_a_new_tag_rolls_out_and_the_previous_tag_rolls_back(app):
    upgrade = app.playbook(application_image_tag=SECOND_TAG)
    assert upgrade.returncode == 0, upgrade.output
    assert upgrade.changed > 0
    assert app.wait_rolled_out(SECOND_TAG) == {name: ("done", SECOND_TAG) for _kind, name in WORKLOADS}
    assert app.images() == app.expected_images(SECOND_TAG)

    rollback = app.playbook(application_image_tag=FIRST_TAG)
    assert rollback.returncode == 0, rollback.output
    assert app.wait_rolled_out(FIRST_TAG) == {name: ("done", FIRST_TAG) for _kind, name in WORKLOADS}
    # The rollback is a third rollout that brings back the first ReplicaSet, not a new one.
    api = app.workload("Deployment", "api")
    assert api["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert app.images() == app.expected_images(FIRST_TAG)


def test_a_tag_pushed_again_rolls_out_its_new_image(app):
    ecr = app.aws.client("ecr")
    app.digests[FIRST_TAG]["api"] = put_image(ecr, f"{CLUSTER}/api", FIRST_TAG, "api, rebuilt")

    run = app.playbook(application_image_tag=FIRST_TAG)

    assert run.returncode == 0, run.output
    assert run.changed > 0
    assert app.wait_rolled_out(FIRST_TAG) == {name: ("done", FIRST_TAG) for _kind, name in WORKLOADS}
    assert app.images() == app.expected_images(FIRST_TAG)


def test_the_pull_secret_is_opt_in_and_goes_when_turned_off(app):
    run = app.playbook(application_image_tag=FIRST_TAG, application_pull_secret_enabled=True)
    assert run.returncode == 0, run.output
    pull_secret = app.get("Secret", "ecr-pull-secret")
    assert pull_secret["type"] == "kubernetes.io/dockerconfigjson"
    assert REGISTRY in json.loads(base64.b64decode(pull_secret["data"][".dockerconfigjson"]))["auths"]
    for kind, name in WORKLOADS:
        assert app.workload(kind, name)["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "ecr-pull-secret"}]

    off = app.playbook(application_image_tag=FIRST_TAG)
    assert off.returncode == 0, off.output
    assert app.get("Secret", "ecr-pull-secret") is None
    for kind, name in WORKLOADS:
        assert "imagePullSecrets" not in app.workload(kind, name)["spec"]["template"]["spec"]


def test_a_tag_missing_from_ecr_fails_naming_each_image_and_deploys_nothing(app):
    images = app.images()

    run = app.playbook(application_image_tag="9.9.9")

    assert run.returncode != 0
    assert run.changed == 0
    assert f"Not in ECR: {CLUSTER}/ui:9.9.9, {CLUSTER}/api:9.9.9, {CLUSTER}/db:9.9.9. Nothing was deployed." in flat(
        run.output
    )
    assert app.images() == images


def test_bad_input_fails_with_a_message_naming_each_variable(app):
    run = app.playbook(
        application_namespace="Bad_Namespace", application_ui_replicas=-1, application_image_tag="1.0 beta"
    )

    assert run.returncode != 0
    assert run.changed == 0
    output = flat(run.output)
    assert (
        "application_namespace must be a DNS label (a-z, 0-9, -; at most 63 characters), got 'Bad_Namespace'" in output
    )
    assert "application_ui_replicas must be 0 or more, got -1" in output
    assert "application_image_tag must be an image tag (letters, digits, _ . -; at most 128), got '1.0 beta'" in output


def test_without_a_kubeconfig_the_layer_fails_naming_it(app, tmp_path):
    run = app.playbook(kubeconfig=str(tmp_path / "missing.conf"))

    assert run.returncode != 0, run.output
    assert run.changed == 0
    assert f"needs the kubeconfig of cluster {CLUSTER}, and there is none at {tmp_path / 'missing.conf'}" in flat(
        run.output
    )


def test_delete_removes_the_namespace_and_waits_until_it_is_gone(app):
    run = app.playbook(lifecycle_action="delete")

    assert run.returncode == 0, run.output
    assert run.changed == 1
    assert app.get("Namespace", app.namespace) is None

    again = app.playbook(lifecycle_action="delete")
    assert again.returncode == 0, again.output
    assert again.changed == 0
