"""helix.kubeadm_aws.ecr_pull_secret against a real kube-apiserver and the local AWS endpoint.

The module runs in-process (tests/module_runner.py) except where the test is about what
ansible-playbook prints. Needs the fixtures of tests/kube/fixtures.py (``pytest_plugins`` in
tests/conftest.py).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.helix.kubeadm_aws.plugins.modules import ecr_pull_secret
from tests.ansible_run import run_playbook
from tests.module_runner import run_module

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"  # moto's default account
PASSWORD = "123456789012-auth-token"  # what moto issues as the registry password
TOKEN = base64.b64encode(f"AWS:{PASSWORD}".encode()).decode()
SECRET = "ecr-pull-secret"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def parse(text):
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=timezone.utc)


def in_ten_minutes():
    return (datetime.now(timezone.utc) + timedelta(minutes=10)).strftime(TIME_FORMAT)


# Merge patches that make a fresh secret stale, each in one of the ways the module must notice.
STALE = {
    "expiring-within-refresh_before_expiry": lambda: {
        "metadata": {"annotations": {"helix.io/ecr-token-expires-at": in_ten_minutes()}}
    },
    "made-for-another-registry": lambda: {
        "metadata": {"annotations": {"helix.io/ecr-registry": "210987654321.dkr.ecr.us-east-1.amazonaws.com"}}
    },
    "no-recorded-expiry": lambda: {"metadata": {"annotations": {"helix.io/ecr-token-expires-at": None}}},
    "no-stored-credentials": lambda: {"data": {".dockerconfigjson": base64.b64encode(b'{"auths": {}}').decode()}},
}


@pytest.fixture
def kube(kube_api_client):
    from kubernetes.dynamic import DynamicClient

    return DynamicClient(kube_api_client)


@pytest.fixture
def pull_secret(capsys, aws, kube_control_plane):
    """Run the module in-process: pull_secret(namespaces, check_mode=False, **options) -> result."""

    def run(namespaces, check_mode=False, **options):
        args = dict(namespaces=namespaces, kubeconfig=kube_control_plane.kubeconfig, **options)
        return run_module(capsys, ecr_pull_secret, args, aws=aws, check_mode=check_mode)

    return run


def read(kube, kind, name, namespace):
    from kubernetes.dynamic.exceptions import NotFoundError

    try:
        return kube.resources.get(api_version="v1", kind=kind).get(name=name, namespace=namespace).to_dict()
    except NotFoundError:
        return None


def stored_config(secret):
    return json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))


def test_secret_holds_a_dockerconfigjson_for_the_registry_and_a_rerun_changes_nothing(
    kube, kube_namespace, pull_secret
):
    first = pull_secret([kube_namespace])
    assert first["changed"] and first["secrets"][0]["action"] == "created"
    assert first["secrets"][0]["reason"] == "missing"
    assert first["registry"] == REGISTRY

    secret = read(kube, "Secret", SECRET, kube_namespace)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert stored_config(secret)["auths"][REGISTRY]["auth"] == TOKEN
    annotations = secret["metadata"]["annotations"]
    assert annotations["helix.io/ecr-registry"] == REGISTRY
    issued = parse(annotations["helix.io/ecr-token-issued-at"])
    expires = parse(annotations["helix.io/ecr-token-expires-at"])
    assert abs(issued - datetime.now(timezone.utc)) < timedelta(minutes=5)
    # moto reports an expiry in 2015; the module warns and assumes ECR's 12 hours. (The warning itself is
    # checked in tests/unit: in a process that has imported Ansible's controller code, it goes to the display.)
    assert expires - issued == timedelta(hours=12)

    second = pull_secret([kube_namespace])
    assert not second["changed"] and second["secrets"][0]["action"] == "unchanged"
    assert read(kube, "Secret", SECRET, kube_namespace)["metadata"] == secret["metadata"]


@pytest.mark.parametrize("stale", STALE.values(), ids=STALE.keys())
def test_a_stale_secret_is_refreshed(kube, kube_namespace, pull_secret, stale):
    pull_secret([kube_namespace])
    kube.resources.get(api_version="v1", kind="Secret").patch(
        body=stale(), name=SECRET, namespace=kube_namespace, content_type="application/merge-patch+json"
    )

    result = pull_secret([kube_namespace])

    assert result["changed"] and result["secrets"][0]["action"] == "refreshed", result["secrets"]
    secret = read(kube, "Secret", SECRET, kube_namespace)
    annotations = secret["metadata"]["annotations"]
    assert annotations["helix.io/ecr-registry"] == REGISTRY
    assert parse(annotations["helix.io/ecr-token-expires-at"]) > datetime.now(timezone.utc) + timedelta(hours=11)
    assert stored_config(secret)["auths"][REGISTRY]["auth"] == TOKEN
    assert not pull_secret([kube_namespace])["changed"]


def test_refresh_before_expiry_and_force_refresh_decide_what_is_stale(kube_namespace, pull_secret):
    pull_secret([kube_namespace])
    assert pull_secret([kube_namespace], refresh_before_expiry=13 * 3600)["changed"]
    assert not pull_secret([kube_namespace], refresh_before_expiry=3600)["changed"]
    assert pull_secret([kube_namespace], force_refresh=True)["changed"]


def test_check_mode_writes_nothing(kube, kube_namespace, pull_secret):
    result = pull_secret([kube_namespace], check_mode=True, service_account="default")

    assert result["changed"]
    assert read(kube, "Secret", SECRET, kube_namespace) is None
    assert not read(kube, "ServiceAccount", "default", kube_namespace).get("imagePullSecrets")


def test_the_service_account_gets_the_secret_in_its_image_pull_secrets(kube, kube_namespace, pull_secret):
    assert pull_secret([kube_namespace], service_account="default")["changed"]
    assert read(kube, "ServiceAccount", "default", kube_namespace)["imagePullSecrets"] == [{"name": SECRET}]
    assert not pull_secret([kube_namespace], service_account="default")["changed"]

    assert pull_secret([kube_namespace], service_account="default", state="absent")["changed"]
    assert read(kube, "Secret", SECRET, kube_namespace) is None
    assert not read(kube, "ServiceAccount", "default", kube_namespace).get("imagePullSecrets")
    assert not pull_secret([kube_namespace], service_account="default", state="absent")["changed"]


def test_a_secret_of_another_type_is_left_alone(kube, kube_namespace, pull_secret):
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "stringData": {"keep": "me"}}
    kube.resources.get(api_version="v1", kind="Secret").create(body=body, namespace=kube_namespace)

    result = pull_secret([kube_namespace])

    assert result["failed"]
    assert f"{kube_namespace}/{SECRET} exists with type Opaque" in result["msg"]
    assert read(kube, "Secret", SECRET, kube_namespace)["type"] == "Opaque"


def test_ansible_playbook_shows_the_diff_but_never_the_token(tmp_path, aws, kube, kube_namespace, kube_control_plane):
    task = dict(namespaces=[kube_namespace], kubeconfig=kube_control_plane.kubeconfig, region="us-east-1")
    task.update(access_key="testing", secret_key="testing")
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{"helix.kubeadm_aws.ecr_pull_secret": task}]}]
    playbook = tmp_path / "pull_secret.yml"
    playbook.write_text(json.dumps(play))  # JSON is YAML

    run = run_playbook(str(playbook), aws.url, args=["--diff", "-vvv"])

    assert run.returncode == 0, run.output
    assert run.changed == 1
    assert f"registry: {REGISTRY}" in run.output  # the diff of the annotations ...
    assert PASSWORD not in run.output and TOKEN not in run.output  # ... never the credentials
    assert stored_config(read(kube, "Secret", SECRET, kube_namespace))["auths"][REGISTRY]["password"] == PASSWORD
