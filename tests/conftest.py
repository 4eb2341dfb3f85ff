"""Make the checkout importable as ansible_collections.helix.kubeadm_aws (see `make setup`)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".collections"
if not (COLLECTIONS / "ansible_collections/helix/kubeadm_aws").exists():
    raise SystemExit("run `make setup` first: the collection link under .collections/ is missing")
sys.path.insert(0, str(COLLECTIONS))

# The real Kubernetes control plane (kube-apiserver, etcd, kwok) for tests that need one; a fake kubeadm.
pytest_plugins = ["tests.kube.fixtures", "tests.fake_kubeadm"]
