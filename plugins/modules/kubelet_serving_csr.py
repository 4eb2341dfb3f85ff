#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: kubelet_serving_csr
short_description: Approve one node's kubelet serving certificate requests, and only those
version_added: 0.2.0
description:
  - A kubelet with C(serverTLSBootstrap) asks the cluster for its serving certificate with a
    CertificateSigningRequest of the signer C(kubernetes.io/kubelet-serving); nothing in kubeadm approves it,
    and until one is approved the kubelet has no serving certificate (C(kubectl logs), C(exec) and
    metrics-server fail against it).
  - Approves the pending requests of node O(node_name), each only when it is what that node's kubelet asks for
    - requested by C(system:node:<node_name>) in the group C(system:nodes); subject C(CN=system:node:<node_name>),
    C(O=system:nodes); usages within C(digital signature), C(key encipherment), C(server auth); every DNS name
    and IP address in the request among the Node's own name and C(status.addresses). Any other request is
    left pending and named in RV(refused), never approved.
  - With O(wait), waits until the node has asked, then until the signer has issued the approved certificate.
author:
  - Helix platform engineering (@helix)
options:
  node_name:
    description: Name of the Node whose requests are approved. The Node must exist.
    type: str
    required: true
  wait:
    description:
      - Wait until a pending request of the node exists (a kubelet asks within seconds of starting),
        approve it, and wait until its certificate is issued.
      - Without it, approve what is pending now, if anything (a kubelet renewing its certificate).
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait with O(wait).
    type: int
    default: 120
  validate_certs:
    description:
      - Whether to verify the API server's certificate. Verified unless told not to.
      - Can also be specified via the E(K8S_AUTH_VERIFY_SSL) environment variable.
    type: bool
    default: true
    aliases: [verify_ssl]
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
requirements:
  - kubernetes >= 24.2.0
  - cryptography
attributes:
  check_mode:
    support: full
    description: Reports the requests it would approve; approves nothing and does not wait.
  diff_mode:
    support: none
    description: Approvals are reported in RV(approved), not as a diff.
"""

EXAMPLES = r"""
- name: Approve the serving certificate of a node that just joined, and wait until it is issued
  helix.kubeadm_aws.kubelet_serving_csr:
    kubeconfig: ~/.local/state/helix/demo/kubeconfig
    node_name: ip-10-42-0-10.ec2.internal
    wait: true

- name: Approve a pending renewal, if any
  helix.kubeadm_aws.kubelet_serving_csr:
    node_name: ip-10-42-16-5.ec2.internal
"""

RETURN = r"""
approved:
  description: Names of the requests approved by this run (in check mode, that it would approve).
  returned: always
  type: list
  elements: str
  sample: [csr-7xk2p]
refused:
  description: Pending kubelet-serving requests that name the node but were not approved, with why.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the request.
      type: str
    reason:
      description: What does not match the node.
      type: str
      sample: "IP address 10.0.0.99 is not one of the Node's addresses"
issued:
  description: Whether an approved request of the node has its certificate issued (with O(wait), true on success).
  returned: always
  type: bool
"""

import base64  # noqa: E402 - imports follow the documentation in Ansible modules
import time  # noqa: E402
import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.k8s import (  # noqa: E402
    KUBERNETES_IMPORT_ERROR,
    ApiException,
    ConfigException,
    CoreException,
    HTTPError,
    KubeClient,
    error_message,
    k8s_argument_spec,
)

try:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
except ImportError:
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

SIGNER = "kubernetes.io/kubelet-serving"
USAGES = {"digital signature", "key encipherment", "server auth"}
DNS_ADDRESS_TYPES = {"Hostname", "InternalDNS", "ExternalDNS"}
IP_ADDRESS_TYPES = {"InternalIP", "ExternalIP"}
POLL_SECONDS = 2


def node_names_and_ips(node):
    """The DNS names and IP addresses a node's serving certificate may carry."""
    addresses = node.get("status", {}).get("addresses") or []
    names = {node["metadata"]["name"]} | {a["address"] for a in addresses if a["type"] in DNS_ADDRESS_TYPES}
    ips = {a["address"] for a in addresses if a["type"] in IP_ADDRESS_TYPES}
    return names, ips


def is_pending(csr):
    conditions = (csr.get("status") or {}).get("conditions") or []
    return not any(c["type"] in ("Approved", "Denied", "Failed") for c in conditions)


def is_issued(csr):
    status = csr.get("status") or {}
    conditions = status.get("conditions") or []
    approved = any(c["type"] == "Approved" and c.get("status", "True") == "True" for c in conditions)
    return approved and bool(status.get("certificate"))


def asks_for_node(csr, node_name):
    spec = csr["spec"]
    return spec.get("signerName") == SIGNER and spec.get("username") == f"system:node:{node_name}"


def refusal(csr, node_name, names, ips):
    """Why a kubelet-serving request of the node must not be approved; None when it may."""
    spec = csr["spec"]
    if "system:nodes" not in (spec.get("groups") or []):
        return "the requester is not in the group system:nodes"
    usages = set(spec.get("usages") or [])
    if "server auth" not in usages or not usages <= USAGES:
        return f"usages {sorted(usages)} are not a serving certificate's"
    try:
        request = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
    except ValueError as e:
        return f"the request does not parse: {e}"
    common_names = [a.value for a in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    organizations = [a.value for a in request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if common_names != [f"system:node:{node_name}"] or organizations != ["system:nodes"]:
        return f"subject {request.subject.rfc4514_string()} is not CN=system:node:{node_name},O=system:nodes"
    try:
        sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the request names no DNS name or IP address"
    for general_name in sans:
        if isinstance(general_name, x509.DNSName):
            if general_name.value not in names:
                return f"DNS name {general_name.value} is not the Node's name or one of its addresses"
        elif isinstance(general_name, x509.IPAddress):
            if str(general_name.value) not in ips:
                return f"IP address {general_name.value} is not one of the Node's addresses"
        else:
            return f"{general_name} is neither a DNS name nor an IP address"
    return None


def approve(kube, csr):
    """Add the Approved condition through the approval subresource, as kubectl certificate approve does."""
    body = dict(csr)
    status = dict(body.get("status") or {})
    status["conditions"] = list(status.get("conditions") or []) + [
        {
            "type": "Approved",
            "status": "True",
            "reason": "HelixKubeletServing",
            "message": "The node's own serving certificate, approved by helix.kubeadm_aws.kubelet_serving_csr",
        }
    ]
    body["status"] = status
    kube.resource("certificates.k8s.io/v1", "CertificateSigningRequest").approval.replace(
        body=body, name=csr["metadata"]["name"]
    )


def node_requests(kube, node_name):
    items = kube.resource("certificates.k8s.io/v1", "CertificateSigningRequest").get().to_dict()["items"]
    return [csr for csr in items if asks_for_node(csr, node_name)]


def converge(module, kube):
    params = module.params
    node_name = params["node_name"]
    node = kube.get("v1", "Node", node_name)
    if node is None:
        module.fail_json(msg=f"kubelet_serving_csr: there is no Node {node_name}")
    names, ips = node_names_and_ips(node)
    wait = params["wait"] and not module.check_mode
    deadline = time.monotonic() + params["wait_timeout"]
    approved, refused = [], {}
    while True:
        requests = node_requests(kube, node_name)
        for csr in requests:
            name = csr["metadata"]["name"]
            if not is_pending(csr) or name in approved:
                continue
            reason = refusal(csr, node_name, names, ips)
            if reason:
                refused[name] = reason
                continue
            if not module.check_mode:
                approve(kube, csr)
            approved.append(name)
        issued = any(is_issued(csr) for csr in requests)
        if not wait or issued:
            break
        if time.monotonic() > deadline:
            what = "approved, but the signer has not issued it" if approved else "no request of the node to approve"
            module.fail_json(
                msg=f"kubelet_serving_csr: {what} within {params['wait_timeout']} s (node {node_name})",
                approved=approved,
                refused=[dict(name=n, reason=r) for n, r in sorted(refused.items())],
            )
        time.sleep(POLL_SECONDS)
    return dict(
        changed=bool(approved),
        approved=approved,
        refused=[dict(name=n, reason=r) for n, r in sorted(refused.items())],
        issued=issued,
    )


def main():
    argument_spec = k8s_argument_spec()
    argument_spec.update(
        node_name=dict(type="str", required=True),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=120),
    )
    module = AnsibleModule(argument_spec, supports_check_mode=True)
    if KUBERNETES_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    if CRYPTOGRAPHY_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    try:
        kube = KubeClient(module.params)
    except (ApiException, ConfigException, CoreException, HTTPError) as e:
        module.fail_json(msg=f"kubelet_serving_csr: cannot load the kubeconfig: {error_message(e)}")
    try:
        result = converge(module, kube)
    except (ApiException, ConfigException, CoreException, HTTPError) as e:
        module.fail_json(msg=f"kubelet_serving_csr: Kubernetes API: {error_message(e)}")
    finally:
        kube.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
