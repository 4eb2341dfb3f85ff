"""Node plays act only on the nodes of cluster_name; a destroy gets through an unreachable cluster.

Two clusters' instances share one endpoint, found by the real inventories/aws/aws_ec2.yml (the
amazon.aws.aws_ec2 plugin pointed at the endpoint with AWS_URL). Their addresses are records:
every run overrides ansible_host with a closed loopback port, so nothing is ever sent to them,
and a node that the playbook does reach for is seen in the output as unreachable.
"""

from __future__ import annotations

import pytest
import yaml

from tests.ansible_run import run_playbook
from tests.aws_endpoint import CREDENTIALS, free_port
from tests.integration.leftovers import leftovers

ALPHA, BETA = "alpha", "beta"
JOIN_KEY = "join/worker"


def hosts_of(ec2, cluster):
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:kubernetes.io/cluster/{cluster}", "Values": ["owned"]}]
    )
    return sorted(i["PrivateDnsName"] for page in pages for r in page["Reservations"] for i in r["Instances"])


def bucket(aws, cluster):
    account = aws.client("sts").get_caller_identity()["Account"]
    return f"{cluster}-{account}-us-east-1"


def launch(ec2, subnet_id, cluster, role):
    tags = {f"kubernetes.io/cluster/{cluster}": "owned", "helix/node-role": role, "helix/ssh-user": "ubuntu"}
    ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet_id,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )


@pytest.fixture(scope="module")
def two_clusters(aws):
    """Instances and a published join object for each of two clusters."""
    ec2, s3 = aws.client("ec2"), aws.client("s3")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
    for cluster in (ALPHA, BETA):
        for role in ("control_plane", "worker"):
            launch(ec2, subnet, cluster, role)
        s3.create_bucket(Bucket=bucket(aws, cluster))
        s3.put_object(Bucket=bucket(aws, cluster), Key=JOIN_KEY, Body=b"kubeadm join ...")
    return aws


def aws_inventory_run(aws, playbook, inventory_cluster, extra_vars, tmp_path):
    """ansible-playbook through inventories/aws with its nodes unreachable on a closed loopback port."""
    env = {
        "AWS_URL": aws.url,
        "HELIX_CLUSTER_NAME": inventory_cluster,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
    }
    unreachable = {"ansible_host": "127.0.0.1", "ansible_port": free_port(), "state_dir": str(tmp_path)}
    return run_playbook(playbook, aws.url, {**unreachable, **extra_vars}, inventory="inventories/aws", env=env)


def join_object_exists(aws, cluster):
    versions = aws.client("s3").list_object_versions(Bucket=bucket(aws, cluster), Prefix=JOIN_KEY)
    return bool(versions.get("Versions"))


def test_an_inventory_of_another_cluster_fails_before_any_change(two_clusters, tmp_path):
    aws = two_clusters
    run = aws_inventory_run(
        aws, "playbooks/cluster.yml", BETA, {"cluster_name": ALPHA, "lifecycle_action": "delete"}, tmp_path
    )
    assert run.returncode != 0, run.output
    assert "are not nodes of cluster alpha" in run.output, run.output
    for host in hosts_of(aws.client("ec2"), BETA):
        assert host in run.output
    assert "UNREACHABLE" not in run.output and "Wait briefly for SSH" not in run.output
    assert join_object_exists(aws, ALPHA) and join_object_exists(aws, BETA)


def test_node_plays_touch_only_their_cluster_and_pass_unreachable_nodes(two_clusters, tmp_path):
    aws = two_clusters
    ec2 = aws.client("ec2")
    run = aws_inventory_run(
        aws, "playbooks/cluster.yml", ALPHA, {"cluster_name": ALPHA, "lifecycle_action": "delete"}, tmp_path
    )
    assert run.returncode == 0, run.output
    for host in hosts_of(ec2, ALPHA):
        assert f"WARNING: node {host} did not answer" in " ".join(run.output.split())
    assert not any(host in run.output for host in hosts_of(ec2, BETA))
    assert not join_object_exists(aws, ALPHA)
    assert join_object_exists(aws, BETA)


def test_destroy_of_an_unreachable_cluster_leaves_nothing(aws, tmp_path):
    """A whole stack whose API server and nodes do not answer is still deleted by its tags."""
    settings = {"cluster_name": "gamma", "worker_count": 1, "availability_zone_count": 2, "state_dir": str(tmp_path)}
    created = run_playbook("site.yml", aws.url, settings)
    assert created.returncode == 0, created.output
    kubeconfig = {"clusters": [{"name": "gamma", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}]}
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))

    run = aws_inventory_run(aws, "destroy.yml", "gamma", settings, tmp_path)

    assert run.returncode == 0, run.output
    flat = " ".join(run.output.split())
    assert "WARNING: the API server at" in flat
    assert "WARNING: node" in flat
    assert leftovers(aws, "gamma") == {}
