# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Find a cluster's AWS resources by its ownership tag and delete them in dependency order.

Each kind is a pair of functions: find(api, cluster) -> [id] and delete(api, id). A layer is an
ordered list of kinds; what a later kind needs gone (an instance holding a security group, a
subnet holding a route table association) comes earlier in the list. The S3 bucket is the one
kind not searched for: S3 can filter neither by tag nor by name, so the caller names it.
"""

from __future__ import annotations

import random
import time

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import BotoCoreError, ClientError, error_code
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.s3_versions import delete_versions
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.tagging import cluster_filter, cluster_tag_key, to_dict
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.waiters import wait

LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


def iam_path(cluster_name):
    """IAM has no tag filter; the cluster's roles and instance profiles live under this path."""
    return f"/helix/{cluster_name}/"


class Api:
    """Clients made on first use, so a layer only connects to the services it touches."""

    def __init__(self, client_factory):
        self._factory = client_factory
        self._clients = {}

    def __getattr__(self, service):
        if service.startswith("_"):
            raise AttributeError(service)
        if service not in self._clients:
            self._clients[service] = self._factory(service)
        return self._clients[service]


def _ec2_ids(api, operation, result_key, id_key, cluster, extra_filters=()):
    paginator = api.ec2.get_paginator(operation)
    filters = [cluster_filter(cluster), *extra_filters]
    return [item[id_key] for page in paginator.paginate(Filters=filters) for item in page[result_key]]


def _ignore_missing(call, *missing_codes):
    try:
        call()
    except (BotoCoreError, ClientError) as e:
        if error_code(e) not in missing_codes:
            raise


def _retry_while_in_use(call, timeout=300):
    """Retry on DependencyViolation with jittered back-off, until timeout seconds have passed.

    What AWS removes by itself after a delete (the network interfaces of a load balancer, the
    attachments of a terminated instance) goes a while later, and holds security groups, subnets
    and gateways until it has gone.
    """
    deadline = time.monotonic() + timeout
    delay = 2.0
    while True:
        try:
            return call()
        except (BotoCoreError, ClientError) as e:
            if error_code(e) != "DependencyViolation" or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, 30.0)


def _batches(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- Load balancers made by the cluster (Services of type LoadBalancer) ----------------------

# describe_tags of ELB and ELBv2 takes at most 20 resources per call.
TAG_BATCH = 20


def _owned(tags, cluster):
    return to_dict(tags).get(cluster_tag_key(cluster)) == "owned"


def find_load_balancers(api, cluster):
    """ELBv2 (network and application) load balancers carrying the cluster tag, by ARN."""
    paginator = api.elbv2.get_paginator("describe_load_balancers")
    arns = [lb["LoadBalancerArn"] for page in paginator.paginate() for lb in page["LoadBalancers"]]
    return _owned_elbv2(api, arns, cluster)


def find_target_groups(api, cluster):
    """ELBv2 target groups carrying the cluster tag, by ARN."""
    paginator = api.elbv2.get_paginator("describe_target_groups")
    arns = [tg["TargetGroupArn"] for page in paginator.paginate() for tg in page["TargetGroups"]]
    return _owned_elbv2(api, arns, cluster)


def _owned_elbv2(api, arns, cluster):
    owned = []
    for batch in _batches(arns, TAG_BATCH):
        for description in api.elbv2.describe_tags(ResourceArns=batch)["TagDescriptions"]:
            if _owned(description.get("Tags"), cluster):
                owned.append(description["ResourceArn"])
    return owned


def delete_load_balancers(api, arns, timeout=600):
    for arn in arns:
        _ignore_missing(lambda arn=arn: api.elbv2.delete_load_balancer(LoadBalancerArn=arn), "LoadBalancerNotFound")
    wait(api.elbv2, "load_balancers_deleted", timeout, LoadBalancerArns=arns)


def delete_target_group(api, arn):
    _ignore_missing(lambda: api.elbv2.delete_target_group(TargetGroupArn=arn), "TargetGroupNotFound")


def find_classic_load_balancers(api, cluster):
    """Classic ELBs carrying the cluster tag, by name (what the in-tree AWS cloud provider makes)."""
    paginator = api.elb.get_paginator("describe_load_balancers")
    names = [lb["LoadBalancerName"] for page in paginator.paginate() for lb in page["LoadBalancerDescriptions"]]
    owned = []
    for batch in _batches(names, TAG_BATCH):
        for description in api.elb.describe_tags(LoadBalancerNames=batch)["TagDescriptions"]:
            if _owned(description.get("Tags"), cluster):
                owned.append(description["LoadBalancerName"])
    return owned


def delete_classic_load_balancer(api, name):
    api.elb.delete_load_balancer(LoadBalancerName=name)


# --- EC2 -------------------------------------------------------------------------------------


def find_instances(api, cluster):
    paginator = api.ec2.get_paginator("describe_instances")
    filters = [cluster_filter(cluster), {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}]
    return [
        i["InstanceId"]
        for page in paginator.paginate(Filters=filters)
        for r in page["Reservations"]
        for i in r["Instances"]
    ]


def delete_instances(api, ids, timeout=600):
    """Instances go in one call and one wait, not one per node."""
    api.ec2.terminate_instances(InstanceIds=ids)
    wait(api.ec2, "instance_terminated", timeout, InstanceIds=ids)


def find_elastic_ips(api, cluster):
    """Elastic IPs by allocation id (DescribeAddresses has no pages: a region holds a handful)."""
    return [a["AllocationId"] for a in api.ec2.describe_addresses(Filters=[cluster_filter(cluster)])["Addresses"]]


def delete_elastic_ips(api, ids):
    """An address still associated holds the internet gateway: it is disassociated, then released."""
    addresses = api.ec2.describe_addresses(Filters=[{"Name": "allocation-id", "Values": ids}])["Addresses"]
    for association_id in [a["AssociationId"] for a in addresses if a.get("AssociationId")]:
        _ignore_missing(
            lambda association_id=association_id: api.ec2.disassociate_address(AssociationId=association_id),
            "InvalidAssociationID.NotFound",
        )
    for allocation_id in ids:
        _ignore_missing(
            lambda allocation_id=allocation_id: api.ec2.release_address(AllocationId=allocation_id),
            "InvalidAllocationID.NotFound",
        )


def find_launch_templates(api, cluster):
    return _ec2_ids(api, "describe_launch_templates", "LaunchTemplates", "LaunchTemplateId", cluster)


def delete_launch_template(api, template_id):
    api.ec2.delete_launch_template(LaunchTemplateId=template_id)


def find_security_groups(api, cluster):
    return _ec2_ids(api, "describe_security_groups", "SecurityGroups", "GroupId", cluster)


def revoke_cross_references(api, group_ids):
    """Groups that name each other in rules cannot be deleted until those rules are gone."""
    if not group_ids:
        return
    groups = api.ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"]
    for group in groups:
        referencing = [p for p in group.get("IpPermissions", []) if p.get("UserIdGroupPairs")]
        if referencing:
            api.ec2.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=referencing)


def delete_security_group(api, group_id):
    _retry_while_in_use(
        lambda: _ignore_missing(lambda: api.ec2.delete_security_group(GroupId=group_id), "InvalidGroup.NotFound")
    )


def find_network_interfaces(api, cluster):
    return _ec2_ids(
        api,
        "describe_network_interfaces",
        "NetworkInterfaces",
        "NetworkInterfaceId",
        cluster,
        [{"Name": "status", "Values": ["available"]}],
    )


def delete_network_interface(api, eni_id):
    _ignore_missing(
        lambda: api.ec2.delete_network_interface(NetworkInterfaceId=eni_id), "InvalidNetworkInterfaceID.NotFound"
    )


def find_volumes(api, cluster):
    """Detached volumes, and attached ones that outlive their instance (the volumes of PersistentVolumeClaims).

    Volumes that go with their instance (DeleteOnTermination, the root volumes) are left to it.
    """
    paginator = api.ec2.get_paginator("describe_volumes")
    filters = [cluster_filter(cluster), {"Name": "status", "Values": ["available", "in-use"]}]
    return [
        volume["VolumeId"]
        for page in paginator.paginate(Filters=filters)
        for volume in page["Volumes"]
        if not any(a.get("DeleteOnTermination") for a in volume.get("Attachments", []))
    ]


def delete_volumes(api, ids, timeout=300):
    """A volume still detaching from a terminated instance is waited for, then deleted."""
    attached = [
        v["VolumeId"]
        for v in api.ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": ids}])["Volumes"]
        if v["State"] != "available"
    ]
    if attached:
        wait(api.ec2, "volume_available", timeout, VolumeIds=attached)
    for volume_id in ids:
        _ignore_missing(lambda volume_id=volume_id: api.ec2.delete_volume(VolumeId=volume_id), "InvalidVolume.NotFound")


def find_subnets(api, cluster):
    return _ec2_ids(api, "describe_subnets", "Subnets", "SubnetId", cluster)


def delete_subnet(api, subnet_id):
    _retry_while_in_use(lambda: api.ec2.delete_subnet(SubnetId=subnet_id))


def find_route_tables(api, cluster):
    paginator = api.ec2.get_paginator("describe_route_tables")
    return [
        table["RouteTableId"]
        for page in paginator.paginate(Filters=[cluster_filter(cluster)])
        for table in page["RouteTables"]
        if not any(a.get("Main") for a in table.get("Associations", []))
    ]


def delete_route_table(api, table_id):
    table = api.ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]
    for association in table.get("Associations", []):
        api.ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
    api.ec2.delete_route_table(RouteTableId=table_id)


def find_internet_gateways(api, cluster):
    return _ec2_ids(api, "describe_internet_gateways", "InternetGateways", "InternetGatewayId", cluster)


def delete_internet_gateway(api, gateway_id):
    gateway = api.ec2.describe_internet_gateways(InternetGatewayIds=[gateway_id])["InternetGateways"][0]
    for attachment in gateway.get("Attachments", []):
        _retry_while_in_use(
            lambda vpc=attachment["VpcId"]: api.ec2.detach_internet_gateway(InternetGatewayId=gateway_id, VpcId=vpc)
        )
    api.ec2.delete_internet_gateway(InternetGatewayId=gateway_id)


def find_vpcs(api, cluster):
    return _ec2_ids(api, "describe_vpcs", "Vpcs", "VpcId", cluster)


def delete_vpc(api, vpc_id):
    _retry_while_in_use(lambda: api.ec2.delete_vpc(VpcId=vpc_id))


def find_key_pairs(api, cluster):
    response = api.ec2.describe_key_pairs(Filters=[cluster_filter(cluster)])
    return [k["KeyName"] for k in response["KeyPairs"]]


def delete_key_pair(api, key_name):
    api.ec2.delete_key_pair(KeyName=key_name)


# --- IAM -------------------------------------------------------------------------------------


def find_instance_profiles(api, cluster):
    paginator = api.iam.get_paginator("list_instance_profiles")
    return [
        p["InstanceProfileName"]
        for page in paginator.paginate(PathPrefix=iam_path(cluster))
        for p in page["InstanceProfiles"]
    ]


def delete_instance_profile(api, name):
    profile = api.iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    for role in profile.get("Roles", []):
        api.iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=role["RoleName"])
    api.iam.delete_instance_profile(InstanceProfileName=name)


def find_roles(api, cluster):
    paginator = api.iam.get_paginator("list_roles")
    return [r["RoleName"] for page in paginator.paginate(PathPrefix=iam_path(cluster)) for r in page["Roles"]]


def delete_role(api, name):
    for policy in api.iam.list_role_policies(RoleName=name)["PolicyNames"]:
        api.iam.delete_role_policy(RoleName=name, PolicyName=policy)
    for policy in api.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        api.iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    api.iam.delete_role(RoleName=name)


# --- ECR and S3 ------------------------------------------------------------------------------


def find_repositories(api, cluster):
    """ECR cannot filter by tag: look at the cluster's name prefix, then confirm the tag."""
    paginator = api.ecr.get_paginator("describe_repositories")
    owned = []
    for page in paginator.paginate():
        for repo in page["repositories"]:
            if not repo["repositoryName"].startswith(f"{cluster}/"):
                continue
            tags = api.ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags", [])
            if to_dict(tags).get(cluster_tag_key(cluster)) == "owned":
                owned.append(repo["repositoryName"])
    return owned


def delete_repository(api, name):
    api.ecr.delete_repository(repositoryName=name, force=True)


def find_bucket(api, cluster, bucket):
    """The bucket of exactly that name, if it carries the cluster tag; without a name, none.

    Buckets are never listed and matched by name: a look-alike (`demo2-...` for cluster `demo`)
    may be another team's, and asking for its tags may be refused.
    """
    if not bucket:
        return []
    try:
        tags = api.s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    except (BotoCoreError, ClientError) as e:
        if error_code(e) in ("NoSuchTagSet", "NoSuchBucket"):
            return []
        raise
    return [bucket] if _owned(tags, cluster) else []


def delete_bucket(api, name):
    """Every object version and delete marker goes first."""
    delete_versions(api.s3, name)
    api.s3.delete_bucket(Bucket=name)


# --- Layers ----------------------------------------------------------------------------------

# (kind, find, delete one, delete many): kinds in dependency order within each layer.
KINDS = {
    "classic_load_balancer": (find_classic_load_balancers, delete_classic_load_balancer, None),
    "load_balancer": (find_load_balancers, None, delete_load_balancers),
    "target_group": (find_target_groups, delete_target_group, None),
    "instance": (find_instances, None, delete_instances),
    "elastic_ip": (find_elastic_ips, None, delete_elastic_ips),
    "launch_template": (find_launch_templates, delete_launch_template, None),
    "instance_profile": (find_instance_profiles, delete_instance_profile, None),
    "iam_role": (find_roles, delete_role, None),
    "network_interface": (find_network_interfaces, delete_network_interface, None),
    "volume": (find_volumes, None, delete_volumes),
    "security_group": (find_security_groups, delete_security_group, None),
    "subnet": (find_subnets, delete_subnet, None),
    "route_table": (find_route_tables, delete_route_table, None),
    "internet_gateway": (find_internet_gateways, delete_internet_gateway, None),
    "vpc": (find_vpcs, delete_vpc, None),
    "key_pair": (find_key_pairs, delete_key_pair, None),
    "ecr_repository": (find_repositories, delete_repository, None),
    "s3_bucket": (find_bucket, delete_bucket, None),
}

LAYER_KINDS = {
    # What the cluster made in AWS (load balancers of Services, volumes of PersistentVolumeClaims)
    # carries the cluster tag too, so it is swept with the layer that holds it up, first.
    "infrastructure": [
        "classic_load_balancer",
        "load_balancer",
        "target_group",
        "instance",
        "elastic_ip",
        "launch_template",
        "instance_profile",
        "iam_role",
        "network_interface",
        "volume",
        "security_group",
        "subnet",
        "route_table",
        "internet_gateway",
        "vpc",
    ],
    "bootstrap": ["key_pair", "ecr_repository", "s3_bucket"],
}


def find(api, cluster, kinds, bucket=None):
    """(kind, id) of what the cluster owns, in the order of kinds; bucket names the S3 bucket."""
    return [(kind, resource_id) for kind in kinds for resource_id in _find_kind(api, cluster, kind, bucket)]


def _find_kind(api, cluster, kind, bucket):
    finder = KINDS[kind][0]
    return finder(api, cluster, bucket) if kind == "s3_bucket" else finder(api, cluster)


def remove(api, cluster, kinds, bucket=None):
    """Find and delete kind by kind, so what an earlier kind frees (a volume detached from a
    terminated instance, an interface released by a load balancer) is found and swept too."""
    removed = []
    for kind in kinds:
        found = find(api, cluster, [kind], bucket)
        delete(api, found)
        removed.extend(found)
    return removed


def delete(api, found):
    """Delete what find() returned, in its order; groups are unlinked from each other first."""
    by_kind = {}
    for kind, resource_id in found:
        by_kind.setdefault(kind, []).append(resource_id)
    for kind, ids in by_kind.items():
        _find, delete_one, delete_many = KINDS[kind]
        if kind == "security_group":
            revoke_cross_references(api, ids)
        if delete_many:
            delete_many(api, ids)
        else:
            for resource_id in ids:
                delete_one(api, resource_id)
