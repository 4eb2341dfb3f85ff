"""The local cloud's ECR data plane (localcloud/ecr_front.py) keeps ECR's promises.

Runs the front as the local cloud does (a subprocess that starts distribution's registry behind it)
against a moto server that signs ECR tokens with a key both share (tests/moto_server.py), on free
loopback ports:

- read after write: a pushed image is in DescribeImages when the push returns; a deleted one is gone;
- tokens: none gets 401 and a challenge; a forged, garbled or expired one 403 DENIED, as ECR answers;
- repositories: one the endpoint's ECR lacks gets 404 NAME_UNKNOWN; an immutable tag is not moved;
  the data of a repository deleted from ECR leaves the registry's storage;
- bodies pass byte for byte, chunked or not, in both directions.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import http.client
import importlib.util
import io
import json
import os
import ssl
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from ansible_collections.helix.kubeadm_aws.plugins.modules import ecr_image
from tests.ansible_run import ROOT
from tests.aws_endpoint import CREDENTIALS, REGION, MotoServer, free_port
from tests.demo_images import build_images
from tests.module_runner import run_module
from tests.moto_server import ecr_password

CACHE_DIR = Path(os.environ.get("HELIX_CACHE_DIR") or Path.home() / ".cache" / "helix")
REGISTRY_BIN = CACHE_DIR / "localcloud" / "bin" / "registry"
TOKEN_TTL = 4  # seconds: short enough to wait for one to expire
SWEEP_INTERVAL = 1  # seconds between the front's comparisons of its storage with ECR
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
EXPIRED = "Your authorization token has expired. Reauthenticate and try again."


class Response(NamedTuple):
    status: int | None
    headers: http.client.HTTPMessage | None
    body: bytes | None


class Pushed(NamedTuple):
    digest: str
    manifest: bytes
    layer: str


def load_front():
    spec = importlib.util.spec_from_file_location("ecr_front", ROOT / "localcloud" / "ecr_front.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ecr_front = load_front()


class LocalEcr:
    """moto signing ECR tokens with a key, and the front (with its registry) checking them."""

    def __init__(self, directory):
        self.key = os.urandom(32)
        key_file = directory / "ecr-token.key"
        key_file.write_bytes(self.key)
        token_env = {"HELIX_ECR_TOKEN_KEY": str(key_file), "HELIX_ECR_TOKEN_TTL": str(TOKEN_TTL)}
        os.environ.update(token_env)  # for the moto server only
        try:
            self.moto = MotoServer(directory).start()
        finally:
            for name in token_env:
                del os.environ[name]
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.storage = directory / "registry"
        self._token = None  # (authorization, expiresAt) for request()
        self.log_path = directory / "front.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the front
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            "AWS_CA_BUNDLE": self.moto.ca_bundle,
        }
        command = [sys.executable, str(ROOT / "localcloud" / "ecr_front.py"), "--listen", str(self.port)]
        command += ["--registry-port", str(free_port()), "--dir", str(self.storage), "--endpoint", self.moto.url]
        command += ["--cert", self.moto.ca_bundle, "--key", self.moto._key, "--token-key", str(key_file)]
        command += ["--sweep-interval", str(SWEEP_INTERVAL), "--registry-bin", str(REGISTRY_BIN)]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while self.request("GET", "/v2/", authorization=None)[0] != 401:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the front did not answer 401 at {self.url}/v2/; see {directory}/front.log")
            time.sleep(0.1)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()
        self.moto.stop()

    @functools.cached_property
    def client(self):
        return self.moto.client("ecr")

    def ecr(self):
        return self.client

    def token(self):
        """A fresh authorization token from the endpoint: (Basic authorization header, expiresAt)."""
        data = self.ecr().get_authorization_token()["authorizationData"][0]
        return "Basic " + data["authorizationToken"], data["expiresAt"]

    def request(self, method, path, body=None, headers=None, authorization="token"):
        """The Response to one request to the front, on a connection of its own (status None: no answer)."""
        headers = dict(headers or {})
        if authorization == "token":
            if self._token is None or self._token[1].timestamp() - time.time() < TOKEN_TTL / 2:
                self._token = self.token()
            authorization = self._token[0]
        if authorization:
            headers["Authorization"] = authorization
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=30, context=ssl.create_default_context(cafile=self.moto.ca_bundle)
        )
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Response(response.status, response.headers, response.read())
        except OSError:
            return Response(None, None, None)
        finally:
            connection.close()

    def push_blob(self, repository, data):
        """A monolithic upload (POST, then PUT with the digest); the blob's digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        assert started.status == 202, started
        location = started.headers["Location"]
        assert location.startswith(f"{self.url}/v2/{repository}/blobs/uploads/")  # the front's own URL
        separator = "&" if "?" in location else "?"
        done = self.request("PUT", f"{location[len(self.url) :]}{separator}digest={digest}", body=data)
        assert done.status == 201, done.body
        return digest

    def push_image(self, repository, tag, content):
        """A one-layer image: its Pushed (manifest digest, manifest bytes, layer digest)."""
        layer = self.push_blob(repository, gzip.compress(content, mtime=0))
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": self.push_blob(repository, config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(gzip.compress(content, mtime=0)),
                        "digest": layer,
                    }
                ],
            }
        ).encode()
        pushed = self.put_manifest(repository, tag, manifest)
        assert pushed.status == 201, pushed.body
        return Pushed(pushed.headers["Docker-Content-Digest"], manifest, layer)

    def put_manifest(self, repository, reference, manifest):
        return self.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", body=manifest, headers={"Content-Type": DOCKER_MANIFEST}
        )

    def images(self, repository):
        details = self.ecr().describe_images(repositoryName=repository)["imageDetails"]
        return {(d["imageDigest"], tuple(d.get("imageTags", []))) for d in details}

    def stored_files(self):
        """The files in the registry's storage (os.walk: the front's sweep may remove some meanwhile)."""
        data = self.storage / "data"
        return sorted(str(Path(path, name).relative_to(data)) for path, _dirs, names in os.walk(data) for name in names)


@pytest.fixture(scope="module")
def local_ecr(tmp_path_factory):
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip(f"no registry binary at {REGISTRY_BIN}; build it with `localcloud/bins.sh registry`")
    server = LocalEcr(tmp_path_factory.mktemp("local-ecr"))
    yield server
    server.stop()


@pytest.fixture
def repository(local_ecr, request):
    name = "demo/" + hashlib.sha256(request.node.name.encode()).hexdigest()[:12]
    local_ecr.ecr().create_repository(repositoryName=name)
    return name


def error(body):
    return json.loads(body)["errors"][0]


# --- read after write ---


def test_a_pushed_manifest_is_in_describe_images_when_the_push_returns(local_ecr, repository):
    digest, manifest, _layer = local_ecr.push_image(repository, "1.0", b"hello\n")
    assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert local_ecr.images(repository) == {(digest, ("1.0",))}
    image = local_ecr.ecr().batch_get_image(repositoryName=repository, imageIds=[{"imageTag": "1.0"}])["images"][0]
    assert image["imageManifest"] == manifest.decode()
    assert image["imageManifestMediaType"] == DOCKER_MANIFEST


def test_a_manifest_pushed_by_digest_is_an_untagged_image_and_a_tag_moves(local_ecr, repository):
    first, manifest, _layer = local_ecr.push_image(repository, "1.0", b"one\n")
    second = local_ecr.push_image(repository, "1.0", b"two\n").digest
    assert local_ecr.images(repository) == {(second, ("1.0",))}
    assert local_ecr.put_manifest(repository, first, manifest).status == 201
    assert local_ecr.images(repository) == {(second, ("1.0",)), (first, ())}


def test_pushing_the_same_image_again_succeeds_and_changes_nothing(local_ecr, repository):
    digest, manifest, _layer = local_ecr.push_image(repository, "1.0", b"hello\n")
    again = local_ecr.put_manifest(repository, "1.0", manifest)
    assert (again.status, again.headers["Docker-Content-Digest"]) == (201, digest)
    assert local_ecr.images(repository) == {(digest, ("1.0",))}


def test_a_deleted_manifest_is_gone_from_describe_images_when_the_delete_returns(local_ecr, repository):
    digest = local_ecr.push_image(repository, "1.0", b"hello\n").digest
    assert local_ecr.request("DELETE", f"/v2/{repository}/manifests/{digest}").status == 202
    assert local_ecr.images(repository) == set()
    assert local_ecr.request("GET", f"/v2/{repository}/manifests/1.0")[0] == 404


def test_the_ecr_image_module_pushes_through_the_front_and_describe_images_agrees(
    capsys, local_ecr, repository, tmp_path
):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]},
    }
    archive = tmp_path / "image.tar"
    digest = build_images.write_archive(archive, "helix-test/hello:1", config, gzip.compress(raw.getvalue(), mtime=0))
    args = dict(images=[dict(archive=str(archive), repository=repository)], tag="1.0", registry_url=local_ecr.url)
    result = run_module(capsys, ecr_image, args, aws=local_ecr.moto)
    assert not result.get("failed"), result
    assert result["images"][0]["digest"] == digest
    assert local_ecr.images(repository) == {(digest, ("1.0",))}
    assert run_module(capsys, ecr_image, args, aws=local_ecr.moto)["changed"] is False


# --- authorization tokens ---


def test_the_endpoints_token_lives_its_ttl(local_ecr):
    expires_at = local_ecr.token()[1]
    assert 0 < expires_at.timestamp() - time.time() <= TOKEN_TTL


@pytest.mark.parametrize("authorization", [None, "Basic !!!", "Bearer x"], ids=["none", "not-base64", "not-basic"])
def test_no_credentials_get_401_and_a_basic_challenge(local_ecr, repository, authorization):
    status, headers, body = local_ecr.request("GET", f"/v2/{repository}/tags/list", authorization=authorization)
    assert status == 401
    challenge = f'Basic realm="https://127.0.0.1:{local_ecr.port}/",service="ecr.amazonaws.com"'
    assert headers["WWW-Authenticate"] == challenge
    assert error(body)["code"] == "UNAUTHORIZED"


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def claims(expires):
    return {"account": "123456789012", "region": REGION, "issued": time.time(), "expires": expires}


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(lambda key: basic("AWS", "123456789012-auth-token"), id="moto-fixed-password"),
        pytest.param(lambda key: basic("AWS", ecr_password(os.urandom(32), claims(time.time() + 600))), id="other-key"),
        pytest.param(lambda key: basic("AWS", ecr_password(key, claims(time.time() - 1))), id="expired"),
        pytest.param(lambda key: basic("AWS", ecr_password(key, claims(time.time() + 600))[:-2]), id="cut-short"),
        pytest.param(lambda key: basic("admin", ecr_password(key, claims(time.time() + 600))), id="other-user"),
        pytest.param(lambda key: basic("AWS", "helix1.e30.x"), id="garbled"),
    ],
)
def test_a_forged_or_expired_token_gets_403_denied_as_ecr_answers(local_ecr, repository, authorization):
    path = f"/v2/{repository}/tags/list"
    refused = local_ecr.request("GET", path, authorization=authorization(local_ecr.key))
    assert refused.status == 403
    assert error(refused.body) == {"code": "DENIED", "message": EXPIRED, "detail": None}


def test_a_token_signed_with_the_key_is_accepted_until_it_expires(local_ecr, repository):
    token = basic("AWS", ecr_password(local_ecr.key, claims(time.time() + 600)))
    assert local_ecr.request("GET", f"/v2/{repository}/tags/list", authorization=token)[0] == 404  # no tags yet


def test_the_endpoints_token_works_until_its_expiry_then_a_new_one_does(local_ecr, repository):
    local_ecr.push_image(repository, "1.0", b"hello\n")
    authorization, expires_at = local_ecr.token()
    path = f"/v2/{repository}/manifests/1.0"
    headers = {"Accept": DOCKER_MANIFEST}
    assert local_ecr.request("GET", path, headers=headers, authorization=authorization)[0] == 200
    time.sleep(max(0.0, expires_at.timestamp() - time.time()) + 0.2)
    refused = local_ecr.request("GET", path, headers=headers, authorization=authorization)
    assert (refused.status, error(refused.body)["message"]) == (403, EXPIRED)
    assert local_ecr.request("GET", path, headers=headers)[0] == 200  # a fresh token
    # The front logs which token each manifest fetch used: the last one's was issued after the first expired.
    pulls = [line for line in local_ecr.log_path.read_text().splitlines() if f"GET {repository}:1.0 with" in line]
    issued = pulls[-1].split("with a token issued ")[1].split(",")[0]
    assert issued >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(expires_at.timestamp())))


def test_the_registry_behind_the_front_takes_no_ecr_token(local_ecr):
    registry_port = int(local_ecr.process.args[local_ecr.process.args.index("--registry-port") + 1])
    connection = http.client.HTTPConnection("127.0.0.1", registry_port, timeout=10)
    connection.request("GET", "/v2/", headers={"Authorization": local_ecr.token()[0]})
    assert connection.getresponse().status == 401


# --- repositories ---


def test_a_repository_the_endpoint_does_not_have_gets_404_name_unknown_and_nothing_is_stored(local_ecr):
    before = local_ecr.stored_files()
    refused = local_ecr.request("POST", "/v2/demo/nothing/blobs/uploads/")
    assert refused.status == 404
    assert error(refused.body)["code"] == "NAME_UNKNOWN"
    assert error(refused.body)["message"] == (
        "The repository with name 'demo/nothing' does not exist in the registry with id '123456789012'"
    )
    assert local_ecr.stored_files() == before


def test_an_immutable_tag_is_not_moved(local_ecr):
    name = "demo/immutable"
    local_ecr.ecr().create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")
    digest, manifest, _layer = local_ecr.push_image(name, "1.0", b"one\n")
    assert local_ecr.put_manifest(name, "1.0", manifest)[0] == 201  # the same image: fine
    other = manifest + b" "  # valid JSON, another digest
    refused = local_ecr.put_manifest(name, "1.0", other)
    assert refused.status == 400
    assert error(refused.body)["code"] == "TAG_INVALID"
    assert local_ecr.images(name) == {(digest, ("1.0",))}


def test_a_repository_deleted_from_ecr_leaves_the_registry_with_its_blobs_and_others_keep_theirs(local_ecr):
    ecr = local_ecr.ecr()
    for name in ("demo/gone", "demo/gone/child", "demo/kept"):
        ecr.create_repository(repositoryName=name)
    shared = b"shared layer\n"
    shared_layer = local_ecr.push_image("demo/gone", "1.0", shared).layer
    only_gone = local_ecr.push_image("demo/gone", "2.0", b"only in gone\n").layer
    kept = local_ecr.push_image("demo/kept", "1.0", shared).digest
    local_ecr.push_image("demo/gone/child", "1.0", b"child\n")
    storage = ecr_front.Storage(local_ecr.storage / "data")
    assert {"demo/gone", "demo/gone/child", "demo/kept"} <= storage.repositories()

    def blobs():
        return {f"sha256:{p.name}" for p in (storage.blobs_dir / "sha256").glob("*/*")}

    ecr.delete_repository(repositoryName="demo/gone", force=True)
    # The sweep removes the repository's directory, then the unlinked blobs: wait for both.
    deadline = time.monotonic() + 10
    while ("demo/gone" in storage.repositories() or only_gone in blobs()) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert "demo/gone" not in storage.repositories()
    assert {"demo/gone/child", "demo/kept"} <= storage.repositories()
    assert shared_layer in blobs() and only_gone not in blobs()
    assert local_ecr.request("GET", f"/v2/demo/kept/blobs/{shared_layer}")[2] == gzip.compress(shared, mtime=0)
    assert local_ecr.request("HEAD", f"/v2/demo/kept/manifests/{kept}", headers={"Accept": DOCKER_MANIFEST})[0] == 200
    assert local_ecr.request("GET", "/v2/demo/gone/tags/list")[0] == 404

    for name in ("demo/gone/child", "demo/kept"):
        ecr.delete_repository(repositoryName=name, force=True)
    for name in [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]:
        ecr.delete_repository(repositoryName=name, force=True)
    deadline = time.monotonic() + 10
    while local_ecr.stored_files() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert local_ecr.stored_files() == []  # nothing of any repository is left


def test_a_repository_made_again_starts_empty_before_the_next_sweep(local_ecr):
    ecr, name = local_ecr.ecr(), "demo/again"
    ecr.create_repository(repositoryName=name)
    first = local_ecr.push_image(name, "1.0", b"first life\n").digest
    ecr.delete_repository(repositoryName=name, force=True)
    ecr.create_repository(repositoryName=name)
    accept = {"Accept": DOCKER_MANIFEST}
    assert local_ecr.request("HEAD", f"/v2/{name}/manifests/1.0", headers=accept).status == 404
    assert local_ecr.request("HEAD", f"/v2/{name}/manifests/{first}", headers=accept).status == 404
    # So a client that pushes only what the registry lacks (helix.kubeadm_aws.ecr_image) pushes it again.
    again = local_ecr.push_image(name, "1.0", b"first life\n").digest
    assert again == first
    assert local_ecr.images(name) == {(first, ("1.0",))}


# --- bodies ---


def test_a_chunked_upload_of_20_mib_arrives_byte_for_byte_and_streams_back(local_ecr, repository):
    data = os.urandom(20 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = local_ecr.request("POST", f"/v2/{repository}/blobs/uploads/")
    assert started.status == 202
    location = started.headers["Location"][len(local_ecr.url) :]
    pieces = (data[i : i + 1_000_003] for i in range(0, len(data), 1_000_003))  # http.client sends it chunked
    status, headers, body = local_ecr.request(
        "PATCH", location, body=pieces, headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 202, body
    location = headers["Location"][len(local_ecr.url) :]
    assert local_ecr.request("PUT", f"{location}&digest={digest}")[0] == 201

    head = local_ecr.request("HEAD", f"/v2/{repository}/blobs/{digest}")
    assert (head.status, head.headers["Content-Length"], head.headers["Docker-Content-Digest"]) == (
        200,
        str(len(data)),
        digest,
    )
    pulled = local_ecr.request("GET", f"/v2/{repository}/blobs/{digest}")
    assert pulled.status == 200 and pulled.body == data


def test_the_front_checks_passwords_as_the_endpoint_signs_them():
    key = os.urandom(32)
    password = ecr_password(key, claims(1000.0))
    assert ecr_front.check_password(key, password, now=999.0)["account"] == "123456789012"
    assert ecr_front.check_password(key, password, now=1000.0) is None
    assert ecr_front.check_password(os.urandom(32), password, now=999.0) is None
