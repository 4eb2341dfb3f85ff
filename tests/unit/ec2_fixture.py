"""A minimal network and launch template on the local endpoint, made with boto3 directly."""

from __future__ import annotations


def make_network(ec2, cluster):
    vpc_id = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.42.{i * 16}.0/20", AvailabilityZone=f"us-east-1{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("abc")
    ]
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    name = f"{cluster}-worker"
    ec2.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": image_id, "InstanceType": "t3.medium"}
    )
    return {"vpc_id": vpc_id, "subnet_ids": subnet_ids, "launch_template": name}
