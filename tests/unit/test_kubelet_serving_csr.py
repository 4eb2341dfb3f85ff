"""helix.kubeadm_aws.kubelet_serving_csr: which kubelet serving requests it approves, and which it never does.

The requests are real PKCS#10 requests made with cryptography, as a kubelet makes them; the API is a
small fake that records approvals (the module against a live cluster: docs/addons.md).
"""

from __future__ import annotations

import base64
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ansible_collections.helix.kubeadm_aws.plugins.modules import kubelet_serving_csr as mod

NODE_NAME = "ip-10-91-0-10.ec2.internal"
NODE = {
    "metadata": {"name": NODE_NAME},
    "status": {
        "addresses": [
            {"type": "InternalIP", "address": "10.91.0.10"},
            {"type": "Hostname", "address": NODE_NAME},
        ]
    },
}
USAGES = ("digital signature", "server auth")


def pem_request(cn=f"system:node:{NODE_NAME}", org="system:nodes", dns=(NODE_NAME,), ips=("10.91.0.10",)):
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)


def csr(
    name="csr-1",
    username=f"system:node:{NODE_NAME}",
    groups=("system:nodes", "system:authenticated"),
    usages=USAGES,
    signer=mod.SIGNER,
    status=None,
    **request,
):
    return {
        "metadata": {"name": name},
        "spec": {
            "signerName": signer,
            "username": username,
            "groups": list(groups),
            "usages": list(usages),
            "request": base64.b64encode(pem_request(**request)).decode(),
        },
        "status": status or {},
    }


def review(request):
    names, ips = mod.node_names_and_ips(NODE)
    return mod.refusal(request, NODE_NAME, names, ips)


def test_the_nodes_own_request_is_approved():
    assert review(csr()) is None


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (csr(groups=["system:authenticated"]), "not in the group system:nodes"),
        (csr(usages=["digital signature", "client auth"]), "usages"),
        (csr(usages=["server auth", "cert sign"]), "usages"),
        (csr(cn="system:node:other"), "subject"),
        (csr(org="system:masters"), "subject"),
        (csr(dns=("kubernetes.default.svc",)), "DNS name kubernetes.default.svc"),
        (csr(ips=("10.91.0.99",)), "IP address 10.91.0.99"),
        (csr(dns=(), ips=()), "names no DNS name"),
    ],
)
def test_anything_else_is_refused_with_the_reason(request_, reason):
    assert reason in review(request_)


def test_only_the_nodes_kubelet_serving_requests_are_considered():
    assert mod.asks_for_node(csr(), NODE_NAME)
    assert not mod.asks_for_node(csr(username="system:node:ip-10-91-0-11.ec2.internal"), NODE_NAME)
    assert not mod.asks_for_node(csr(signer="kubernetes.io/kube-apiserver-client-kubelet"), NODE_NAME)


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.check_mode = check_mode
        self.params = {"node_name": NODE_NAME, "wait": False, "wait_timeout": 5, **params}

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)


class FakeKube:
    def __init__(self, requests):
        self.requests = requests
        self.approved = []

    def get(self, api_version, kind, name, namespace=None):
        return NODE if name == NODE_NAME else None

    def resource(self, api_version, kind):
        kube = self

        class Approval:
            def replace(self, body, name):
                kube.approved.append(name)
                for r in kube.requests:
                    if r["metadata"]["name"] == name:
                        r["status"] = {**body["status"], "certificate": "Y2VydA=="}

        class Listing:
            approval = Approval()

            def get(self):
                return type("List", (), {"to_dict": lambda _self: {"items": kube.requests}})()

        return Listing()


def test_converge_approves_the_pending_own_request_leaves_others_and_waits_for_the_certificate():
    approved_before = csr("csr-old", status={"conditions": [{"type": "Approved", "status": "True"}]})
    forged = csr("csr-forged", ips=("10.91.0.99",))
    other_node = csr("csr-other", username="system:node:ip-10-91-0-11.ec2.internal")
    kube = FakeKube([approved_before, forged, other_node, csr("csr-own")])
    result = mod.converge(FakeModule(wait=True), kube)
    assert kube.approved == ["csr-own"]
    assert result["changed"] and result["approved"] == ["csr-own"] and result["issued"]
    assert [r["name"] for r in result["refused"]] == ["csr-forged"]


def test_converge_changes_nothing_when_nothing_is_pending_and_approves_nothing_in_check_mode():
    kube = FakeKube([csr("csr-done", status={"conditions": [{"type": "Approved", "status": "True"}]})])
    assert mod.converge(FakeModule(), kube)["changed"] is False
    kube = FakeKube([csr("csr-own")])
    result = mod.converge(FakeModule(check_mode=True, wait=True), kube)
    assert result["changed"] and result["approved"] == ["csr-own"] and kube.approved == []
