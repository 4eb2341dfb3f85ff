"""Scaling workers down crosses layers: drain and delete the Nodes, then terminate the instances."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.ansible_run import run_playbook

CLUSTER = "drain"
OWNED = [{"Name": f"tag:kubernetes.io/cluster/{CLUSTER}", "Values": ["owned"]}]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return {"cluster_name": CLUSTER, "state_dir": str(tmp_path_factory.mktemp("state"))}


def workers(ec2):
    """{instance id: private IP} of the live workers."""
    filters = [
        *OWNED,
        {"Name": "tag:helix/node-role", "Values": ["worker"]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]},
    ]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
    return {
        instance["InstanceId"]: instance["PrivateIpAddress"]
        for page in pages
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    }


def node_name(ip):
    """Kubelets name Nodes after the host, not after the EC2 Name tag: match by address."""
    return "ip-" + ip.replace(".", "-")


@pytest.fixture(scope="module")
def five_workers(aws, settings, kube_control_plane, kube_api_client):
    for playbook, extra in (("playbooks/bootstrap.yml", {}), ("playbooks/infrastructure.yml", {"worker_count": 5})):
        run = run_playbook(playbook, aws.url, {**settings, **extra})
        assert run.returncode == 0, run.output
    core = client.CoreV1Api(kube_api_client)
    for ip in workers(aws.client("ec2")).values():
        name = node_name(ip)
        core.create_node(
            client.V1Node(metadata=client.V1ObjectMeta(name=name, annotations={"kwok.x-k8s.io/node": "fake"}))
        )
        set_internal_ip(core, name, ip)
    return core


def set_internal_ip(core, name, ip, timeout=60):
    """Status is a subresource a create ignores; kwok may write it concurrently, so patch until it sticks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        core.patch_node_status(name, {"status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
        time.sleep(1)
        addresses = core.read_node_status(name).status.addresses or []
        if [a.address for a in addresses if a.type == "InternalIP"] == [ip]:
            return
    raise AssertionError(f"Node {name} did not keep InternalIP {ip}")


def scale_to_two(aws, settings, kube_control_plane, **extra):
    extra_vars = {**settings, "worker_count": 2, "kubeconfig": str(kube_control_plane.kubeconfig), **extra}
    return run_playbook("playbooks/infrastructure.yml", aws.url, extra_vars)


def test_a_worker_that_cannot_be_drained_stops_the_run_before_any_termination(
    aws, settings, kube_control_plane, five_workers, kube_namespace
):
    for number, ip in enumerate(workers(aws.client("ec2")).values()):  # whichever leaves, it holds one
        five_workers.create_namespaced_pod(
            kube_namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name=f"unmanaged-{number}"),
                spec=client.V1PodSpec(
                    node_name=node_name(ip), containers=[client.V1Container(name="c", image="busybox")]
                ),
            ),
        )
    run = scale_to_two(aws, settings, kube_control_plane, nodes_drain_timeout=15)
    assert run.returncode != 0, run.output
    assert "stopped before terminating anything" in run.output
    assert "nodes_drain_force=true" in run.output
    assert len(workers(aws.client("ec2"))) == 5


def test_scale_down_drains_and_deletes_nodes_before_terminating(aws, settings, kube_control_plane, five_workers):
    before = workers(aws.client("ec2"))
    run = scale_to_two(aws, settings, kube_control_plane, nodes_drain_force=True)
    assert run.returncode == 0, run.output
    drained = run.output.rindex("TASK [helix.kubeadm_aws.nodes : Cordon and drain each leaving worker]")
    assert drained < run.output.rindex("TASK [helix.kubeadm_aws.nodes : Make exactly the wanted number of nodes")
    after = workers(aws.client("ec2"))
    assert len(after) == 2 and after.items() <= before.items()
    remaining = sorted(n.metadata.name for n in five_workers.list_node().items)
    kept = sorted(node_name(ip) for ip in after.values())
    assert [n for n in remaining if n in {node_name(ip) for ip in before.values()}] == kept
