"""pytest plugin: a real Kubernetes API (kwok-simulated nodes) for tests.

Enable it from the root conftest.py::

    pytest_plugins = ["tests.kube.fixtures"]

Fixtures:

``kube_control_plane`` (session)
    A started :class:`tests.kube.controlplane.LocalControlPlane`; use its
    ``.kubeconfig`` (admin kubeconfig path) and ``.api_url``. Binaries are
    taken from ``${HELIX_CACHE_DIR:-~/.cache/helix}/kubernetes/<version>/bin``;
    when some are missing, ``tests/kube/build.sh`` is run once to build them
    (a cold build takes long -- see docs/kubernetes-harness.md).
``kube_api_client`` (session)
    A ``kubernetes.client.ApiClient`` for that control plane (cluster admin).
``kube_namespace`` (function)
    Name of a fresh, uniquely named namespace (its ``default`` ServiceAccount
    exists); deleted after the test without waiting for the deletion to finish.

Environment: ``HELIX_K8S_VERSION`` (default v1.34.4), ``HELIX_CACHE_DIR``,
``HELIX_KUBE_BIN_DIR`` (use binaries from this directory instead; never builds).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.kube.controlplane import COMPONENTS, ControlPlaneError, LocalControlPlane

DEFAULT_K8S_VERSION = "v1.34.4"
BUILD_SCRIPT = Path(__file__).resolve().with_name("build.sh")


def k8s_version() -> str:
    return os.environ.get("HELIX_K8S_VERSION") or DEFAULT_K8S_VERSION


def kube_bin_dir() -> Path:
    override = os.environ.get("HELIX_KUBE_BIN_DIR")
    if override:
        return Path(override).expanduser()
    cache = os.environ.get("HELIX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "helix")
    return Path(cache) / "kubernetes" / k8s_version() / "bin"


def ensure_binaries(components=COMPONENTS) -> Path:
    """Return the bin dir, running build.sh once if a component is missing."""
    bin_dir = kube_bin_dir()
    missing = [c for c in components if not (bin_dir / c).is_file()]
    if missing:
        if os.environ.get("HELIX_KUBE_BIN_DIR"):
            raise ControlPlaneError(f"HELIX_KUBE_BIN_DIR={bin_dir} lacks {' '.join(missing)}")
        # Output is not captured so that a long cold build shows progress with -s.
        subprocess.run([str(BUILD_SCRIPT), *missing], check=True)
        still = [c for c in components if not (bin_dir / c).is_file()]
        if still:
            raise ControlPlaneError(f"{BUILD_SCRIPT} ran but {' '.join(still)} missing in {bin_dir}")
    return bin_dir


@pytest.fixture(scope="session")
def kube_control_plane(tmp_path_factory):
    """Started LocalControlPlane (session-wide): .kubeconfig, .api_url, .node_names."""
    bin_dir = ensure_binaries()
    workdir = tmp_path_factory.mktemp("kube-control-plane")
    cp = LocalControlPlane(workdir, bin_dir)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kube_api_client(kube_control_plane):
    """kubernetes.client.ApiClient for the session control plane (cluster admin)."""
    api = kube_control_plane.api_client()
    try:
        yield api
    finally:
        api.close()


def _namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", nodeid.split("::")[-1].lower()).strip("-")
    suffix = uuid.uuid4().hex[:6]
    return f"t-{base[: 63 - 3 - len(suffix) - 1].strip('-')}-{suffix}"


@pytest.fixture
def kube_namespace(request, kube_api_client):
    """Name of a fresh namespace (its 'default' ServiceAccount exists), deleted afterwards."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube_api_client)
    name = _namespace_name(request.node.nodeid)
    core.create_namespace(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"helix.test/namespace": "true"}},
        }
    )
    # Pods are rejected until the service-account controller made 'default'.
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise
