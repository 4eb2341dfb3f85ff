"""Every job template of awx/configure.yml, run the way AWX runs it, against the local AWS endpoint.

The templates, their extra_vars and surveys are what awx/configure.yml builds (tests/integration/
awx_config.py). Each job is launched with survey answers as AWX sends them (awx_launch.py) and run by
ansible-runner in a private data directory of its own (awx_job.py): a copy of the project, an
inventory holding what an AWX inventory for the local endpoint would, and the collection installed
from its built artifact, as the execution environment holds it. Nothing on disk survives between
jobs; what must (the generated SSH key) is kept in the cluster's bucket by the collection.
Each job's result is checked through the AWS API. The cluster and application layers are skipped
on the local endpoint (lifecycle_skip_layers): their jobs prove the templates run and plan.
"""

from __future__ import annotations

import pytest
import yaml

from tests.ansible_run import RECORDS_ONLY_SKIP, ROOT
from tests.aws_endpoint import CREDENTIALS, REGION
from tests.integration.awx_config import configured
from tests.integration.awx_job import copy_tracked_files, install_collection, run_job
from tests.integration.awx_launch import launch_extra_vars
from tests.integration.leftovers import leftovers, owned

pytestmark = pytest.mark.slow

CLUSTER = "awx-jobs"
ADMIN_CIDRS = ["127.0.0.0/8", "192.0.2.0/24"]
# What a user types into the survey; each job answers the questions its template asks.
ANSWERS = {"cluster_name": CLUSTER, "aws_region": REGION, "admin_cidrs": ",".join(ADMIN_CIDRS), "worker_count": 2}
# What an AWX inventory for the local endpoint holds, beyond the endpoint and its credentials.
LOCAL = yaml.safe_load((ROOT / "inventories/local/group_vars/all/main.yml").read_text())
INVENTORY_VARIABLES = ("ami_ssm_parameter", "nodes_connect_via")


class Controller:
    """AWX for these tests: one project, one execution environment, one inventory, jobs run in order."""

    def __init__(self, aws, templates, work_dir):
        self.aws, self.templates, self.work_dir = aws, templates, work_dir
        self.project = copy_tracked_files(work_dir / "project")
        self.collections = install_collection(self.project, work_dir / "ee")
        self.inventory_vars = {
            "aws_endpoint_url": aws.url,
            "aws_access_key": CREDENTIALS["aws_access_key_id"],
            "aws_secret_key": CREDENTIALS["aws_secret_access_key"],
            **{name: LOCAL[name] for name in INVENTORY_VARIABLES},
            "lifecycle_skip_layers": RECORDS_ONLY_SKIP,
        }
        self.envvars = {
            "AWS_CA_BUNDLE": aws.ca_bundle,
            "HELIX_AWS_ENDPOINT_URL": aws.url,
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
        }
        self.jobs = []

    def launch(self, layer, operation, **answers):
        failed = [job.template for job in self.jobs if job.status != "successful"]
        if failed:
            pytest.skip(f"an earlier job failed: {failed}")
        template = self.templates[layer, operation]
        given = {**ANSWERS, **answers}
        asked = {q["variable"] for q in template["survey_spec"]["spec"]}
        extra_vars = launch_extra_vars(template, {k: v for k, v in given.items() if k in asked})
        job = run_job(
            self.work_dir / f"job-{len(self.jobs) + 1}",
            self.project,
            template,
            extra_vars,
            self.inventory_vars,
            self.envvars,
        )
        self.jobs.append(job)
        assert job.status == "successful", job.stdout[-6000:]
        assert job.rc == 0
        # The roles come from the installed artifact, not from the project or the checkout.
        paths = job.role_task_paths()
        assert all(path.startswith(str(self.collections)) for path in paths), sorted(set(paths))
        return job


@pytest.fixture(scope="module")
def templates():
    facts, _tasks = configured()
    return {(t["layer"], t["operation"]): t for t in facts["awx_job_templates"]}


@pytest.fixture(scope="module")
def awx(aws, templates, tmp_path_factory):
    return Controller(aws, templates, tmp_path_factory.mktemp("awx"))


def state_dir(job):
    """Where a job's run keeps the cluster's state: the default state_dir under the job's HOME."""
    return job.private_data_dir / ".local" / "state" / "helix" / CLUSTER


def fingerprint(aws):
    (pair,) = aws.client("ec2").describe_key_pairs(KeyNames=[CLUSTER])["KeyPairs"]
    return pair["KeyFingerprint"]


def bucket(aws):
    return f"{CLUSTER}-{aws.client('sts').get_caller_identity()['Account']}-{REGION}"


def vpc_ids(aws):
    return [v["VpcId"] for v in aws.client("ec2").describe_vpcs(Filters=owned(CLUSTER))["Vpcs"]]


def ssh_cidrs(aws):
    groups = aws.client("ec2").describe_security_groups(Filters=owned(CLUSTER))["SecurityGroups"]
    return sorted(
        r["CidrIp"] for g in groups for p in g["IpPermissions"] if p.get("FromPort") == 22 for r in p["IpRanges"]
    )


def test_bootstrap_update_creates_every_layer(aws, awx):
    """The first job, as the site workflow: bootstrap and infrastructure made, cluster and application skipped."""
    job = awx.launch("bootstrap", "update")
    found = leftovers(aws, CLUSTER)
    assert sorted(found["repositories"]) == [f"{CLUSTER}/{name}" for name in ("api", "db", "ui")]
    assert found["buckets"] == [bucket(aws)] and found["KeyPairs"] == [CLUSTER]
    assert len(found["Vpcs"]) == 1
    assert len(found["instances"]) == 1 + ANSWERS["worker_count"]
    assert ssh_cidrs(aws) == ADMIN_CIDRS, "admin_cidrs, comma-separated text in the survey, became a list"
    stored = aws.client("s3").get_object(Bucket=bucket(aws), Key="state/id_ed25519")["Body"].read()
    assert stored == (state_dir(job) / "id_ed25519").read_bytes()


def test_a_second_bootstrap_job_keeps_the_key(aws, awx):
    first_key = (state_dir(awx.jobs[-1]) / "id_ed25519").read_bytes()
    key, vpcs = fingerprint(aws), vpc_ids(aws)
    job = awx.launch("bootstrap", "create")
    assert fingerprint(aws) == key
    assert (state_dir(job) / "id_ed25519").read_bytes() == first_key, "not brought back from the bucket"
    assert vpc_ids(aws) == vpcs


@pytest.mark.parametrize("layer", ["cluster", "application"])
def test_create_of_a_skipped_layer_plans_and_changes_nothing(aws, awx, layer):
    before = leftovers(aws, CLUSTER)
    job = awx.launch(layer, "create")
    assert f"create {layer} - skipped (lifecycle_skip_layers)" in job.stdout
    assert leftovers(aws, CLUSTER) == before


def test_infrastructure_update_scales_with_the_survey(aws, awx):
    vpcs = vpc_ids(aws)
    awx.launch("infrastructure", "update", worker_count=3)
    assert vpc_ids(aws) == vpcs
    assert len(leftovers(aws, CLUSTER)["instances"]) == 1 + 3


@pytest.mark.parametrize(
    ("layer", "operation"),
    [
        ("application", "update"),
        ("cluster", "update"),
        ("application", "recreate"),
        ("cluster", "recreate"),
        ("application", "delete"),
        ("cluster", "delete"),
    ],
)
def test_operations_on_skipped_layers_leave_the_infrastructure(aws, awx, layer, operation):
    before = leftovers(aws, CLUSTER)
    job = awx.launch(layer, operation)
    assert f"{layer} - skipped (lifecycle_skip_layers)" in job.stdout
    assert leftovers(aws, CLUSTER) == before


def test_infrastructure_recreate(aws, awx):
    vpcs = vpc_ids(aws)
    awx.launch("infrastructure", "recreate")
    assert len(vpc_ids(aws)) == 1 and vpc_ids(aws) != vpcs
    assert len(leftovers(aws, CLUSTER)["instances"]) == 1 + ANSWERS["worker_count"]


def test_infrastructure_delete_keeps_bootstrap(aws, awx):
    key = fingerprint(aws)
    awx.launch("infrastructure", "delete")
    assert set(leftovers(aws, CLUSTER)) == {"KeyPairs", "repositories", "buckets"}
    assert fingerprint(aws) == key


def test_infrastructure_create(aws, awx):
    key = fingerprint(aws)
    awx.launch("infrastructure", "create")
    found = leftovers(aws, CLUSTER)
    assert len(found["Vpcs"]) == 1
    assert len(found["instances"]) == 1 + ANSWERS["worker_count"]
    assert ssh_cidrs(aws) == ADMIN_CIDRS
    assert fingerprint(aws) == key


def test_bootstrap_recreate(aws, awx):
    vpcs, key = vpc_ids(aws), fingerprint(aws)
    job = awx.launch("bootstrap", "recreate")
    assert len(vpc_ids(aws)) == 1 and vpc_ids(aws) != vpcs
    assert fingerprint(aws) != key, "the old key pair went with its private key"
    stored = aws.client("s3").get_object(Bucket=bucket(aws), Key="state/id_ed25519")["Body"].read()
    assert stored == (state_dir(job) / "id_ed25519").read_bytes()


def test_bootstrap_delete_leaves_nothing(aws, awx):
    awx.launch("bootstrap", "delete")
    assert leftovers(aws, CLUSTER) == {}


def test_every_job_template_ran(awx, templates):
    ran = {job.template for job in awx.jobs}
    assert ran == {t["name"] for t in templates.values()}
    assert all(job.status == "successful" for job in awx.jobs)
    durations = "\n".join(f"  {job.seconds:6.1f} s  {job.template}" for job in awx.jobs)
    print(f"\n{len(awx.jobs)} jobs, {sum(job.seconds for job in awx.jobs):.0f} s:\n{durations}")
