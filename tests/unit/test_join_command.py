"""helix.kubeadm_aws.join_command against a real moto S3, with a fake kubeadm on disk (tests/fake_kubeadm.py)."""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta

import pytest

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import join_command as jc
from ansible_collections.helix.kubeadm_aws.plugins.modules import join_command
from tests.module_runner import run_module

BUCKET = "helix-test-bucket"
KEY = "join/worker"


@pytest.fixture(autouse=True)
def bucket(aws):
    aws.client("s3").create_bucket(Bucket=BUCKET)


@pytest.fixture
def run(aws, capsys):
    """Run the module in-process against the local S3; returns its result."""

    def run(kubeadm=None, check_mode=False, **params):
        args = {"bucket": BUCKET, **params}
        if kubeadm is not None:
            args["kubeadm_path"] = kubeadm.executable
        return run_module(capsys, join_command, args, aws=aws, check_mode=check_mode)

    return run


def stored(aws):
    obj = aws.client("s3").get_object(Bucket=BUCKET, Key=KEY)
    return obj["Body"].read().decode().strip(), obj


def test_publish_creates_an_encrypted_object_with_expiry(aws, kubeadm, run):
    result = run(kubeadm)
    assert result["changed"] is True, result
    assert result["reason"] == "the join object is missing"
    body, obj = stored(aws)
    assert body.startswith("kubeadm join 10.0.0.10:6443 --token ")
    assert obj["ServerSideEncryption"] == "AES256"
    assert obj["Metadata"]["token-id"] == result["token_id"] == kubeadm.tokens()[0].split(".")[0]
    expires = jc.parse_time(obj["Metadata"]["expires-at"])
    assert timedelta(minutes=119) < expires - jc.now() <= timedelta(hours=2)
    assert "--ttl 2h" in kubeadm.calls()[-1]


def test_the_command_never_appears_in_the_published_result(aws, kubeadm, run):
    result = run(kubeadm)
    token = kubeadm.tokens()[0]
    assert token not in json.dumps(result)
    assert token.split(".")[1] not in json.dumps(result)


def test_publish_again_keeps_a_valid_command(aws, kubeadm, run):
    run(kubeadm)
    first, _version = stored(aws)
    result = run(kubeadm)
    assert result["changed"] is False, result
    assert stored(aws)[0] == first
    assert len(kubeadm.tokens()) == 1


def test_publish_renews_when_the_token_is_no_longer_listed(aws, kubeadm, run):
    run(kubeadm)
    first, _version = stored(aws)
    kubeadm.revoke_all()
    result = run(kubeadm)
    assert result["changed"] is True
    assert result["reason"] == "its token is no longer listed by kubeadm"
    assert stored(aws)[0] != first


def test_publish_renews_a_command_about_to_expire(aws, kubeadm, run):
    run(kubeadm, token_ttl="20m", renew_before="5m")
    result = run(kubeadm, renew_before="30m")
    assert result["changed"] is True
    assert result["reason"].startswith("it expires at ")
    assert len(kubeadm.tokens()) == 2


def test_publish_replaces_a_foreign_object(aws, kubeadm, run):
    aws.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=b"echo hello")
    result = run(kubeadm)
    assert result["changed"] is True
    assert result["reason"] == "the stored object is not a kubeadm join command"


def test_publish_check_mode_changes_nothing(aws, kubeadm, run):
    result = run(kubeadm, check_mode=True)
    assert result["changed"] is True
    assert kubeadm.tokens() == []
    with pytest.raises(aws.client("s3").exceptions.NoSuchKey):
        stored(aws)


def test_publish_with_kms(aws, kubeadm, run):
    run(kubeadm, encryption="aws:kms")
    _body, obj = stored(aws)
    assert obj["ServerSideEncryption"] == "aws:kms"


def test_publish_fails_clearly_without_kubeadm(aws, tmp_path, run):
    result = run(kubeadm_path=str(tmp_path / "missing-kubeadm"))
    assert result["failed"] is True
    assert "kubeadm token create failed" in result["msg"]


def test_fetch_returns_the_parts(aws, kubeadm, run):
    run(kubeadm)
    body, _version = stored(aws)
    result = run(state="fetched")
    assert result["changed"] is False
    assert result["command"] == body
    assert result["token"] == kubeadm.tokens()[0]
    assert result["api_server_endpoint"] == "10.0.0.10:6443"
    assert result["ca_cert_hashes"] == ["sha256:" + "ab" * 32]


def test_fetch_writes_a_root_only_file_once(aws, kubeadm, tmp_path, run):
    run(kubeadm)
    dest = tmp_path / "join-command"
    assert run(state="fetched", dest=str(dest), check_mode=True)["changed"] is True
    assert not dest.exists()
    result = run(state="fetched", dest=str(dest))
    assert result["changed"] is True
    assert "command" not in result and "token" not in result
    assert kubeadm.tokens()[0] not in json.dumps(result)
    assert dest.read_text().strip() == stored(aws)[0]
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert run(state="fetched", dest=str(dest))["changed"] is False


def test_fetch_fails_when_nothing_was_published(aws, run):
    result = run(state="fetched")
    assert result["failed"] is True
    assert "publish one on the control plane first" in result["msg"]


def test_fetch_refuses_an_expired_command(aws, kubeadm, run):
    command = "kubeadm join 10.0.0.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:00"
    aws.client("s3").put_object(
        Bucket=BUCKET, Key=KEY, Body=command.encode(), Metadata={"expires-at": "2020-01-01T00:00:00Z"}
    )
    result = run(state="fetched")
    assert result["failed"] is True
    assert "expired at 2020-01-01T00:00:00Z" in result["msg"]
    assert "0123456789abcdef" not in json.dumps(result)


def test_absent_removes_the_object_once(aws, kubeadm, run):
    run(kubeadm)
    assert run(state="absent", check_mode=True)["changed"] is True
    stored(aws)
    assert run(state="absent")["changed"] is True
    assert run(state="absent")["changed"] is False
    with pytest.raises(aws.client("s3").exceptions.NoSuchKey):
        stored(aws)


def test_absent_without_bucket_is_not_an_error(aws, run):
    assert run(state="absent", bucket="no-such-bucket-here")["changed"] is False


@pytest.mark.parametrize(
    "text,seconds",
    [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("3600s", 3600), ("0", 0), ("0s", 0), ("", None), ("2d", None)],
)
def test_duration(text, seconds):
    if seconds is None:
        with pytest.raises(jc.JoinCommandError):
            jc.duration_seconds(text)
    else:
        assert jc.duration_seconds(text) == seconds


def test_parse_accepts_equals_and_several_hashes():
    parts = jc.parse(
        "kubeadm join cp.example:6443 --token=abcdef.0123456789abcdef "
        "--discovery-token-ca-cert-hash sha256:aa --discovery-token-ca-cert-hash=sha256:bb"
    )
    assert parts == {
        "api_server_endpoint": "cp.example:6443",
        "token": "abcdef.0123456789abcdef",
        "ca_cert_hashes": ["sha256:aa", "sha256:bb"],
    }


@pytest.mark.parametrize(
    "command",
    [
        "",
        "kubeadm init",
        "kubeadm join cp:6443 --token nope --discovery-token-ca-cert-hash sha256:aa",
        "kubeadm join cp:6443 --token abcdef.0123456789abcdef",
        "kubeadm join 'unterminated",
    ],
)
def test_parse_rejects(command):
    with pytest.raises(jc.JoinCommandError) as error:
        jc.parse(command)
    assert "0123456789abcdef" not in str(error.value)


def test_listed_token_ids_skips_header_and_noise():
    output = "TOKEN  TTL\nabcdef.0123456789abcdef  1h\n\nwarning: something\nzyxwvu.0123456789abcdef 2h\n"
    assert jc.listed_token_ids(output) == {"abcdef", "zyxwvu"}
