"""The IAM and bucket policies, rendered as the roles' template lookups render them.

Every ARN is built in the partition of the caller's identity (`cluster_partition`, from preflight),
so the same roles work in aws, aws-cn and aws-us-gov; the node roles get the join prefix and nothing
more of the bucket.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = ["aws", "aws-cn", "aws-us-gov"]
BUCKET = "demo-123456789012-cn-north-1"
PREFLIGHT_FACTS = {
    "cluster_name": "demo",
    "cluster_account_id": "123456789012",
    "cluster_bucket": BUCKET,
    "aws_region": "cn-north-1",
}


def render(template, partition, **variables):
    templar = Templar(loader=DataLoader(), variables={**PREFLIGHT_FACTS, "cluster_partition": partition, **variables})
    return json.loads(templar.template(trust_as_template((ROOT / template).read_text())))


def node_policy(partition, node_role, ebs_csi_driver=False):
    return render(
        "roles/node_iam/templates/policy.json.j2", partition, item=node_role, node_iam_ebs_csi_driver=ebs_csi_driver
    )


def bucket_policy(partition):
    return render("roles/bootstrap/templates/bucket-policy.json.j2", partition)


def resources(policy):
    for statement in policy["Statement"]:
        resource = statement["Resource"]
        yield from [resource] if isinstance(resource, str) else resource


@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("node_role", ["control_plane", "worker"])
@pytest.mark.parametrize("ebs_csi_driver", [False, True])
def test_node_policy_arns_are_in_the_callers_partition(partition, node_role, ebs_csi_driver):
    arns = [r for r in resources(node_policy(partition, node_role, ebs_csi_driver)) if r != "*"]
    assert arns and all(arn.startswith(f"arn:{partition}:") for arn in arns), arns


@pytest.mark.parametrize("partition", PARTITIONS)
def test_bucket_policy_arns_are_in_the_callers_partition(partition):
    assert list(resources(bucket_policy(partition))) == [
        f"arn:{partition}:s3:::{BUCKET}",
        f"arn:{partition}:s3:::{BUCKET}/*",
    ]


@pytest.mark.parametrize(
    ("node_role", "join_actions"),
    [
        ("control_plane", ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]),
        ("worker", ["s3:GetObject"]),
    ],
)
def test_nodes_may_list_the_join_prefix_and_nothing_else_of_the_bucket(node_role, join_actions):
    """With ListBucket, S3 answers NoSuchKey (404) for a join object not yet published, not 403."""
    statements = {s["Sid"]: s for s in node_policy("aws-us-gov", node_role)["Statement"]}
    assert sorted(statements) == ["JoinCommand", "ListJoinPrefix", "PullClusterImages", "RegistryLoginCannotBeScoped"]
    assert statements["JoinCommand"]["Action"] == join_actions
    assert statements["JoinCommand"]["Resource"] == f"arn:aws-us-gov:s3:::{BUCKET}/join/*"
    assert statements["ListJoinPrefix"] == {
        "Sid": "ListJoinPrefix",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": f"arn:aws-us-gov:s3:::{BUCKET}",
        "Condition": {"StringLike": {"s3:prefix": ["join/", "join/*"]}},
    }


def test_no_role_or_playbook_writes_the_aws_partition_into_an_arn():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for top in ("roles", "playbooks")
        for path in sorted((ROOT / top).rglob("*"))
        if path.is_file()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if "arn:aws:" in line
    ]
    assert offenders == []


EBS_STATEMENTS = [
    "EbsCsiDescribeCannotBeScoped",
    "EbsCsiCreateClusterVolumes",
    "EbsCsiTagOnCreate",
    "EbsCsiAttachClusterVolumesToClusterInstances",
    "EbsCsiModifyDeleteClusterVolumes",
]
OWNED = {"StringEquals": {"ec2:ResourceTag/kubernetes.io/cluster/demo": "owned"}}


def test_only_the_control_plane_gets_the_ebs_csi_drivers_permissions_and_only_when_asked():
    """The driver's controller runs on the control plane; pods on workers cannot reach instance credentials."""
    with_driver = [s["Sid"] for s in node_policy("aws", "control_plane", True)["Statement"]]
    assert with_driver[4:] == EBS_STATEMENTS
    for node_role, ebs_csi_driver in [("control_plane", False), ("worker", False), ("worker", True)]:
        policy = node_policy("aws", node_role, ebs_csi_driver)
        assert not [a for s in policy["Statement"] for a in [s["Action"]] if "ec2:" in str(a)], node_role


def test_the_ebs_csi_driver_may_touch_only_the_clusters_own_volumes_and_instances():
    """Scoped by the cluster tag, in the cluster's region and account (AWS's example policy uses *)."""
    statements = {s["Sid"]: s for s in node_policy("aws-cn", "control_plane", True)["Statement"]}
    ec2 = "arn:aws-cn:ec2:cn-north-1:123456789012"
    assert statements["EbsCsiCreateClusterVolumes"] == {
        "Sid": "EbsCsiCreateClusterVolumes",
        "Effect": "Allow",
        "Action": "ec2:CreateVolume",
        "Resource": f"{ec2}:volume/*",
        "Condition": {"StringEquals": {"aws:RequestTag/kubernetes.io/cluster/demo": "owned"}},
    }
    assert statements["EbsCsiTagOnCreate"]["Action"] == "ec2:CreateTags"
    assert statements["EbsCsiTagOnCreate"]["Condition"] == {
        "StringEquals": {"ec2:CreateAction": "CreateVolume", "aws:RequestTag/kubernetes.io/cluster/demo": "owned"}
    }
    attach = statements["EbsCsiAttachClusterVolumesToClusterInstances"]
    assert attach["Action"] == ["ec2:AttachVolume", "ec2:DetachVolume"]
    assert attach["Resource"] == [f"{ec2}:volume/*", f"{ec2}:instance/*"]
    assert attach["Condition"] == OWNED
    modify = statements["EbsCsiModifyDeleteClusterVolumes"]
    assert modify["Action"] == ["ec2:ModifyVolume", "ec2:DeleteVolume"]
    assert modify["Resource"] == f"{ec2}:volume/*"
    assert modify["Condition"] == OWNED
    describe = statements["EbsCsiDescribeCannotBeScoped"]
    assert describe["Resource"] == "*"
    assert all(action.startswith("ec2:Describe") for action in describe["Action"])
    # Every statement that changes something is conditioned on the cluster tag.
    for sid in EBS_STATEMENTS[1:]:
        assert "kubernetes.io/cluster/demo" in json.dumps(statements[sid]["Condition"]), sid


def test_the_node_iam_role_grants_the_driver_when_the_cluster_storage_is_ebs_csi():
    loader = DataLoader()
    defaults = loader.load_from_file(str(ROOT / "roles/node_iam/defaults/main.yml"), trusted_as_template=True)
    for storage, expected in [(None, True), ("ebs-csi", True), ("local-path", False), ("none", False)]:
        variables = dict(defaults)
        if storage:
            variables["cluster_addons_storage"] = storage
        templar = Templar(loader=loader, variables=variables)
        assert templar.template(variables["node_iam_ebs_csi_driver"]) is expected, storage
