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


def node_policy(partition, node_role):
    return render("roles/node_iam/templates/policy.json.j2", partition, item=node_role)


def bucket_policy(partition):
    return render("roles/bootstrap/templates/bucket-policy.json.j2", partition)


def resources(policy):
    for statement in policy["Statement"]:
        resource = statement["Resource"]
        yield from [resource] if isinstance(resource, str) else resource


@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("node_role", ["control_plane", "worker"])
def test_node_policy_arns_are_in_the_callers_partition(partition, node_role):
    arns = [r for r in resources(node_policy(partition, node_role)) if r != "*"]
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
