"""The application role's manifests, rendered with its defaults, against the pinned Kubernetes schema.

Templates are rendered by Ansible's own templar with the role's defaults and vars plus the preflight
facts they read, exactly as the role's template lookups see them, and every object is validated
with kubernetes-validate in strict mode (unknown fields are errors).
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = Path(__file__).resolve().parents[2] / "roles" / "application"
KUBERNETES_SCHEMA = "1.34.0"  # the schema kubernetes-validate has for the pinned v1.34.4
PREFLIGHT_FACTS = {
    "cluster_name": "helix-demo",
    "cluster_account_id": "123456789012",
    "aws_region": "us-east-1",
    "lifecycle_action": "create",
}
# What tasks/images.yml finds in ECR for the tag (DescribeImages), which the manifests name.
DIGESTS = {tier: "sha256:" + (str(n) * 64) for n, tier in enumerate(("ui", "api", "db"), start=1)}
TEMPLATES = sorted(path.name for path in (ROLE / "templates").glob("*.yml.j2"))


def render(template, **overrides):
    """The objects of one template, rendered with the role's defaults, its vars and overrides."""
    loader = DataLoader()
    variables = dict(PREFLIGHT_FACTS)
    variables.update(loader.load_from_file(str(ROLE / "defaults/main.yml"), trusted_as_template=True))
    variables.update(loader.load_from_file(str(ROLE / "vars/main.yml"), trusted_as_template=True))
    variables["application_db_password"] = "not-a-real-password"  # set by the task that renders db-secret
    variables["application_image_digests"] = DIGESTS  # a fact of tasks/images.yml
    variables.update(overrides)
    templar = Templar(loader=loader, variables=variables)
    text = templar.template(trust_as_template((ROLE / "templates" / template).read_text()))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def objects(**overrides):
    return [obj for template in TEMPLATES for obj in render(template, **overrides)]


def test_the_role_has_the_templates_its_tasks_apply():
    assert TEMPLATES == ["api.yml.j2", "db-secret.yml.j2", "db.yml.j2", "namespace.yml.j2", "ui.yml.j2"]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="defaults"),
        pytest.param(
            {"application_ui_node_port": 30080, "application_db_storage_class": "gp3", "application_ui_replicas": 0},
            id="node-port-storage-class-no-ui",
        ),
        pytest.param({"application_pull_secret_enabled": True}, id="pull-secret"),
    ],
)
def test_every_manifest_is_valid_for_the_pinned_kubernetes_version(overrides):
    rendered = objects(**overrides)
    kinds = sorted(f"{obj['kind']}/{obj['metadata']['name']}" for obj in rendered)
    assert kinds == [
        "Deployment/api",
        "Deployment/ui",
        "HorizontalPodAutoscaler/api",
        "Namespace/demo",
        "Secret/db-credentials",
        "Service/api",
        "Service/db",
        "Service/ui",
        "StatefulSet/db",
    ]
    for obj in rendered:
        kubernetes_validate.validate(obj, KUBERNETES_SCHEMA, strict=True)


def workloads(**overrides):
    """{tier: its Deployment or StatefulSet}."""
    return {
        name: next(obj for obj in render(template, **overrides) if obj["kind"] in ("Deployment", "StatefulSet"))
        for template, name in [("ui.yml.j2", "ui"), ("api.yml.j2", "api"), ("db.yml.j2", "db")]
    }


def test_images_come_from_the_clusters_ecr_repositories_by_digest_with_the_tag_as_a_label():
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    for name, workload in workloads(application_image_tag="2.0.1").items():
        pod = workload["spec"]["template"]
        assert pod["spec"]["containers"][0]["image"] == f"{registry}/helix-demo/{name}@{DIGESTS[name]}"
        assert pod["metadata"]["labels"]["app.kubernetes.io/version"] == "2.0.1"


def test_pods_pull_with_the_kubelets_credential_provider_unless_the_pull_secret_is_on():
    for workload in workloads().values():
        assert "imagePullSecrets" not in workload["spec"]["template"]["spec"]
    for workload in workloads(application_pull_secret_enabled=True, application_pull_secret_name="pull").values():
        assert workload["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "pull"}]


def test_the_api_replicas_belong_to_the_autoscaler():
    deployment, _service, hpa = render("api.yml.j2", application_api_replicas=3, application_api_max_replicas=9)
    assert "replicas" not in deployment["spec"]  # a re-run must not undo the autoscaler's scaling
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)


def test_every_pod_meets_the_restricted_pod_security_standard_the_namespace_enforces():
    (namespace,) = render("namespace.yml.j2")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects():
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert {"readinessProbe", "livenessProbe"} <= container.keys()
            assert {"requests", "limits"} == container["resources"].keys()


def test_argument_specs_document_exactly_the_defaults():
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert sorted(specs) == sorted(defaults)
    for name, value in defaults.items():
        assert specs[name].get("default") == value, name
        assert specs[name].get("description"), name
