"""The cluster_addons role: its manifests rendered with its defaults and against the pinned schema,
its variables against its argument specs, and what each inventory chooses.

Templates are rendered by Ansible's own templar with the role's defaults and vars, as the role's
template lookups see them; every object is validated with kubernetes-validate in strict mode.
"""

from __future__ import annotations

import base64
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "cluster_addons"
KUBERNETES_SCHEMA = "1.34.0"  # the schema kubernetes-validate has for the pinned v1.34.4
FACTS = {"cluster_name": "demo", "aws_region": "eu-west-1", "cluster_kubeconfig": "/tmp/kubeconfig"}
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def render(template, **overrides):
    loader = DataLoader()
    variables = dict(FACTS)
    variables.update(loader.load_from_file(str(ROLE / "defaults/main.yml"), trusted_as_template=True))
    variables.update(loader.load_from_file(str(ROLE / "vars/main.yml"), trusted_as_template=True))
    variables.update(overrides)
    templar = Templar(loader=loader, variables=variables)
    text = templar.template(trust_as_template((ROLE / "templates" / template).read_text()))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objects, kind, name):
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def containers(workload):
    return {c["name"]: c for c in workload["spec"]["template"]["spec"]["containers"]}


def test_the_role_has_a_template_per_storage_choice_and_metrics_server():
    templates = sorted(p.name for p in (ROLE / "templates").glob("*.yml.j2"))
    assert templates == ["metrics-server.yml.j2", "storage-ebs-csi.yml.j2", "storage-local-path.yml.j2"]


@pytest.mark.parametrize(
    ("template", "overrides"),
    [
        ("storage-ebs-csi.yml.j2", {}),
        ("storage-ebs-csi.yml.j2", {"cluster_addons_ebs_kms_key_id": "alias/demo"}),
        ("storage-local-path.yml.j2", {"cluster_addons_storage": "local-path"}),
        ("metrics-server.yml.j2", {}),
    ],
)
def test_every_manifest_is_valid_for_the_pinned_kubernetes_version(template, overrides):
    objects = render(template, **overrides)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_SCHEMA, strict=True)


def test_ebs_csi_default_class_is_encrypted_gp3_bound_on_first_consumer_and_expandable():
    objects = render("storage-ebs-csi.yml.j2")
    classes = [o for o in objects if o["kind"] == "StorageClass"]
    assert [c["metadata"]["name"] for c in classes] == ["gp3"]
    (gp3,) = classes
    assert gp3["metadata"]["annotations"][DEFAULT_CLASS] == "true"
    assert gp3["provisioner"] == "ebs.csi.aws.com"
    assert gp3["volumeBindingMode"] == "WaitForFirstConsumer"
    assert gp3["allowVolumeExpansion"] is True
    assert gp3["parameters"] == {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"}
    kms = find(render("storage-ebs-csi.yml.j2", cluster_addons_ebs_kms_key_id="alias/demo"), "StorageClass", "gp3")
    assert kms["parameters"]["kmsKeyId"] == "alias/demo"


def test_ebs_csi_tags_every_volume_with_the_cluster_tag():
    """The IAM policy allows CreateVolume only with this tag, and the teardown finds volumes by it.

    The driver refuses --extra-tags keys under kubernetes.io ("tag key prefix 'kubernetes.io' is
    reserved"): the cluster tag comes from --k8s-tag-cluster-id.
    """
    controller = find(render("storage-ebs-csi.yml.j2"), "Deployment", "ebs-csi-controller")
    args = containers(controller)["ebs-plugin"]["args"]
    assert "--k8s-tag-cluster-id=demo" in args
    extra = [a.split("=", 1)[1] for a in args if a.startswith("--extra-tags=")]
    assert all(not key.startswith("kubernetes.io") for tags in extra for key in tags.split(","))


def test_ebs_csi_controller_runs_on_the_control_plane_whose_role_has_the_permissions():
    """Pods cannot reach the instance credentials (IMDS hop limit 1): the controller uses the host's network."""
    objects = render("storage-ebs-csi.yml.j2")
    controller = find(objects, "Deployment", "ebs-csi-controller")["spec"]
    pod = controller["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["nodeSelector"]["node-role.kubernetes.io/control-plane"] == ""
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert controller["replicas"] == 1
    node = find(objects, "DaemonSet", "ebs-csi-node")["spec"]["template"]["spec"]
    assert node["hostNetwork"] is True
    # Both on the control plane's network: the controller's health port is not the node plugin's.
    node_ports = {p["containerPort"] for c in node["containers"] for p in c.get("ports", [])}
    controller_ports = {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
    assert node_ports == {9808} and controller_ports == {9809}
    assert (
        "--http-endpoint=:9809"
        in containers(find(objects, "Deployment", "ebs-csi-controller"))["liveness-probe"]["args"]
    )
    assert "csi-snapshotter" not in containers(find(objects, "Deployment", "ebs-csi-controller"))


def test_ebs_csi_images_come_from_public_ecr_pinned():
    images = [
        c["image"]
        for o in render("storage-ebs-csi.yml.j2")
        if o["kind"] in ("Deployment", "DaemonSet")
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    assert images and all(i.startswith("public.ecr.aws/") for i in images), images
    assert all(":" in i.rsplit("/", 1)[1] and not i.endswith(":latest") for i in images), images


def test_local_path_default_class_and_the_helper_image_it_runs():
    objects = render(
        "storage-local-path.yml.j2",
        cluster_addons_storage="local-path",
        cluster_addons_local_path_helper_image="helix.local/local-path-helper:bookworm",
    )
    (local,) = [o for o in objects if o["kind"] == "StorageClass"]
    assert local["metadata"]["name"] == "local-path"
    assert local["metadata"]["annotations"][DEFAULT_CLASS] == "true"
    assert local["provisioner"] == "rancher.io/local-path"
    assert local["volumeBindingMode"] == "WaitForFirstConsumer"
    config = find(objects, "ConfigMap", "local-path-config")["data"]
    helper = yaml.safe_load(config["helperPod.yaml"])
    assert helper["spec"]["containers"][0]["image"] == "helix.local/local-path-helper:bookworm"
    assert yaml.safe_load(config["config.json"])["nodePathMap"][0]["paths"] == ["/opt/local-path-provisioner"]
    provisioner = containers(find(objects, "Deployment", "local-path-provisioner"))["local-path-provisioner"]
    assert provisioner["image"] == "docker.io/rancher/local-path-provisioner:v0.0.30"
    assert provisioner["command"][-2:] == ["--helper-image", "helix.local/local-path-helper:bookworm"]
    namespace = find(objects, "Namespace", "local-path-storage")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_metrics_server_verifies_the_kubelets_and_the_api_server_verifies_it():
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    objects = render("metrics-server.yml.j2", cluster_addons_metrics_server_ca=ca)
    deployment = find(objects, "Deployment", "metrics-server")
    server = containers(deployment)["metrics-server"]
    assert server["image"] == "registry.k8s.io/metrics-server/metrics-server:v0.8.0"
    assert not [a for a in server["args"] if a.startswith("--kubelet-insecure-tls")]
    assert "--tls-cert-file=/etc/metrics-server/tls/tls.crt" in server["args"]
    assert "--tls-private-key-file=/etc/metrics-server/tls/tls.key" in server["args"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "metrics-server-tls"
    api_service = find(objects, "APIService", "v1beta1.metrics.k8s.io")["spec"]
    assert "insecureSkipTLSVerify" not in api_service
    assert base64.b64decode(api_service["caBundle"]).decode() == ca
    assert server["securityContext"]["runAsNonRoot"] is True
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    service = find(objects, "Service", "metrics-server")
    assert service["spec"]["selector"] == {"k8s-app": "metrics-server"}
    assert find(objects, "APIService", "v1beta1.metrics.k8s.io")["spec"]["service"]["name"] == "metrics-server"


def load(path):
    return yaml.safe_load((ROOT / path).read_text())


def test_argument_specs_document_every_default_with_its_value():
    spec = load("roles/cluster_addons/meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = load("roles/cluster_addons/defaults/main.yml")
    assert sorted(spec) == sorted(defaults)
    for name, value in defaults.items():
        if isinstance(value, str) and "{{" in value:
            continue  # computed: the spec describes it in words
        assert spec[name]["default"] == value, name
    assert spec["cluster_addons_storage"]["choices"] == ["ebs-csi", "local-path", "none"]
    assert defaults["cluster_addons_storage"] == "ebs-csi"


@pytest.mark.parametrize(("storage", "name"), [("ebs-csi", "gp3"), ("local-path", "local-path"), ("none", "")])
def test_the_storage_class_name_follows_the_choice(storage, name):
    loader = DataLoader()
    variables = {**FACTS, **loader.load_from_file(str(ROLE / "defaults/main.yml"), trusted_as_template=True)}
    variables["cluster_addons_storage"] = storage
    templar = Templar(loader=loader, variables=variables)
    assert templar.template(variables["cluster_addons_storage_class"]) == name


def test_the_inventories_choose_ebs_on_aws_and_local_path_on_the_local_cloud():
    assert load("inventories/aws/group_vars/all.yml")["cluster_addons_storage"] == "ebs-csi"
    local = load("inventories/local/group_vars/all/nodes.yml")
    assert local["cluster_addons_storage"] == "local-path"
    # The helper image the local cloud assembles (tests/nodes/images.sh) is the one it names.
    assert f"--ref {local['cluster_addons_local_path_helper_image']} " in (ROOT / "tests/nodes/images.sh").read_text()


def test_the_local_cloud_assembles_the_images_the_manifests_name():
    images_sh = (ROOT / "tests/nodes/images.sh").read_text()
    defaults = load("roles/cluster_addons/defaults/main.yml")
    refs = {
        "cluster_addons_metrics_server_image": "registry.k8s.io/metrics-server/metrics-server:$METRICS_SERVER_VERSION",
        "cluster_addons_local_path_image": "docker.io/rancher/local-path-provisioner:$LOCAL_PATH_VERSION",
    }
    for variable, ref in refs.items():
        assert ref in images_sh
        version = defaults[variable].rsplit(":", 1)[1]
        assert version in images_sh  # the script's default version is the manifest's


def test_the_cluster_layer_runs_the_role_after_the_workers():
    plays = load("playbooks/layers/cluster/create.yml")
    names = [play["name"] for play in plays]
    workers = names.index("Create the cluster layer - workers")
    (addons,) = [
        i
        for i, play in enumerate(plays)
        for task in play.get("tasks", [])
        if task.get("ansible.builtin.import_role", {}).get("name") == "helix.kubeadm_aws.cluster_addons"
    ]
    assert addons > workers


@pytest.mark.parametrize(
    ("template", "overrides"),
    [
        ("storage-ebs-csi.yml.j2", {}),
        ("storage-local-path.yml.j2", {"cluster_addons_storage": "local-path"}),
        ("metrics-server.yml.j2", {}),
    ],
)
def test_what_a_workload_needs_is_applied_before_it(template, overrides):
    """kubernetes.core.k8s applies a list in order and waits for each workload before the next object."""
    objects = render(template, **overrides)
    kinds = [o["kind"] for o in objects]
    workloads = [i for i, kind in enumerate(kinds) if kind in ("Deployment", "DaemonSet")]
    needed = [i for i, kind in enumerate(kinds) if kind in ("ConfigMap", "Secret", "ServiceAccount", "Namespace")]
    assert workloads and max(needed) < min(workloads), kinds
