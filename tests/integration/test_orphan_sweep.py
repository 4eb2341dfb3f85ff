"""Destroy without orphans: what the cluster made in AWS is swept with the infrastructure layer.

Bootstrap and infrastructure are created by the real playbooks on a local AWS endpoint; then the
resources the AWS cloud provider and the EBS CSI driver would make (load balancers of Services,
their target groups and security group, volumes of PersistentVolumeClaims, a network interface)
are planted with the cluster tag, and `playbooks/infrastructure.yml -e lifecycle_action=delete`
must remove them with the layer (and the control plane's Elastic IP, which the layer itself made)
and leave bootstrap and other clusters' resources alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ansible_run import ROOT, run_playbook

CLUSTER = "sweep"
TAG = f"kubernetes.io/cluster/{CLUSTER}"
OWNED = [{"Key": TAG, "Value": "owned"}]
FOREIGN = [{"Key": "kubernetes.io/cluster/other", "Value": "owned"}]

pytestmark = pytest.mark.slow


def cluster_vars(tmp_path):
    return {"cluster_name": CLUSTER, "worker_count": 1, "availability_zone_count": 2, "state_dir": str(tmp_path)}


def unsafe(value):
    """ansible-inventory --list marks values from AWS as {"__ansible_unsafe": value}."""
    return value.get("__ansible_unsafe") if isinstance(value, dict) else value


def tagged(resource_type, tags):
    return [{"ResourceType": resource_type, "Tags": tags}]


def plant(aws):
    """What Services of type LoadBalancer and PersistentVolumeClaims leave in AWS, and foreign things."""
    ec2, elbv2, elb = aws.client("ec2"), aws.client("elbv2"), aws.client("elb")
    vpc = ec2.describe_vpcs(Filters=[{"Name": f"tag:{TAG}", "Values": ["owned"]}])["Vpcs"][0]["VpcId"]
    # Not planted: the nodes role gave it to the control plane. Still associated, it holds the gateway.
    (address,) = ec2.describe_addresses(Filters=[{"Name": f"tag:{TAG}", "Values": ["owned"]}])["Addresses"]
    assert address.get("AssociationId"), address
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    zone = ec2.describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["AvailabilityZone"]
    worker = ec2.describe_instances(
        Filters=[
            {"Name": "tag:helix/node-role", "Values": ["worker"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"][0]["Instances"][0]

    group = ec2.create_security_group(
        GroupName="k8s-elb-a1b2c3",
        Description="Security group for Kubernetes ELB a1b2c3 (default/ui)",
        VpcId=vpc,
        TagSpecifications=tagged("security-group", OWNED),
    )["GroupId"]
    nlb = elbv2.create_load_balancer(Name="k8s-default-ui-a1b2c3", Type="network", Subnets=subnets, Tags=OWNED)
    nlb_arn = nlb["LoadBalancers"][0]["LoadBalancerArn"]
    target_group = elbv2.create_target_group(
        Name="k8s-default-ui-a1b2c3", Protocol="TCP", Port=30080, VpcId=vpc, TargetType="instance", Tags=OWNED
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.create_listener(
        LoadBalancerArn=nlb_arn,
        Protocol="TCP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group}],
    )
    elb.create_load_balancer(
        LoadBalancerName="a1b2c3d4e5f6",
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstancePort": 30081}],
        Subnets=subnets[:1],
        SecurityGroups=[group],
        Tags=OWNED,
    )
    detached = ec2.create_volume(AvailabilityZone=zone, Size=1, TagSpecifications=tagged("volume", OWNED))["VolumeId"]
    attached = ec2.create_volume(
        AvailabilityZone=worker["Placement"]["AvailabilityZone"], Size=1, TagSpecifications=tagged("volume", OWNED)
    )["VolumeId"]
    ec2.attach_volume(VolumeId=attached, InstanceId=worker["InstanceId"], Device="/dev/xvdba")
    interface = ec2.create_network_interface(
        SubnetId=subnets[0], Groups=[group], TagSpecifications=tagged("network-interface", OWNED)
    )["NetworkInterface"]["NetworkInterfaceId"]

    foreign_volume = ec2.create_volume(AvailabilityZone=zone, Size=1, TagSpecifications=tagged("volume", FOREIGN))
    foreign_address = ec2.allocate_address(Domain="vpc", TagSpecifications=tagged("elastic-ip", FOREIGN))
    default_vpc_subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]
    foreign_lb = elbv2.create_load_balancer(
        Name="other-cluster", Type="network", Subnets=[default_vpc_subnet["SubnetId"]], Tags=FOREIGN
    )
    return {
        "planted": {
            "load_balancer": {nlb_arn},
            "target_group": {target_group},
            "classic_load_balancer": {"a1b2c3d4e5f6"},
            "security_group": {group},
            "volume": {detached, attached},
            "network_interface": {interface},
            "elastic_ip": {address["AllocationId"]},
        },
        "foreign_volume": foreign_volume["VolumeId"],
        "foreign_address": foreign_address["AllocationId"],
        "foreign_lb": foreign_lb["LoadBalancers"][0]["LoadBalancerArn"],
    }


def deleted_by_teardown(output):
    """kind -> ids that the layer_teardown task reported (ansible.posix.json callback output)."""
    report, _end = json.JSONDecoder().raw_decode(output[output.index("{") :])  # stderr follows
    found = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get("localhost", {})
            for item in result.get("deleted", []) if task["task"]["name"].startswith("Delete everything") else []:
                found.setdefault(item["kind"], set()).add(item["id"])
    assert found, output[-3000:]
    return found


@pytest.fixture(scope="module")
def infrastructure(aws, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sweep")
    for playbook in ("playbooks/bootstrap.yml", "playbooks/infrastructure.yml"):
        run = run_playbook(playbook, aws.url, cluster_vars(tmp_path))
        assert run.returncode == 0, run.output[-4000:]
    return tmp_path


def test_inventory_finds_the_nodes_by_tag(aws, infrastructure):
    """inventories/aws/aws_ec2.yml groups the running nodes by their role tag."""
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        AWS_URL=aws.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        HELIX_CLUSTER_NAME=CLUSTER,
    )
    inventory = Path(sys.executable).with_name("ansible-inventory")
    done = subprocess.run(
        [str(inventory), "-i", "inventories/aws/aws_ec2.yml", "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    (control_plane,) = listing["control_plane"]["hosts"]
    (worker,) = listing["workers"]["hosts"]
    assert control_plane != worker and worker.startswith("ip-")
    host = listing["_meta"]["hostvars"][worker]
    assert unsafe(host["ansible_host"])
    assert unsafe(host["node_instance_id"]).startswith("i-")


def test_delete_sweeps_what_the_cluster_made(aws, infrastructure):
    planted = plant(aws)
    ec2, elbv2, elb, s3 = aws.client("ec2"), aws.client("elbv2"), aws.client("elb"), aws.client("s3")

    delete = {**cluster_vars(infrastructure), "lifecycle_action": "delete"}
    run = run_playbook(
        "playbooks/infrastructure.yml",
        aws.url,
        delete,
        env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )
    assert run.returncode == 0, run.output[-4000:]

    reported = deleted_by_teardown(run.output)
    for kind, ids in planted["planted"].items():
        assert ids <= reported.get(kind, set()), (kind, ids, reported.get(kind))

    owned = [{"Name": f"tag:{TAG}", "Values": ["owned"]}]
    assert ec2.describe_volumes(Filters=owned)["Volumes"] == []
    assert ec2.describe_network_interfaces(Filters=owned)["NetworkInterfaces"] == []
    assert [a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]] == [planted["foreign_address"]]
    assert ec2.describe_security_groups(Filters=owned)["SecurityGroups"] == []
    assert ec2.describe_vpcs(Filters=owned)["Vpcs"] == []
    assert [lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]] == [planted["foreign_lb"]]
    assert elbv2.describe_target_groups()["TargetGroups"] == []
    assert elb.describe_load_balancers()["LoadBalancerDescriptions"] == []
    # Other clusters and the bootstrap layer are left alone.
    assert ec2.describe_volumes(VolumeIds=[planted["foreign_volume"]])["Volumes"]
    assert ec2.describe_key_pairs(Filters=owned)["KeyPairs"]
    assert any(CLUSTER in b["Name"] for b in s3.list_buckets()["Buckets"])

    again = run_playbook(
        "playbooks/infrastructure.yml", aws.url, {**cluster_vars(infrastructure), "lifecycle_action": "delete"}
    )
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed == 0
