"""plugins/module_utils/k8s.py without a cluster: argument spec, error messages, kubeconfig errors."""

from __future__ import annotations

import json

import pytest
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from kubernetes.client.exceptions import ApiException

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import k8s


def test_each_module_gets_its_own_copy_of_kubernetes_cores_auth_options():
    spec = k8s.k8s_argument_spec()
    spec["kubeconfig"]["required"] = True
    assert "required" not in k8s.k8s_argument_spec()["kubeconfig"]
    assert sorted(k8s.k8s_argument_spec()) == sorted(AUTH_ARG_SPEC)


def test_one_validate_certs_verifies_both_apis_by_default():
    assert k8s.k8s_argument_spec()["validate_certs"]["default"] is True
    assert "default" not in AUTH_ARG_SPEC["validate_certs"]


def test_error_message_is_the_servers_message_without_the_body():
    error = ApiException(status=422, reason="Unprocessable Entity")
    error.body = json.dumps({"kind": "Status", "message": 'Secret "x" is invalid: type: field is immutable'})
    assert k8s.error_message(error) == '422 Secret "x" is invalid: type: field is immutable'


def test_error_message_falls_back_to_the_reason_and_to_the_text():
    error = ApiException(status=503, reason="Service Unavailable")
    error.body = "<html>not json</html>"
    assert k8s.error_message(error) == "503 Service Unavailable"
    assert k8s.error_message(ValueError("no kubeconfig")) == "no kubeconfig"


def test_a_missing_kubeconfig_is_a_k8s_error(tmp_path):
    with pytest.raises(k8s.K8S_ERRORS):
        k8s.KubeClient({"kubeconfig": str(tmp_path / "missing.conf")})


def test_an_unknown_context_is_a_k8s_error(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "known", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "known",
            }
        )
    )
    with pytest.raises(k8s.K8S_ERRORS, match="unknown"):
        k8s.KubeClient({"kubeconfig": str(kubeconfig), "context": "unknown"})
