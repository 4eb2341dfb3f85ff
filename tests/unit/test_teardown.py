"""layer_teardown's finders and deleters against the local AWS endpoint.

The bucket is found by its exact name only, the VPC waits out what still holds it, and Elastic IPs
are disassociated and released before the internet gateway is detached.
"""

from __future__ import annotations

import pytest

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import teardown
from ansible_collections.helix.kubeadm_aws.plugins.modules import layer_teardown
from tests.module_runner import run_module

CLUSTER = "demo"
BUCKET = "demo-123456789012-us-east-1"


def owned_by(cluster):
    return [{"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"}]


def recorded(aws, calls):
    """An Api whose clients append (operation, parameters) of every call they make to calls."""

    def client(service):
        made = aws.client(service)
        made.meta.events.register(
            "before-parameter-build.*.*", lambda model, params, **_: calls.append((model.name, dict(params)))
        )
        return made

    return teardown.Api(client)


def bucket(s3, name, tags=None):
    s3.create_bucket(Bucket=name)
    if tags:
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags})


@pytest.fixture
def buckets(aws):
    """The cluster's bucket, and look-alikes: another cluster's, and one of ours by tag but not by name."""
    s3 = aws.client("s3")
    bucket(s3, BUCKET, owned_by(CLUSTER))
    bucket(s3, "demo2-123456789012-us-east-1", owned_by("demo2"))
    bucket(s3, "demo-scratch", owned_by(CLUSTER))
    bucket(s3, "demo-untagged")
    return s3


def test_the_bucket_is_found_by_its_exact_name_without_listing_buckets(aws, buckets):
    calls = []
    found = teardown.find(recorded(aws, calls), CLUSTER, ["s3_bucket"], bucket=BUCKET)
    assert found == [("s3_bucket", BUCKET)]
    assert [name for name, _params in calls] == ["GetBucketTagging"]


@pytest.mark.parametrize("name", ["demo-untagged", "demo2-123456789012-us-east-1", "no-such-bucket", None])
def test_a_bucket_not_tagged_as_the_clusters_or_not_named_is_not_found(aws, buckets, name):
    assert teardown.find(teardown.Api(aws.client), CLUSTER, ["s3_bucket"], bucket=name) == []


def test_bootstrap_teardown_needs_the_bucket_name(aws, buckets, capsys):
    result = run_module(capsys, layer_teardown, {"cluster_name": CLUSTER, "layer": "bootstrap"}, aws)
    assert result.get("failed") and "bucket" in result["msg"]
    assert BUCKET in [b["Name"] for b in buckets.list_buckets()["Buckets"]]


def test_bootstrap_teardown_deletes_only_the_named_bucket(aws, buckets, capsys):
    buckets.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two"):
        buckets.put_object(Bucket=BUCKET, Key="join/worker", Body=body)
    args = {"cluster_name": CLUSTER, "layer": "bootstrap", "bucket": BUCKET}

    result = run_module(capsys, layer_teardown, args, aws)
    assert result["changed"] and result["deleted"] == [{"kind": "s3_bucket", "id": BUCKET}]
    assert sorted(b["Name"] for b in buckets.list_buckets()["Buckets"]) == [
        "demo-scratch",
        "demo-untagged",
        "demo2-123456789012-us-east-1",
    ]
    again = run_module(capsys, layer_teardown, args, aws)
    assert not again["changed"] and again["deleted"] == []


def test_the_vpc_is_deleted_once_what_holds_it_is_gone(aws, monkeypatch):
    """AWS refuses with DependencyViolation while it still removes what it made inside the VPC."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/20")["Subnet"]["SubnetId"]
    waited = []

    def meanwhile_aws_removes_the_subnet(seconds):
        waited.append(seconds)
        ec2.delete_subnet(SubnetId=subnet)

    monkeypatch.setattr(teardown.time, "sleep", meanwhile_aws_removes_the_subnet)
    teardown.delete_vpc(teardown.Api(aws.client), vpc)
    assert len(waited) == 1
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Vpcs"] == []


def elastic_ip(ec2, tags):
    return ec2.allocate_address(Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": tags}])[
        "AllocationId"
    ]


def test_elastic_ips_are_disassociated_then_released(aws):
    ec2 = aws.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    associated, spare = elastic_ip(ec2, owned_by(CLUSTER)), elastic_ip(ec2, owned_by(CLUSTER))
    foreign = elastic_ip(ec2, owned_by("other"))
    association = ec2.associate_address(AllocationId=associated, InstanceId=instance)["AssociationId"]

    calls = []
    removed = teardown.remove(recorded(aws, calls), CLUSTER, ["elastic_ip"])
    assert sorted(removed) == sorted([("elastic_ip", associated), ("elastic_ip", spare)])
    changes = [(name, params) for name, params in calls if not name.startswith("Describe")]
    assert changes[0] == ("DisassociateAddress", {"AssociationId": association})
    released = sorted(params["AllocationId"] for name, params in changes[1:] if name == "ReleaseAddress")
    assert len(changes) == 3 and released == sorted([associated, spare])
    assert [a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]] == [foreign]
    # Released meanwhile (by someone else, or a previous interrupted run): nothing to do.
    teardown.delete_elastic_ips(teardown.Api(aws.client), [associated])


def test_elastic_ips_go_after_the_instances_and_before_the_gateway():
    kinds = teardown.LAYER_KINDS["infrastructure"]
    assert kinds.index("instance") < kinds.index("elastic_ip") < kinds.index("internet_gateway")
