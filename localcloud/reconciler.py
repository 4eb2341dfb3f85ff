"""The local cloud's EC2 data plane: every pending or running instance of the local AWS endpoint boots.

The reconciler watches the endpoint (DescribeInstances) and, for each instance that should run,
boots a node (localcloud/node.sh) with the instance's identity:
  - its private IP on a bridge for its VPC, on which the host holds each subnet's gateway (.1), so
    the controller reaches the node at that address; the VPC's whole range routes to the bridge;
  - hostname = PrivateDnsName; the AMI's login user with the key pair's public key;
  - IMDS at 169.254.169.254 inside the node (AWS's ec2-metadata-mock), IMDSv2 as the launch template
    asks, with temporary credentials of the instance profile's role from the endpoint's STS, renewed
    before they expire;
  - the AWS API under its real host names (/etc/hosts) at the VPC's base+2 address (where AWS puts
    its resolver), forwarded to the endpoint on loopback, and the account's ECR registry host at base+3,
    forwarded to the local registry (localcloud/registry.sh); the endpoint's certificate, which names
    both, in its trust store.
An instance that is no longer pending or running loses its node and everything the node used on the
host. On SIGTERM every node and bridge is removed. Nothing here sends a packet to a public IP.

    python localcloud/reconciler.py --endpoint https://127.0.0.1:5055 --ca-bundle .cache/moto/cert.pem

Administrator credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import boto3

HERE = Path(__file__).resolve().parent
# One directory per endpoint (localcloud.sh passes /run/helix-localcloud/<port>): a data plane only
# ever sees, keeps and removes its own nodes and bridges. node.sh reads the same variable.
STATE = Path(os.environ.get("HELIX_LOCALCLOUD_STATE", "/run/helix-localcloud/default"))
CACHE = Path(os.environ.get("HELIX_CACHE_DIR", Path.home() / ".cache/helix"))
IMDS_MOCK = CACHE / "localcloud/bin/ec2-metadata-mock"
RUNNING = ("pending", "running")
CREDENTIAL_SECONDS = 3600
RENEW_BEFORE = datetime.timedelta(minutes=15)
# The login user an AMI family's images come with, by a word of the image name (as EC2's AMIs do).
AMI_USERS = (("ubuntu", "ubuntu"), ("debian", "admin"), ("rhel", "ec2-user"))
AWS_SERVICES = ("ec2", "sts", "s3", "iam", "ssm", "ecr", "api.ecr", "elasticloadbalancing", "autoscaling")

log = logging.getLogger("localcloud")


def run(*command, check=True):
    return subprocess.run(command, check=check, capture_output=True, text=True).stdout.strip()


def short(resource_id):
    return resource_id.rsplit("-", 1)[-1][-8:]


class Forwarder(threading.Thread):
    """TCP from a VPC's API address to the endpoint on loopback (a VPC interface endpoint, in effect)."""

    def __init__(self, listen, target):
        super().__init__(daemon=True)
        self.target = target
        self.server = socket.create_server(listen, reuse_port=False)
        self.server.settimeout(1)
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                client = self.server.accept()[0]
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self):
        self.stopped.set()
        self.server.close()


class LocalCloud:
    def __init__(self, endpoint, ca_bundle, registry_port):
        self.registry_port = registry_port
        self.ca_bundle = Path(ca_bundle).resolve()
        self.endpoint_port = urlparse(endpoint).port or 443
        session = boto3.session.Session()
        self.region = session.region_name or "us-east-1"
        options = {"endpoint_url": endpoint, "verify": str(self.ca_bundle), "region_name": self.region}
        self.ec2 = session.client("ec2", **options)
        self.iam = session.client("iam", **options)
        self.sts = session.client("sts", **options)
        self.s3 = session.client("s3", **options)
        self.forwarders = {}
        self.bridge_lock = threading.Lock()
        self.failed = {}
        for directory in ("nodes", "bridges"):
            (STATE / directory).mkdir(parents=True, exist_ok=True)

    # --- the loop ---------------------------------------------------------------------------------

    def wanted(self):
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": list(RUNNING)}]
        )
        return {i["InstanceId"]: i for page in pages for r in page["Reservations"] for i in r["Instances"]}

    def booted(self):
        return {
            p.name: json.loads((p / "node.json").read_text())
            for p in (STATE / "nodes").glob("i-*")
            if (p / "node.json").exists()
        }

    def reconcile(self):
        wanted, booted = self.wanted(), self.booted()
        with ThreadPoolExecutor(max_workers=8) as pool:
            for instance_id in booted.keys() - wanted.keys():
                pool.submit(self.terminate, instance_id, booted[instance_id])
            for instance_id in wanted.keys() - booted.keys():
                if self.failed.get(instance_id, 0) <= time.monotonic():
                    pool.submit(self.try_boot, wanted[instance_id])
        for instance_id, node in self.booted().items():
            if instance_id in wanted:
                self.keep_metadata(node)
        self.remove_idle_bridges()

    def shutdown(self):
        with ThreadPoolExecutor(max_workers=8) as pool:
            for instance_id, node in self.booted().items():
                pool.submit(self.terminate, instance_id, node)
        self.remove_idle_bridges(force=True)
        for directory in ("nodes", "bridges", ""):
            with contextlib.suppress(OSError):
                (STATE / directory).rmdir()

    # --- booting a node ---------------------------------------------------------------------------

    def try_boot(self, instance):
        try:
            self.boot(instance)
        except Exception as error:  # one instance that cannot boot must not stop the others
            log.error("%s: cannot boot: %s", instance["InstanceId"], error)
            self.failed[instance["InstanceId"]] = time.monotonic() + 30

    def boot(self, instance):
        instance_id = instance["InstanceId"]
        template = self.launch_template(instance)
        vpc = self.ec2.describe_vpcs(VpcIds=[instance["VpcId"]])["Vpcs"][0]
        subnet = self.ec2.describe_subnets(SubnetIds=[instance["SubnetId"]])["Subnets"][0]
        image = self.ec2.describe_images(ImageIds=[instance["ImageId"]])["Images"][0]
        key_name = instance.get("KeyName") or template.get("KeyName")
        public_key = self.ec2.describe_key_pairs(KeyNames=[key_name], IncludePublicKey=True)["KeyPairs"][0]["PublicKey"]
        node = {
            "instance_id": instance_id,
            "vpc_id": vpc["VpcId"],
            "vpc_cidr": vpc["CidrBlock"],
            "subnet_cidr": subnet["CidrBlock"],
            "private_ip": instance["PrivateIpAddress"],
            "hostname": instance["PrivateDnsName"],
            "user": next((user for word, user in AMI_USERS if word in image.get("Name", "").lower()), "ec2-user"),
            "netns": f"hx-{short(instance_id)}",
            "veth": f"hxv{short(instance_id)}",
            "bridge": f"hxb{short(vpc['VpcId'])}",
        }
        try:
            with self.bridge_lock:
                self.bridge(node)
            self.network(node)
            root = Path(run(str(HERE / "node.sh"), "root", instance_id))
            self.write_identity(root, node, public_key)
            node["metadata"] = self.metadata(instance, template, image, public_key, node)
            self.start_metadata(node)
            run(str(HERE / "node.sh"), "boot", instance_id, node["netns"])
        except Exception:
            self.terminate(instance_id, node)
            raise
        (STATE / "nodes" / instance_id / "node.json").write_text(json.dumps(node))
        log.info("%s: booted at %s (%s, user %s)", instance_id, node["private_ip"], node["hostname"], node["user"])

    def launch_template(self, instance):
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        template_id = tags.get("aws:ec2launchtemplate:id")
        if not template_id:
            return {}
        versions = self.ec2.describe_launch_template_versions(
            LaunchTemplateId=template_id, Versions=[tags.get("aws:ec2launchtemplate:version", "$Default")]
        )["LaunchTemplateVersions"]
        return versions[0]["LaunchTemplateData"]

    def bridge(self, node):
        bridge, vpc = node["bridge"], ipaddress.ip_network(node["vpc_cidr"])
        if not Path(f"/sys/class/net/{bridge}").exists():
            for route in json.loads(run("ip", "-j", "route", "show")):
                dst = route.get("dst", "default")
                if dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(vpc):
                    raise RuntimeError(f"its VPC's {vpc} overlaps the host route {dst} ({route.get('dev')})")
            run("ip", "link", "add", bridge, "type", "bridge")
            (STATE / "bridges" / bridge).touch()
            run("ip", "link", "set", bridge, "up")
            run("ip", "route", "replace", str(vpc), "dev", bridge, "metric", "1000")
        subnet = ipaddress.ip_network(node["subnet_cidr"])
        run("ip", "addr", "replace", f"{subnet[1]}/{subnet.prefixlen}", "dev", bridge)
        if bridge not in self.forwarders:
            self.forwarders[bridge] = []
            for address, port in ((vpc[2], self.endpoint_port), (vpc[3], self.registry_port)):
                run("ip", "addr", "replace", f"{address}/32", "dev", bridge)
                forwarder = Forwarder((str(address), 443), ("127.0.0.1", port))
                forwarder.start()
                self.forwarders[bridge].append(forwarder)

    def network(self, node):
        ns, veth, subnet = node["netns"], node["veth"], ipaddress.ip_network(node["subnet_cidr"])
        if ns not in run("ip", "netns", "list"):
            run("ip", "netns", "add", ns)
        if not Path(f"/sys/class/net/{veth}").exists():
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "link", "set", veth, "master", node["bridge"], "up")
        inside = ("ip", "-n", ns)
        run(*inside, "link", "set", "lo", "up")
        run(*inside, "addr", "replace", "169.254.169.254/32", "dev", "lo")
        run(*inside, "addr", "replace", f"{node['private_ip']}/{subnet.prefixlen}", "dev", "eth0")
        run(*inside, "link", "set", "eth0", "up")
        run(*inside, "route", "replace", "default", "via", str(subnet[1]))
        # The VPC's "local" route: every address of the VPC is delivered directly, across subnets.
        run(*inside, "route", "replace", node["vpc_cidr"], "dev", "eth0")

    def write_identity(self, root, node, public_key):
        vpc = ipaddress.ip_network(node["vpc_cidr"])
        api, registry = str(vpc[2]), str(vpc[3])
        account = self.sts.get_caller_identity()["Account"]
        names = [f"{s}.{self.region}.amazonaws.com" for s in AWS_SERVICES] + [
            f"{s}.amazonaws.com" for s in AWS_SERVICES
        ]
        buckets = [b["Name"] for b in self.s3.list_buckets().get("Buckets", [])]
        names += [f"{b}.s3.amazonaws.com" for b in buckets] + [f"{b}.s3.{self.region}.amazonaws.com" for b in buckets]
        hostname, user = node["hostname"], node["user"]
        (root / "etc/hostname").write_text(hostname + "\n")
        (root / "etc/hosts").write_text(
            f"127.0.0.1 localhost\n{node['private_ip']} {hostname} {hostname.split('.')[0]}\n"
            + "".join(f"{api} {name}\n" for name in names)
            + f"{registry} {account}.dkr.ecr.{self.region}.amazonaws.com\n"
        )
        (root / "etc/resolv.conf").write_text(f"nameserver {api}\n")
        (root / "etc/machine-id").write_text(node["instance_id"].split("-")[-1].ljust(32, "0")[:32] + "\n")
        ca = self.ca_bundle.read_text()
        (root / "usr/local/share/ca-certificates").mkdir(parents=True, exist_ok=True)
        (root / "usr/local/share/ca-certificates/helix-localcloud.crt").write_text(ca)
        bundle = root / "etc/ssl/certs/ca-certificates.crt"
        bundle.write_text(bundle.read_text() + ca)
        run("ssh-keygen", "-A", "-f", str(root))
        if subprocess.run(["chroot", str(root), "id", user], capture_output=True, check=False).returncode != 0:
            run("chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", user)
        (root / f"etc/sudoers.d/90-{user}").write_text(f"{user} ALL=(ALL) NOPASSWD:ALL\n")
        os.chmod(root / f"etc/sudoers.d/90-{user}", 0o440)
        ssh_dir = root / ("root" if user == "root" else f"home/{user}") / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(public_key.strip() + "\n")
        owner = run("chroot", str(root), "id", "-u", user), run("chroot", str(root), "id", "-g", user)
        for path in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, int(owner[0]), int(owner[1]))
        os.chmod(ssh_dir / "authorized_keys", 0o600)

    # --- instance metadata ------------------------------------------------------------------------

    def metadata(self, instance, template, image, public_key, node):
        values = {
            "ami-id": instance["ImageId"],
            "instance-id": instance["InstanceId"],
            "instance-type": instance["InstanceType"],
            "hostname": node["hostname"],
            "local-hostname": node["hostname"],
            "local-ipv4": node["private_ip"],
            "placement-availability-zone": instance["Placement"]["AvailabilityZone"],
            "placement-region": self.region,
            "public-ipv4": instance.get("PublicIpAddress", ""),
            "public-hostname": instance.get("PublicDnsName", ""),
            "public-key": public_key,
            "security-groups": " ".join(g["GroupName"] for g in instance.get("SecurityGroups", [])),
            "services-domain": "amazonaws.com",
        }
        identity = {
            "accountId": instance.get("OwnerId") or self.sts.get_caller_identity()["Account"],
            "imageId": image["ImageId"],
            "availabilityZone": values["placement-availability-zone"],
            "privateIp": node["private_ip"],
            "instanceId": instance["InstanceId"],
            "instanceType": instance["InstanceType"],
            "architecture": image.get("Architecture", "x86_64"),
            "region": self.region,
            "version": "2017-09-30",
        }
        profile = template.get("IamInstanceProfile") or instance.get("IamInstanceProfile") or {}
        profile_name = profile.get("Name") or profile.get("Arn", "").rsplit("/", 1)[-1]
        options = template.get("MetadataOptions", {})
        return {
            "values": values,
            "identity": identity,
            "profile": profile_name,
            "imdsv2": options.get("HttpTokens") == "required",
            "user_data": template.get("UserData", ""),
        }

    def credentials(self, profile_name, session_name):
        profile = self.iam.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"]
        role = profile["Roles"][0]
        creds = self.sts.assume_role(
            RoleArn=role["Arn"], RoleSessionName=session_name, DurationSeconds=CREDENTIAL_SECONDS
        )["Credentials"]
        return profile, role["RoleName"], creds

    def start_metadata(self, node):
        meta, instance_id = node["metadata"], node["instance_id"]
        values = dict(meta["values"])
        paths = {}
        expiration = None
        if meta["profile"]:
            profile, role, creds = self.credentials(meta["profile"], instance_id)
            expiration = creds["Expiration"]
            now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            values["iam-info"] = {
                "Code": "Success",
                "LastUpdated": now,
                "InstanceProfileArn": profile["Arn"],
                "InstanceProfileId": profile["InstanceProfileId"],
            }
            values["iam-security-credentials-role"] = role
            values["iam-security-credentials"] = {
                "Code": "Success",
                "LastUpdated": now,
                "Type": "AWS-HMAC",
                "AccessKeyId": creds["AccessKeyId"],
                "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds["SessionToken"],
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            paths["iam-security-credentials"] = f"/latest/meta-data/iam/security-credentials/{role}"
        config = {
            "imdsv2": meta["imdsv2"],
            "metadata": {"paths": paths, "values": values},
            "dynamic": {"values": {"instance-identity-document": meta["identity"]}},
            "userdata": {"values": {"userdata": meta["user_data"]}},
        }
        directory = STATE / "nodes" / instance_id
        config_file = directory / "imds.json"
        config_file.touch(mode=0o600)
        config_file.write_text(json.dumps(config))
        self.stop_metadata(instance_id)
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                node["netns"],
                str(IMDS_MOCK),
                "-c",
                str(config_file),
                "-n",
                "169.254.169.254",
                "-p",
                "80",
            ],
            stdout=(directory / "imds.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (directory / "imds.pid").write_text(str(process.pid))
        (directory / "imds.expires").write_text(expiration.isoformat() if expiration else "")

    def keep_metadata(self, node):
        directory = STATE / "nodes" / node["instance_id"]
        expires = (directory / "imds.expires").read_text() if (directory / "imds.expires").exists() else ""
        due = (
            expires
            and datetime.datetime.fromisoformat(expires) - datetime.datetime.now(datetime.timezone.utc) < RENEW_BEFORE
        )
        if due or not pid_alive(directory / "imds.pid"):
            log.info("%s: renewing instance metadata (credentials expire %s)", node["instance_id"], expires or "never")
            self.start_metadata(node)

    def stop_metadata(self, instance_id):
        pid_file = STATE / "nodes" / instance_id / "imds.pid"
        if pid_alive(pid_file):
            pid = int(pid_file.read_text())
            os.killpg(pid, signal.SIGTERM)
            for _attempt in range(50):
                if not pid_alive(pid_file):
                    break
                time.sleep(0.1)
        pid_file.unlink(missing_ok=True)

    # --- terminating ------------------------------------------------------------------------------

    def terminate(self, instance_id, node):
        self.stop_metadata(instance_id)
        subprocess.run([str(HERE / "node.sh"), "down", instance_id], check=False)
        subprocess.run(["ip", "link", "del", node["veth"]], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", node["netns"]], capture_output=True, check=False)
        log.info("%s: terminated; its node is gone", instance_id)

    def remove_idle_bridges(self, force=False):
        in_use = {node["bridge"] for node in self.booted().values()} if not force else set()
        for mark in (STATE / "bridges").glob("hxb*"):
            if mark.name in in_use:
                continue
            for forwarder in self.forwarders.pop(mark.name, []):
                forwarder.stop()
            run("ip", "link", "del", mark.name, check=False)
            mark.unlink()
            log.info("bridge %s removed (no node left on it)", mark.name)


def pid_alive(pid_file):
    """Whether the process is running; a metadata server that exited is reaped here (it is our child)."""
    try:
        pid = int(Path(pid_file).read_text())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--ca-bundle", required=True)
    parser.add_argument("--registry-port", type=int, required=True, help="ECR's data plane (localcloud/registry.sh)")
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cloud = LocalCloud(args.endpoint, args.ca_bundle, args.registry_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("watching %s", args.endpoint)
    while not stop.is_set():
        try:
            cloud.reconcile()
        except Exception as error:  # the endpoint restarting must not end the data plane
            log.error("reconcile: %s", error)
        stop.wait(args.interval)
    cloud.shutdown()
    log.info("stopped; every node removed")


if __name__ == "__main__":
    main()
