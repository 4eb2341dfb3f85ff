"""The local control plane is a real Kubernetes API that workloads can converge on."""

from __future__ import annotations

import time
import uuid

import pytest

# Fixtures: tests/kube/fixtures.py, enabled by pytest_plugins in tests/conftest.py.

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # never pulled: kwok runs no containers


def wait_for(what, predicate, timeout=90.0, interval=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def _labels(name):
    return {"app.kubernetes.io/name": name}


def deployment(name, replicas):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _labels(name)},
            "template": {
                "metadata": {"labels": _labels(name)},
                "spec": {"containers": [{"name": "app", "image": PAUSE_IMAGE}]},
            },
        },
    }


def statefulset(name, replicas, storage="1Gi"):
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": _labels(name)},
            "template": {
                "metadata": {"labels": _labels(name)},
                "spec": {
                    "containers": [
                        {
                            "name": "db",
                            "image": PAUSE_IMAGE,
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    # no storageClassName: the default class 'standard' is used
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
                }
            ],
        },
    }


def headless_service(name):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"clusterIP": "None", "selector": _labels(name), "ports": [{"port": 5432}]},
    }


def test_api_reports_pinned_version(kube_control_plane, kube_api_client):
    from tests.kube.fixtures import k8s_version

    info = client.VersionApi(kube_api_client).get_code()
    assert info.git_version == k8s_version()
    assert kube_control_plane.api_url.startswith("https://127.0.0.1:")
    nodes = client.CoreV1Api(kube_api_client).list_node().items
    assert sorted(n.metadata.name for n in nodes) == sorted(kube_control_plane.node_names)
    for node in nodes:  # kwok-simulated kubelets report the same version
        assert node.status.node_info.kubelet_version == k8s_version()
        assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"


def test_deployment_becomes_available(kube_api_client, kube_namespace):
    apps = client.AppsV1Api(kube_api_client)
    apps.create_namespaced_deployment(kube_namespace, deployment("web", 2))

    def available():
        d = apps.read_namespaced_deployment("web", kube_namespace)
        conds = {c.type: c.status for c in (d.status.conditions or [])}
        return d.status.available_replicas == 2 and conds.get("Available") == "True"

    wait_for("Deployment web Available with 2 replicas", available)
    pods = (
        client.CoreV1Api(kube_api_client)
        .list_namespaced_pod(kube_namespace, label_selector="app.kubernetes.io/name=web")
        .items
    )
    assert len(pods) == 2
    assert all(p.status.phase == "Running" and p.spec.node_name for p in pods)


def test_hpa_can_exist_without_metrics_server(kube_api_client, kube_namespace):
    apps = client.AppsV1Api(kube_api_client)
    apps.create_namespaced_deployment(kube_namespace, deployment("web", 1))
    autoscaling = client.AutoscalingV2Api(kube_api_client)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        kube_namespace,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                    }
                ],
            },
        },
    )

    def processed():  # the real HPA controller looked at it (and found no metrics API)
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("web", kube_namespace)
        return {c.type: c.status for c in (hpa.status.conditions or [])}

    conds = wait_for("HPA conditions set by the controller", processed, timeout=60)
    assert conds.get("AbleToScale") == "True"
    assert conds.get("ScalingActive") == "False"  # no metrics server: expected


def test_statefulset_with_volume_claim_template_becomes_ready(kube_api_client, kube_namespace):
    core = client.CoreV1Api(kube_api_client)
    apps = client.AppsV1Api(kube_api_client)
    core.create_namespaced_service(kube_namespace, headless_service("db"))
    apps.create_namespaced_stateful_set(kube_namespace, statefulset("db", 2))

    def ready():
        s = apps.read_namespaced_stateful_set("db", kube_namespace)
        return s.status.ready_replicas == 2 and s.status.available_replicas == 2

    wait_for("StatefulSet db with 2 ready replicas", ready)
    pvcs = core.list_namespaced_persistent_volume_claim(kube_namespace).items
    assert sorted(p.metadata.name for p in pvcs) == ["data-db-0", "data-db-1"]
    for pvc in pvcs:
        assert pvc.status.phase == "Bound"
        assert pvc.spec.storage_class_name == "standard"
        pv = core.read_persistent_volume(pvc.spec.volume_name)
        assert pv.spec.claim_ref.uid == pvc.metadata.uid
        assert pv.spec.capacity["storage"] == "1Gi"
        # WaitForFirstConsumer: the volume is pinned to the node the pod runs on
        pod = core.read_namespaced_pod(pvc.metadata.name.removeprefix("data-"), kube_namespace)
        terms = pv.spec.node_affinity.required.node_selector_terms
        assert terms[0].match_expressions[0].values == [pod.spec.node_name]


def test_namespace_deletion_completes(kube_api_client):
    core = client.CoreV1Api(kube_api_client)
    apps = client.AppsV1Api(kube_api_client)
    ns = f"t-delete-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    wait_for("default ServiceAccount", lambda: _exists(lambda: core.read_namespaced_service_account("default", ns)))
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"k": "v"}})
    apps.create_namespaced_deployment(ns, deployment("web", 1))
    core.create_namespaced_service(ns, headless_service("db"))
    apps.create_namespaced_stateful_set(ns, statefulset("db", 1))
    wait_for(
        "StatefulSet ready before deletion",
        lambda: apps.read_namespaced_stateful_set("db", ns).status.ready_replicas == 1,
    )
    pv_name = core.read_namespaced_persistent_volume_claim("data-db-0", ns).spec.volume_name
    assert pv_name

    core.delete_namespace(ns)
    wait_for(f"namespace {ns} to disappear", lambda: not _exists(lambda: core.read_namespace(ns)), timeout=120)
    # the simulated provisioner deletes the Released volume (reclaimPolicy Delete)
    wait_for(
        f"PersistentVolume {pv_name} deleted",
        lambda: not _exists(lambda: core.read_persistent_volume(pv_name)),
        timeout=60,
    )


def _exists(read):
    try:
        read()
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise
