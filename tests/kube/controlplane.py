"""A real Kubernetes control plane on loopback for tests, with simulated nodes.

Real: etcd, kube-apiserver, kube-controller-manager and kube-scheduler, built
from source by ``tests/kube/build.sh`` (TLS, RBAC, admission, service
accounts, garbage collection, namespace deletion, PV binding -- all the real
code paths).

Simulated (by kwok, https://kwok.sigs.k8s.io): the kubelets. Nodes are plain
Node objects annotated ``kwok.x-k8s.io/node=fake``; kwok marks them Ready,
keeps their leases alive, moves pods scheduled onto them to Running/Ready and
finalizes pod deletion. No container ever runs.

Simulated storage: the StorageClass ``standard`` (default class,
WaitForFirstConsumer like the EBS classes) names the provisioner
``fake.helix.test/hostpath``. A kwok Stage stands in for the EBS CSI driver's
external-provisioner: for every PVC that the real PV controller hands to that
provisioner (or to ``ebs.csi.aws.com``), it creates a matching hostPath PV
pre-bound to the claim; the real PV controller then binds it, and kwok deletes
such PVs once they are Released. Nothing is written to disk for those volumes.

Dependencies: the Python standard library, ``cryptography`` and the
``kubernetes`` client.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LocalControlPlane", "ControlPlaneError", "FAKE_PROVISIONER", "FAKE_NODE_ANNOTATION"]

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_CLUSTER_IP = "10.96.0.1"  # first address of SERVICE_CIDR: the 'kubernetes' Service
POD_CIDR = "10.244.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
FAKE_PROVISIONER = "fake.helix.test/hostpath"
# Provisioners whose claims the kwok volume stage fulfils.
SIMULATED_PROVISIONERS = (FAKE_PROVISIONER, "ebs.csi.aws.com")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ControlPlaneError(RuntimeError):
    """The control plane did not come up (message includes the relevant log tail)."""


# --------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _PKI:
    """A throw-away CA and the certificates signed by it (ECDSA P-256)."""

    def __init__(self, cn: str = "helix-test-ca"):
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(hours=1))
            .not_valid_after(self.now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )

    def issue(self, cn: str, orgs=(), *, server: bool = False, client: bool = False, dns=(), ips=()):
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(hours=1))
            .not_valid_after(self.now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
        )
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(self.ca_key, hashes.SHA256())


# --------------------------------------------------------------------------
# kwok stages
# --------------------------------------------------------------------------
# Node and pod stages are copied from kwok v0.8.0 (kustomize/stage/node/fast,
# node/heartbeat-with-lease, pod/fast; Apache-2.0). The volume stages are
# adapted from kustomize/stage/volume/fast: they select claims by the
# provisioner the real PV controller assigned, not by a fixed class name.

_KWOK_NODE_STAGES = r"""
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type  | Quote}}
      {{ end }}

      {{ $hasInternalIP := false }}
      {{ $hasHostname := false }}
      {{ range .status.addresses }}
        {{ if eq .type "InternalIP" }}
          {{ $hasInternalIP = true }}
        {{ end }}
        {{ if eq .type "Hostname" }}
          {{ $hasHostname = true }}
        {{ end }}
      {{ end }}
      {{ if or (not $hasInternalIP) (not $hasHostname) }}
      addresses:
      {{ range .status.addresses }}
      - address: {{ .address | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
      {{ end }}
      {{ if not $hasInternalIP }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ end }}
      {{ if not $hasHostname }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}

      allocatable:
      {{ with .status.allocatable }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}
      capacity:
      {{ with .status.capacity }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}

      {{ $nodeInfo := .status.nodeInfo }}
      {{ $kwokVersion := printf "kwok-%s" Version }}
      nodeInfo:
        architecture: {{ or $nodeInfo.architecture "amd64" }}
        bootID: {{ or $nodeInfo.bootID `""` }}
        containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion }}
        kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion }}
        kubeProxyVersion: {{ or $nodeInfo.kubeProxyVersion $kwokVersion }}
        kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion }}
        machineID: {{ or $nodeInfo.machineID `""` }}
        operatingSystem: {{ or $nodeInfo.operatingSystem "linux" }}
        osImage: {{ or $nodeInfo.osImage `""` }}
        systemUUID: {{ or $nodeInfo.systemUUID `""` }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat-with-lease
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values:
      - 'True'
  delay:
    durationMilliseconds: 600000
    jitterDurationMilliseconds: 610000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}

      addresses:
      {{ with .status.addresses }}
      {{ YAML . 1 }}
      {{ else }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}
"""

_KWOK_POD_STAGES = r"""
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}

      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}

      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}

      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values:
      - 'Job'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $root := . }}
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      {{ $origin := index $root.status.containerStatuses $index }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Succeeded
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
"""  # noqa: E501 - verbatim from kwok


def _volume_stages(provisioners) -> str:
    plist = ", ".join(f"'{p}'" for p in provisioners)
    return r"""
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: helix-pvc-provision
spec:
  resourceRef:
    apiGroup: v1
    kind: PersistentVolumeClaim
  selector:
    matchExpressions:
    - cel:
        expression: >-
          has(self.metadata.annotations) &&
          'volume.kubernetes.io/storage-provisioner' in self.metadata.annotations &&
          self.metadata.annotations['volume.kubernetes.io/storage-provisioner'] in [PROVISIONERS]
    - cel:
        expression: >-
          !has(self.metadata.deletionTimestamp)
    - cel:
        expression: >-
          !has(self.spec.volumeName) || self.spec.volumeName == ''
  steps:
  - apply:
      template: |
        apiVersion: v1
        kind: PersistentVolume
        metadata:
          name: pvc-{{ .metadata.uid }}
          annotations:
            {{ $provisioner := index .metadata.annotations "volume.kubernetes.io/storage-provisioner" }}
            pv.kubernetes.io/provisioned-by: {{ $provisioner | Quote }}
        spec:
          accessModes:
          {{ YAML .spec.accessModes 2 }}
          capacity:
          {{ YAML .spec.resources.requests 2 }}
          persistentVolumeReclaimPolicy: Delete
          storageClassName: {{ .spec.storageClassName | Quote }}
          volumeMode: {{ default "Filesystem" .spec.volumeMode | Quote }}
          claimRef:
            apiVersion: v1
            kind: PersistentVolumeClaim
            name: {{ .metadata.name | Quote }}
            namespace: {{ .metadata.namespace | Quote }}
            uid: {{ .metadata.uid | Quote }}
          hostPath:
            path: /nonexistent/helix-fake-volumes/pvc-{{ .metadata.uid }}
          {{ with index .metadata.annotations "volume.kubernetes.io/selected-node" }}
          nodeAffinity:
            required:
              nodeSelectorTerms:
              - matchExpressions:
                - key: kubernetes.io/hostname
                  operator: In
                  values:
                  - {{ . | Quote }}
          {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: helix-pv-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: PersistentVolume
  selector:
    matchExpressions:
    - cel:
        expression: >-
          has(self.metadata.annotations) &&
          'pv.kubernetes.io/provisioned-by' in self.metadata.annotations &&
          self.metadata.annotations['pv.kubernetes.io/provisioned-by'] in [PROVISIONERS]
    - cel:
        expression: >-
          !has(self.metadata.deletionTimestamp)
    - cel:
        expression: >-
          self.spec.persistentVolumeReclaimPolicy == 'Delete'
    - cel:
        expression: >-
          has(self.status.phase) && self.status.phase == 'Released'
  steps:
  - delete: true
""".replace("PROVISIONERS", plist)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


_TAKEN_PORTS: set[int] = set()


def _free_port() -> int:
    """A free loopback port *outside* the kernel's ephemeral range.

    A port from bind(0) lies in the ephemeral range, which the kernel also
    hands out as the local port of outgoing connections (the components talk
    to each other constantly), so it can be taken again before the component
    binds it ("bind: address already in use" was observed). Ports below the
    range do not have that problem; they are still checked by binding.
    """
    lo, hi = _ephemeral_range()
    if lo > 11000:
        start, end = 10000, lo - 1
    elif hi < 64535:
        start, end = hi + 1, 65535
    else:
        raise ControlPlaneError(f"no room for ports outside the ephemeral range {lo}-{hi}")
    rng = random.SystemRandom()
    for _attempt in range(200):
        port = rng.randint(start, end)
        if port in _TAKEN_PORTS:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _TAKEN_PORTS.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # fall back to the kernel
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


try:  # resolved here, not in the forked child (no imports/locks between fork and exec)
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover
    _PRCTL = None


def _set_pdeathsig():  # runs in the child between fork and exec
    # PR_SET_PDEATHSIG: the component gets SIGTERM if the Python process dies
    # without calling stop() (e.g. pytest killed with SIGKILL).
    _PRCTL(1, signal.SIGTERM)


def _import_kubernetes_client():
    try:
        import kubernetes.client
        import kubernetes.config  # noqa: F401

        # kubernetes.client loads its API classes lazily; core_v1_api alone is
        # a 4.5 MB module (about 1.5 s of CPU to load).
        kubernetes.client.CoreV1Api, kubernetes.client.StorageV1Api  # noqa: B018
    except Exception:  # pragma: no cover - the real import later reports it
        pass


_LIVE = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit():  # pragma: no cover - safety net
    for cp in list(_LIVE):
        with contextlib.suppress(Exception):
            cp.stop()


class LocalControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on loopback.

    >>> with LocalControlPlane("/tmp/cp", "~/.cache/helix/kubernetes/v1.34.4/bin") as cp:
    ...     print(cp.api_url, cp.kubeconfig)
    """

    def __init__(
        self,
        workdir,
        bin_dir,
        *,
        nodes: int = 3,
        node_prefix: str = "kwok-node",
        storage_class: str | None = "standard",
        startup_timeout: float = 180.0,
        extra_apiserver_args=(),
        simulated_provisioners=SIMULATED_PROVISIONERS,
    ):
        self.workdir = Path(workdir).resolve()
        self.bin_dir = Path(os.path.expanduser(str(bin_dir))).resolve()
        self.node_count = nodes
        self.node_prefix = node_prefix
        self.storage_class = storage_class
        self.startup_timeout = startup_timeout
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.simulated_provisioners = tuple(simulated_provisioners)
        self.kubeconfig = str(self.workdir / "admin.kubeconfig")
        self.api_url: str | None = None
        self.version: str | None = None  # gitVersion reported by the API server
        self.node_names = [f"{node_prefix}-{i}" for i in range(nodes)]
        self.startup_seconds: float | None = None
        # seconds since start() at which each phase finished
        self.timings: dict[str, float] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Path] = {}
        self._ports: dict[str, int] = {}
        self._spawners: dict[str, object] = {}  # name -> callable that (re)spawns it
        self._restarts: dict[str, int] = {}

    # ------------------------------------------------------------------ api
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def api_client(self):
        """A kubernetes.client.ApiClient authenticated as cluster admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)

    def log_path(self, component: str) -> Path:
        return self.workdir / f"{component}.log"

    def start(self):
        if self._procs:
            raise ControlPlaneError("already started")
        for name in COMPONENTS:
            if not (self.bin_dir / name).is_file():
                raise ControlPlaneError(f"missing binary {self.bin_dir / name}; build it with tests/kube/build.sh")
        t0 = time.monotonic()
        self.deadline = t0 + self.startup_timeout
        # Importing the kubernetes client takes seconds; do it while etcd and
        # kube-apiserver start (it is first needed after /readyz).
        importer = threading.Thread(target=_import_kubernetes_client, daemon=True)
        importer.start()
        self.workdir.mkdir(parents=True, exist_ok=True)
        _LIVE.add(self)
        try:
            for phase, step in (
                ("pki", self._write_pki),
                ("etcd", self._start_etcd),
                ("kube-apiserver", self._start_apiserver),
                ("controllers-started", self._start_controllers),
                ("nodes-created", self._bootstrap_objects),
                ("ready", self._wait_ready),
            ):
                step()
                self.timings[phase] = round(time.monotonic() - t0, 2)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 15.0):
        """Terminate all processes (reverse start order): SIGTERM, then SIGKILL."""
        procs = list(self._procs.items())[::-1]
        for _name, p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        for _name, p in procs:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self._procs.clear()
        _LIVE.discard(self)

    # ------------------------------------------------------------ internals
    def _spawn(self, name: str, args, env=None):
        log = self.log_path(name)
        self._logs[name] = log
        with open(log, "ab") as fh:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            fh.write(f"\n=== {stamp} {' '.join(map(str, args))}\n".encode())
            fh.flush()
            proc = subprocess.Popen(
                [str(a) for a in args],
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
                preexec_fn=_set_pdeathsig if _PRCTL is not None else None,
            )
        self._procs[name] = proc
        return proc

    def _check_alive(self):
        for name, p in list(self._procs.items()):
            if p.poll() is not None:
                # Lost a race for its port: start it again on other ports.
                last_run = _tail(self._logs[name], 400).rsplit("\n=== ", 1)[-1]
                if "address already in use" in last_run and name in self._spawners and self._restarts.get(name, 0) < 3:
                    self._restarts[name] = self._restarts.get(name, 0) + 1
                    self._spawners[name]()
                    continue
                raise ControlPlaneError(
                    f"{name} exited with code {p.returncode}; last lines of {self._logs[name]}:\n"
                    + _tail(self._logs[name])
                )

    def _wait(self, what: str, predicate, interval: float = 0.2):
        last_err = None
        while True:
            self._check_alive()
            try:
                if predicate():
                    return
            except Exception as e:  # noqa: BLE001 - keep polling until the deadline
                last_err = e
            if time.monotonic() > self.deadline:
                logs = "\n".join(f"--- {n} ---\n{_tail(p, 15)}" for n, p in self._logs.items())
                raise ControlPlaneError(
                    f"timed out after {self.startup_timeout:.0f}s waiting for {what} (last error: {last_err!r})\n{logs}"
                )
            time.sleep(interval)

    def _write_pki(self):
        d = self.workdir / "pki"
        d.mkdir(exist_ok=True)
        pki = _PKI()
        self._pki = pki
        (d / "ca.crt").write_bytes(_pem_cert(pki.ca_cert))
        (d / "ca.key").write_bytes(_pem_key(pki.ca_key))
        (d / "ca.key").chmod(0o600)

        def save(name, key, cert):
            (d / f"{name}.crt").write_bytes(_pem_cert(cert))
            (d / f"{name}.key").write_bytes(_pem_key(key))
            (d / f"{name}.key").chmod(0o600)
            return key, cert

        save(
            "apiserver",
            *pki.issue(
                "kube-apiserver",
                server=True,
                dns=[
                    "localhost",
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                ],
                ips=["127.0.0.1", SERVICE_CLUSTER_IP],
            ),
        )
        self._clients = {
            "admin": save("admin", *pki.issue("kubernetes-admin", ["system:masters"], client=True)),
            "kube-controller-manager": save(
                "kube-controller-manager", *pki.issue("system:kube-controller-manager", client=True)
            ),
            "kube-scheduler": save("kube-scheduler", *pki.issue("system:kube-scheduler", client=True)),
            "kwok": save("kwok", *pki.issue("kwok-controller", ["system:masters"], client=True)),
        }
        # Front proxy (aggregation layer) CA and client, as kubeadm sets up;
        # without them every component logs "missing content for CA bundle
        # client-ca::kube-system::extension-apiserver-authentication::requestheader-client-ca-file".
        fp = _PKI("helix-test-front-proxy-ca")
        (d / "front-proxy-ca.crt").write_bytes(_pem_cert(fp.ca_cert))
        save("front-proxy-client", *fp.issue("front-proxy-client", client=True))
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (d / "sa.key").write_bytes(
            sa_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
        (d / "sa.key").chmod(0o600)
        (d / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.pki_dir = d

    def _write_kubeconfig(self, path: Path, user: str):
        key, cert = self._clients[user]
        # JSON is valid YAML; every kubeconfig reader accepts it.
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "helix-test",
                    "cluster": {
                        "server": self.api_url,
                        "certificate-authority-data": _b64(_pem_cert(self._pki.ca_cert)),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": _b64(_pem_cert(cert)),
                        "client-key-data": _b64(_pem_key(key)),
                    },
                }
            ],
            "contexts": [{"name": f"{user}@helix-test", "context": {"cluster": "helix-test", "user": user}}],
            "current-context": f"{user}@helix-test",
            "preferences": {},
        }
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        path.chmod(0o600)

    def _https_get(self, url: str, *, verify_ca: bool = True, timeout: float = 3.0):
        if verify_ca:
            ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
            ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        else:  # kube-controller-manager/-scheduler serve a self-signed cert
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")

    def _start_etcd(self):
        self._spawners["etcd"] = self._spawn_etcd
        self._spawn_etcd()

        def healthy():
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"

        self._wait("etcd /health", healthy)

    def _spawn_etcd(self):
        client, peer = _free_port(), _free_port()
        self._ports["etcd"] = client
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        attempt = self._restarts.get("etcd", 0)
        self._spawn(
            "etcd",
            [
                self.bin_dir / "etcd",
                "--name=helix-test",
                f"--data-dir={self.workdir / ('etcd-data' if not attempt else f'etcd-data-{attempt}')}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=helix-test={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # throw-away data: no fsync makes tests faster
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self):
        self._spawners["kube-apiserver"] = self._spawn_apiserver
        self._spawn_apiserver()
        self._wait("kube-apiserver /readyz", lambda: self._https_get(self.api_url + "/readyz")[0] == 200)
        self._write_kubeconfig(Path(self.kubeconfig), "admin")

    def _spawn_apiserver(self):
        port = _free_port()
        self._ports["kube-apiserver"] = port
        self.api_url = f"https://127.0.0.1:{port}"
        p = self.pki_dir
        self._spawn(
            "kube-apiserver",
            [
                self.bin_dir / "kube-apiserver",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--etcd-servers={self.etcd_url}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # The 'kubernetes' Service would get 127.0.0.1 as endpoint, which
                # Endpoints validation rejects (loopback); nothing here needs it.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                *self.extra_apiserver_args,
            ],
        )

    def _start_controllers(self):
        p = self.pki_dir
        kcm_kc = self.workdir / "kube-controller-manager.kubeconfig"
        sched_kc = self.workdir / "kube-scheduler.kubeconfig"
        kwok_kc = self.workdir / "kwok.kubeconfig"
        self._write_kubeconfig(kcm_kc, "kube-controller-manager")
        self._write_kubeconfig(sched_kc, "kube-scheduler")
        self._write_kubeconfig(kwok_kc, "kwok")

        def spawn_kcm():
            kcm_port = self._ports["kube-controller-manager"] = _free_port()
            self._spawn(
                "kube-controller-manager",
                [
                    self.bin_dir / "kube-controller-manager",
                    f"--kubeconfig={kcm_kc}",
                    f"--authentication-kubeconfig={kcm_kc}",
                    f"--authorization-kubeconfig={kcm_kc}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={kcm_port}",
                    "--leader-elect=false",
                    "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={p / 'sa.key'}",
                    f"--root-ca-file={p / 'ca.crt'}",
                    f"--cluster-signing-cert-file={p / 'ca.crt'}",
                    f"--cluster-signing-key-file={p / 'ca.key'}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    # default controller set: deployment, replicaset, statefulset,
                    # namespace, garbage collector, HPA, PV binder/protection, ...
                    "--controllers=*",
                ],
            )

        def spawn_scheduler():
            sched_port = self._ports["kube-scheduler"] = _free_port()
            self._spawn(
                "kube-scheduler",
                [
                    self.bin_dir / "kube-scheduler",
                    f"--kubeconfig={sched_kc}",
                    f"--authentication-kubeconfig={sched_kc}",
                    f"--authorization-kubeconfig={sched_kc}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={sched_port}",
                    "--leader-elect=false",
                ],
            )

        self._spawners["kube-controller-manager"] = spawn_kcm
        self._spawners["kube-scheduler"] = spawn_scheduler
        spawn_kcm()
        spawn_scheduler()

        kwok_cfg = self.workdir / "kwok.yaml"
        # Stages only: a KwokConfiguration document loaded from a file is not
        # defaulted by kwok v0.8.0 ("node leases parallelism must be greater
        # than 0"), so options are passed as flags instead.
        kwok_cfg.write_text(
            _KWOK_NODE_STAGES + "---" + _KWOK_POD_STAGES + "---" + _volume_stages(self.simulated_provisioners)
        )
        env = dict(os.environ)
        env["HOME"] = str(self.workdir)  # kwok also reads ~/.kwok/kwok.yaml; keep it isolated
        key, value = FAKE_NODE_ANNOTATION
        self._spawn(
            "kwok",
            [
                self.bin_dir / "kwok",
                f"--config={kwok_cfg}",
                f"--kubeconfig={kwok_kc}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={key}={value}",
                f"--cidr={POD_CIDR}",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
            ],
            env=env,
        )

    def _bootstrap_objects(self):
        from kubernetes import client

        api = self.api_client()
        try:
            core = client.CoreV1Api(api)
            # Fake nodes report the control plane's version as kubelet version
            # (kwok keeps a nodeInfo it finds instead of writing "kwok-v0.8.0").
            self.version = client.VersionApi(api).get_code().git_version
            key, value = FAKE_NODE_ANNOTATION
            zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
            for i, name in enumerate(self.node_names):
                core.create_node(
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "metadata": {
                            "name": name,
                            "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                            "labels": {
                                "kubernetes.io/hostname": name,
                                "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64",
                                "node.kubernetes.io/instance-type": "m5.large",
                                "topology.kubernetes.io/region": "us-east-1",
                                "topology.kubernetes.io/zone": zones[i % len(zones)],
                                "type": "kwok",
                            },
                        },
                        "status": {
                            "allocatable": {
                                "cpu": "32",
                                "memory": "256Gi",
                                "pods": "110",
                                "ephemeral-storage": "100Gi",
                            },
                            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"},
                            "nodeInfo": {
                                "kubeletVersion": self.version,
                                "kubeProxyVersion": self.version,
                                "containerRuntimeVersion": "kwok://fake",
                                "osImage": "kwok fake node",
                                "operatingSystem": "linux",
                                "architecture": "amd64",
                                "kernelVersion": "",
                                "bootID": "",
                                "machineID": "",
                                "systemUUID": "",
                            },
                        },
                    }
                )
            if self.storage_class:
                client.StorageV1Api(api).create_storage_class(
                    {
                        "apiVersion": "storage.k8s.io/v1",
                        "kind": "StorageClass",
                        "metadata": {
                            "name": self.storage_class,
                            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                        },
                        "provisioner": FAKE_PROVISIONER,
                        "reclaimPolicy": "Delete",
                        "volumeBindingMode": "WaitForFirstConsumer",
                        "allowVolumeExpansion": True,
                    }
                )
        finally:
            api.close()

    def _wait_ready(self):
        from kubernetes import client

        for name in ("kube-controller-manager", "kube-scheduler"):
            # the port is looked up on every poll: a restart may have changed it
            self._wait(
                f"{name} /healthz",
                lambda name=name: (
                    self._https_get(f"https://127.0.0.1:{self._ports[name]}/healthz", verify_ca=False)[0] == 200
                ),
            )

        api = self.api_client()
        try:
            core = client.CoreV1Api(api)

            def nodes_ready():
                ready = 0
                for n in core.list_node().items:
                    if n.metadata.name not in self.node_names:
                        continue
                    conds = {c.type: c.status for c in (n.status.conditions or [])}
                    taints = {t.key for t in (n.spec.taints or [])}
                    if conds.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints:
                        ready += 1
                return ready == len(self.node_names)

            self._wait(f"{len(self.node_names)} kwok nodes Ready (and untainted)", nodes_ready)
            # The service-account controller of kube-controller-manager is running:
            self._wait(
                "ServiceAccount default/default",
                lambda: core.read_namespaced_service_account("default", "default") is not None,
            )
            self._wait("/readyz after bootstrap", lambda: self._https_get(self.api_url + "/readyz")[0] == 200)
        finally:
            api.close()


def main(argv=None):
    """Run a control plane until Ctrl-C: python -m tests.kube.controlplane WORKDIR BIN_DIR"""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("workdir")
    ap.add_argument("bin_dir")
    ap.add_argument("--nodes", type=int, default=3)
    args = ap.parse_args(argv)
    cp = LocalControlPlane(args.workdir, args.bin_dir, nodes=args.nodes)
    cp.start()
    print(f"ready in {cp.startup_seconds:.1f}s {cp.timings}: KUBECONFIG={cp.kubeconfig} ({cp.api_url})", flush=True)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cp.stop()


if __name__ == "__main__":
    main()
