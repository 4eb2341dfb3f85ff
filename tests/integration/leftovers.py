"""What of a cluster is still on the AWS endpoint: every kind a destroy must leave empty."""

from __future__ import annotations

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


def owned(cluster):
    return [{"Name": f"tag:kubernetes.io/cluster/{cluster}", "Values": ["owned"]}]


def leftovers(aws, cluster):
    """{kind: [ids]} of the cluster's resources still there; empty when a destroy left nothing."""
    ec2, iam = aws.client("ec2"), aws.client("iam")
    found = {
        "instances": [
            i["InstanceId"]
            for r in ec2.describe_instances(
                Filters=[*owned(cluster), {"Name": "instance-state-name", "Values": LIVE_STATES}]
            )["Reservations"]
            for i in r["Instances"]
        ],
        "addresses": [a["AllocationId"] for a in ec2.describe_addresses(Filters=owned(cluster))["Addresses"]],
    }
    for describe, key, id_key in (
        (ec2.describe_vpcs, "Vpcs", "VpcId"),
        (ec2.describe_subnets, "Subnets", "SubnetId"),
        (ec2.describe_security_groups, "SecurityGroups", "GroupId"),
        (ec2.describe_route_tables, "RouteTables", "RouteTableId"),
        (ec2.describe_internet_gateways, "InternetGateways", "InternetGatewayId"),
        (ec2.describe_launch_templates, "LaunchTemplates", "LaunchTemplateId"),
        (ec2.describe_key_pairs, "KeyPairs", "KeyName"),
    ):
        found[key] = [item[id_key] for item in describe(Filters=owned(cluster))[key]]
    path = f"/helix/{cluster}/"
    found["roles"] = [r["RoleName"] for r in iam.list_roles(PathPrefix=path)["Roles"]]
    found["instance_profiles"] = [
        p["InstanceProfileName"] for p in iam.list_instance_profiles(PathPrefix=path)["InstanceProfiles"]
    ]
    found["repositories"] = [
        r["repositoryName"]
        for r in aws.client("ecr").describe_repositories()["repositories"]
        if r["repositoryName"].startswith(f"{cluster}/")
    ]
    found["buckets"] = [
        b["Name"] for b in aws.client("s3").list_buckets()["Buckets"] if b["Name"].startswith(f"{cluster}-")
    ]
    return {kind: ids for kind, ids in found.items() if ids}
