"""State survives runs: each run here has an empty state directory of its own, as each AWX job has.

A second bootstrap keeps the first key pair and its private key (kept in the cluster's bucket); a
lost private key stops bootstrap before anything changes; an application run on a fresh machine
finds its cluster through the kubeconfig kept in the bucket.
"""

from __future__ import annotations

import pytest

from tests.ansible_run import run_playbook

pytestmark = pytest.mark.slow

CLUSTER = "jobs"


def bootstrap(aws, state_dir, **extra):
    return run_playbook(
        "playbooks/bootstrap.yml", aws.url, {"cluster_name": CLUSTER, "state_dir": str(state_dir), **extra}
    )


def key_pair(aws):
    (pair,) = aws.client("ec2").describe_key_pairs(KeyNames=[CLUSTER])["KeyPairs"]
    return pair["KeyFingerprint"]


def bucket(aws):
    return f"{CLUSTER}-{aws.client('sts').get_caller_identity()['Account']}-us-east-1"


@pytest.fixture(scope="module")
def first_job(aws, tmp_path_factory):
    state = tmp_path_factory.mktemp("job-1")
    run = bootstrap(aws, state)
    assert run.returncode == 0, run.output
    return state, key_pair(aws)


def test_a_second_bootstrap_job_keeps_the_first_key(aws, first_job, tmp_path):
    first_state, fingerprint = first_job
    run = bootstrap(aws, tmp_path)
    assert run.returncode == 0, run.output
    assert key_pair(aws) == fingerprint
    assert (tmp_path / "id_ed25519").read_bytes() == (first_state / "id_ed25519").read_bytes()
    assert (tmp_path / "id_ed25519").stat().st_mode & 0o777 == 0o600
    assert tmp_path.stat().st_mode & 0o777 == 0o700


def test_a_lost_private_key_stops_bootstrap_before_any_change(aws, first_job, tmp_path):
    _state, fingerprint = first_job
    s3 = aws.client("s3")
    for version in s3.list_object_versions(Bucket=bucket(aws), Prefix="state/id_ed25519")["Versions"]:
        s3.delete_object(Bucket=bucket(aws), Key=version["Key"], VersionId=version["VersionId"])
    run = bootstrap(aws, tmp_path)
    assert run.returncode != 0
    flat = " ".join(run.output.split())
    assert f"Key pair {CLUSTER} exists, but its private key is neither at {tmp_path / 'id_ed25519'}" in flat
    assert "ssh_public_key_file" in flat
    assert key_pair(aws) == fingerprint
    assert not (tmp_path / "id_ed25519").exists()


def test_an_application_job_finds_its_cluster_through_the_bucket(aws, first_job, kube_control_plane, tmp_path):
    aws.client("s3").put_object(
        Bucket=bucket(aws),
        Key="state/kubeconfig",
        Body=open(kube_control_plane.kubeconfig, "rb").read(),  # noqa: SIM115
        ServerSideEncryption="AES256",
    )
    extra = {"lifecycle_skip_layers": [], "application_namespace": "jobs-app", "lifecycle_action": "delete"}
    run = run_playbook(
        "playbooks/application.yml", aws.url, {"cluster_name": CLUSTER, "state_dir": str(tmp_path), **extra}
    )
    assert run.returncode == 0, run.output
    assert (tmp_path / "kubeconfig").read_bytes() == open(kube_control_plane.kubeconfig, "rb").read()  # noqa: SIM115
    assert "Delete the namespace with everything in it" in run.output
