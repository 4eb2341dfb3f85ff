"""The bootstrap and infrastructure layers, create to delete, through the real playbooks."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.ansible_run import run_playbook

CLUSTER = "itest"
TAG = f"kubernetes.io/cluster/{CLUSTER}"
OWNED = [{"Name": f"tag:{TAG}", "Values": ["owned"]}]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return {"cluster_name": CLUSTER, "worker_count": 3, "state_dir": str(tmp_path_factory.mktemp("state"))}


def tags(resource, key="Tags"):
    return {t["Key"]: t["Value"] for t in resource.get(key, [])}


def live_instances(ec2):
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[*OWNED, {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def nodes(ec2):
    return sorted((tags(i)["Name"], i["Placement"]["AvailabilityZone"]) for i in live_instances(ec2))


def worker_zones(ec2):
    return sorted(zone for name, zone in nodes(ec2) if name == f"{CLUSTER}-worker")


def partition(aws):
    """The ARN partition of the caller (aws, aws-cn, aws-us-gov), as preflight reads it."""
    return aws.client("sts").get_caller_identity()["Arn"].split(":")[1]


def permissions(group):
    """Ingress as a set of (protocol, from, to, source) for easy assertions."""
    rules = set()
    for p in group["IpPermissions"]:
        sources = [r["CidrIp"] for r in p.get("IpRanges", [])] + [g["GroupId"] for g in p.get("UserIdGroupPairs", [])]
        rules |= {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), s) for s in sources}
    return rules


@pytest.mark.parametrize(
    ("extra_vars", "variable"),
    [
        ({"worker_count": -1}, "worker_count"),
        ({"worker_count": "abc"}, "worker_count"),
        ({"cluster_name": "Bad_Name"}, "cluster_name"),
        ({"vpc_cidr": "10.0.0.0/33"}, "vpc_cidr"),
        ({"admin_cidrs": [], "aws_endpoint_url": ""}, "admin_cidrs"),
    ],
)
def test_bad_input_fails_before_anything_changes(aws, settings, extra_vars, variable):
    env = {"HELIX_AWS_ENDPOINT_URL": ""} if extra_vars.get("aws_endpoint_url") == "" else {}
    if env:
        env.update(AWS_ACCESS_KEY_ID="none", AWS_SECRET_ACCESS_KEY="none", AWS_EC2_METADATA_DISABLED="true")
    run = run_playbook("site.yml", aws.url, {**settings, **extra_vars}, env=env)
    assert run.returncode != 0
    assert variable in run.output
    assert aws.client("s3").list_buckets()["Buckets"] == []
    assert aws.client("ec2").describe_vpcs(Filters=OWNED)["Vpcs"] == []


def test_create(aws, settings):
    run = run_playbook("site.yml", aws.url, settings)
    assert run.returncode == 0, run.output
    assert "Cluster itest in us-east-1" in run.output  # the summary


def test_nodes_spread_over_three_zones(aws):
    assert nodes(aws.client("ec2")) == [
        ("itest-control-plane", "us-east-1a"),
        ("itest-worker", "us-east-1a"),
        ("itest-worker", "us-east-1b"),
        ("itest-worker", "us-east-1c"),
    ]


def test_network(aws):
    ec2 = aws.client("ec2")
    (vpc,) = ec2.describe_vpcs(Filters=OWNED)["Vpcs"]
    assert vpc["CidrBlock"] == "10.42.0.0/16"
    subnets = ec2.describe_subnets(Filters=OWNED)["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subnets) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert all(tags(s)["kubernetes.io/role/elb"] == "1" and s["VpcId"] == vpc["VpcId"] for s in subnets)
    (igw,) = ec2.describe_internet_gateways(Filters=OWNED)["InternetGateways"]
    assert igw["Attachments"][0]["VpcId"] == vpc["VpcId"]
    (table,) = ec2.describe_route_tables(Filters=OWNED)["RouteTables"]
    assert {"0.0.0.0/0": igw["InternetGatewayId"]}.items() <= {
        r.get("DestinationCidrBlock"): r.get("GatewayId") for r in table["Routes"]
    }.items()
    assert sorted(a["SubnetId"] for a in table["Associations"]) == sorted(s["SubnetId"] for s in subnets)


def test_security_groups_open_only_what_is_needed(aws):
    ec2 = aws.client("ec2")
    groups = {tags(g)["Name"]: g for g in ec2.describe_security_groups(Filters=OWNED)["SecurityGroups"]}
    control_plane, worker, ssh = (groups[f"itest-{n}"] for n in ("control-plane", "worker", "ssh"))
    cp_id, worker_id = control_plane["GroupId"], worker["GroupId"]
    assert permissions(control_plane) == {
        ("tcp", 6443, 6443, "127.0.0.0/8"),
        ("tcp", 6443, 6443, cp_id),
        ("tcp", 6443, 6443, worker_id),
        ("tcp", 2379, 2380, cp_id),
        ("tcp", 10250, 10250, cp_id),
        ("tcp", 10250, 10250, worker_id),
        ("tcp", 10257, 10257, cp_id),
        ("tcp", 10259, 10259, cp_id),
        ("udp", 8472, 8472, cp_id),
        ("udp", 8472, 8472, worker_id),
    }
    assert permissions(worker) == {
        ("tcp", 10250, 10250, cp_id),
        ("tcp", 10250, 10250, worker_id),
        ("tcp", 30000, 32767, "127.0.0.0/8"),
        ("udp", 8472, 8472, cp_id),
        ("udp", 8472, 8472, worker_id),
    }
    assert permissions(ssh) == {("tcp", 22, 22, "127.0.0.0/8")}


def test_launch_templates_are_secure_by_default(aws):
    ec2 = aws.client("ec2")
    templates = ec2.describe_launch_templates(Filters=OWNED)["LaunchTemplates"]
    assert sorted(t["LaunchTemplateName"] for t in templates) == ["itest-control-plane", "itest-worker"]
    for template in templates:
        data = ec2.describe_launch_template_versions(
            LaunchTemplateId=template["LaunchTemplateId"], Versions=["$Default"]
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        role = template["LaunchTemplateName"].removeprefix("itest-")
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        (volume,) = data["BlockDeviceMappings"]
        assert volume["Ebs"]["Encrypted"] is True and volume["Ebs"]["VolumeType"] == "gp3"
        assert data["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/helix/itest/itest-{role}")
        assert data["KeyName"] == CLUSTER
        # No network interface: RunInstances names the subnet, which EC2 refuses next to a template's interfaces.
        assert "NetworkInterfaces" not in data
        assert len(data["SecurityGroupIds"]) == 2


def test_node_roles_have_least_privilege(aws):
    iam = aws.client("iam")
    roles = {r["RoleName"]: r for r in iam.list_roles(PathPrefix=f"/helix/{CLUSTER}/")["Roles"]}
    assert sorted(roles) == ["itest-control-plane", "itest-worker"]
    bucket = aws.client("s3").list_buckets()["Buckets"][0]["Name"]
    arn = f"arn:{partition(aws)}:s3:::{bucket}"
    for name, actions in (
        ("itest-control-plane", ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]),
        ("itest-worker", ["s3:GetObject"]),
    ):
        document = iam.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"]
        document = json.loads(document) if isinstance(document, str) else document
        join = next(s for s in document["Statement"] if s["Sid"] == "JoinCommand")
        assert join["Action"] == actions
        assert join["Resource"] == f"{arn}/join/*"
        listing = next(s for s in document["Statement"] if s["Sid"] == "ListJoinPrefix")
        assert listing["Action"] == "s3:ListBucket" and listing["Resource"] == arn
        assert listing["Condition"] == {"StringLike": {"s3:prefix": ["join/", "join/*"]}}
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [name]


def test_bucket_is_private_encrypted_versioned_tls_only(aws):
    s3 = aws.client("s3")
    (bucket,) = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert bucket == f"{CLUSTER}-123456789012-us-east-1"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (statement,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Resource"] == [f"arn:{partition(aws)}:s3:::{bucket}", f"arn:{partition(aws)}:s3:::{bucket}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert tags(s3.get_bucket_tagging(Bucket=bucket), "TagSet")[TAG] == "owned"


def test_bucket_expires_old_versions_and_abandoned_uploads(aws):
    s3 = aws.client("s3")
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=f"{CLUSTER}-123456789012-us-east-1")["Rules"]
    assert rule["ID"] == "helix-retention" and rule["Status"] == "Enabled"
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert "Expiration" not in rule and rule["Filter"].get("Prefix", "") == ""


def test_key_pair_and_repositories(aws, settings):
    ec2, ecr = aws.client("ec2"), aws.client("ecr")
    assert [k["KeyName"] for k in ec2.describe_key_pairs(Filters=OWNED)["KeyPairs"]] == [CLUSTER]
    private_key = stat.S_IMODE((Path(settings["state_dir"]) / "id_ed25519").stat().st_mode)
    assert private_key == 0o600
    repositories = ecr.describe_repositories()["repositories"]
    assert sorted(r["repositoryName"] for r in repositories) == ["itest/api", "itest/db", "itest/ui"]
    assert all(r["imageScanningConfiguration"]["scanOnPush"] for r in repositories)


def test_second_run_changes_nothing(aws, settings):
    run = run_playbook("site.yml", aws.url, settings)
    assert run.returncode == 0, run.output
    assert run.changed == 0, run.output


@pytest.mark.parametrize("count", [5, 2])
def test_scale_workers_keeps_zones_balanced(aws, settings, count):
    run = run_playbook("playbooks/infrastructure.yml", aws.url, {**settings, "worker_count": count})
    assert run.returncode == 0, run.output
    zones = worker_zones(aws.client("ec2"))
    per_zone = [zones.count(zone) for zone in ("us-east-1a", "us-east-1b", "us-east-1c")]
    assert sum(per_zone) == count and max(per_zone) - min(per_zone) <= 1, zones


def test_delete_leaves_nothing_tagged(aws, settings):
    run = run_playbook("destroy.yml", aws.url, {**settings, "worker_count": 2})
    assert run.returncode == 0, run.output
    ec2 = aws.client("ec2")
    assert live_instances(ec2) == []
    for describe, key in (
        (ec2.describe_vpcs, "Vpcs"),
        (ec2.describe_subnets, "Subnets"),
        (ec2.describe_security_groups, "SecurityGroups"),
        (ec2.describe_route_tables, "RouteTables"),
        (ec2.describe_internet_gateways, "InternetGateways"),
        (ec2.describe_launch_templates, "LaunchTemplates"),
        (ec2.describe_key_pairs, "KeyPairs"),
        (ec2.describe_addresses, "Addresses"),
    ):
        assert describe(Filters=OWNED)[key] == [], key
    assert aws.client("iam").list_roles(PathPrefix=f"/helix/{CLUSTER}/")["Roles"] == []
    assert aws.client("iam").list_instance_profiles(PathPrefix=f"/helix/{CLUSTER}/")["InstanceProfiles"] == []
    assert aws.client("ecr").describe_repositories()["repositories"] == []
    assert aws.client("s3").list_buckets()["Buckets"] == []


def test_delete_twice_is_fine(aws, settings):
    run = run_playbook("destroy.yml", aws.url, settings)
    assert run.returncode == 0, run.output
    assert run.changed == 0, run.output
