"""Nothing secret or local in the collection artifact (galaxy.yml build_ignore).

A copy of the checkout (tracked and not ignored files) gets what a demo run, the tests and an old
checkout could leave behind - an OpenSSH private key and a kubeconfig in an inventory, caches,
virtualenvs - and is built with ansible-galaxy as a release would be. No member of the artifact may
hold private key material or a kubeconfig, or sit below a cache, virtualenv, .ssh or .kube directory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.conftest import ROOT

PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
KUBECONFIG_KIND = re.compile(rb"^kind:\s*[\"']?Config[\"']?\s*$", re.M)
KUBECONFIG_CLUSTERS = re.compile(rb"^clusters:", re.M)
LOCAL_DIRS = {".cache", ".ssh", ".kube", ".ansible", ".collections", ".pytest_cache", ".ruff_cache", "__pycache__"}

# Dumped rather than written out, so that this file is not a kubeconfig to the check itself.
KUBECONFIG = yaml.safe_dump(
    {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "demo", "cluster": {"server": "https://203.0.113.10:6443"}}],
        "users": [{"name": "admin", "user": {"client-key-data": "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo="}}],
        "contexts": [{"name": "admin@demo", "context": {"cluster": "demo", "user": "admin"}}],
        "current-context": "admin@demo",
    },
    sort_keys=False,
)


def openssh_key():
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )


def pem_key():
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def leftovers():
    """What a demo run, the tests, the tools and older checkouts leave in a checkout, by path."""
    return {
        # An older checkout's state in the inventory (state_dir now defaults to ~/.local/state/helix).
        "inventories/local/.ssh/id_ed25519": openssh_key(),
        "inventories/local/.ssh/id_ed25519.pub": b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA demo\n",
        "inventories/local/.kube/config": KUBECONFIG.encode(),
        "inventories/aws/.kube/kubeconfig": KUBECONFIG.encode(),
        "inventories/aws/kubeconfig": KUBECONFIG.encode(),
        ".ssh/id_rsa": pem_key(),
        ".kube/config": KUBECONFIG.encode(),
        # The local endpoint's key and certificate, the importer's work, other caches.
        ".cache/moto/key.pem": pem_key(),
        ".cache/moto/cert.pem": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ".cache/galaxy-importer/build/helix-kubeadm_aws-0.1.0.tar.gz": b"\x1f\x8b",
        "demo_app/api/.cache/pip/selfcheck.json": b"{}",
        # Virtualenvs: the project's, a second one, one inside a component.
        ".venv/pyvenv.cfg": b"home = /usr/bin\n",
        ".venv/lib/python3.11/site-packages/botocore/data/endpoints.json": b"{}",
        ".venv-bench/pyvenv.cfg": b"home = /usr/bin\n",
        "demo_app/api/.venv/pyvenv.cfg": b"home = /usr/bin\n",
        "venv/pyvenv.cfg": b"home = /usr/bin\n",
        # ansible-compat's cache with Molecule's ephemeral state, and its copy of a key.
        ".ansible/tmp/molecule.a1b2.bootstrap/state.yml": b"converged: true\n",
        ".ansible/tmp/molecule.a1b2.bootstrap/id_ed25519": openssh_key(),
        ".ansible/collections/ansible_collections/helix/kubeadm_aws/galaxy.yml": b"namespace: helix\n",
        ".pytest_cache/v/cache/lastfailed": b"{}",
        ".ruff_cache/0.6.0/1234": b"",
        "plugins/modules/__pycache__/node_group.cpython-311.pyc": b"\x00",
        "tests/output/junit.xml": b"<testsuites/>",
        ".moto-5055.log": b"127.0.0.1 - - PUT /demo-bucket\n",
        ".moto-5055.pid": b"4242\n",
        "bench/results/run-100.log": b"RunInstances\n",
        "helix-kubeadm_aws-0.0.9.tar.gz": b"\x1f\x8b",
        "demo_app/ui/node_modules.tar.gz": b"\x1f\x8b",
    }


def checkout_copy(destination):
    """The files git would give a clone of the checkout as it is now: tracked and not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build(source, output):
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-galaxy")), "collection", "build", "--output-path", str(output)]
        + [str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (artifact,) = output.glob("*.tar.gz")
    return artifact


def problems(artifact):
    found = []
    with tarfile.open(artifact) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            local = [part for part in parts if part in LOCAL_DIRS or part.startswith(".venv") or part == "venv"]
            if local:
                found.append(f"{member.name}: below {local[0]}")
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            if PRIVATE_KEY.search(data):
                found.append(f"{member.name}: private key")
            if KUBECONFIG_KIND.search(data) and KUBECONFIG_CLUSTERS.search(data):
                found.append(f"{member.name}: kubeconfig")
    return found


@pytest.fixture(scope="module")
def littered_artifact(tmp_path_factory):
    checkout = tmp_path_factory.mktemp("checkout")
    checkout_copy(checkout)
    for name, content in leftovers().items():
        path = checkout / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    # make setup's link that makes the checkout importable as the collection.
    link = checkout / ".collections/ansible_collections/helix/kubeadm_aws"
    link.parent.mkdir(parents=True)
    link.symlink_to("../../..")
    return build(checkout, tmp_path_factory.mktemp("artifact"))


def test_the_planted_files_would_be_caught():
    """The checks themselves: every planted secret is recognised as one."""
    secrets = [name for name, content in leftovers().items() if PRIVATE_KEY.search(content)]
    kubeconfigs = [name for name, content in leftovers().items() if KUBECONFIG_KIND.search(content)]
    assert "inventories/local/.ssh/id_ed25519" in secrets
    assert ".cache/moto/key.pem" in secrets
    assert "inventories/local/.kube/config" in kubeconfigs


def test_artifact_of_a_littered_checkout_holds_nothing_secret_or_local(littered_artifact):
    found = problems(littered_artifact)
    assert not found, "\n".join(found)


def test_artifact_of_a_littered_checkout_still_holds_the_collection(littered_artifact):
    with tarfile.open(littered_artifact) as tar:
        names = set(tar.getnames())
    planted = {name for name in leftovers() if name in names}
    assert planted == set()
    for expected in (
        "MANIFEST.json",
        "LICENSE",
        "README.md",
        "meta/runtime.yml",
        "plugins/modules/node_group.py",
        "roles/preflight/README.md",
        "roles/preflight/meta/argument_specs.yml",
        "inventories/local/hosts.yml",
        "playbooks/layers/cluster/create.yml",
    ):
        assert expected in names


def test_artifact_of_this_checkout_holds_nothing_secret_or_local(tmp_path):
    """The checkout as it is, with whatever its runs left in it."""
    found = problems(build(ROOT, tmp_path))
    assert not found, "\n".join(found)
