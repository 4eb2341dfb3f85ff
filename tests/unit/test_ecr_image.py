"""helix.kubeadm_aws.ecr_image against the local AWS endpoint and a real registry.

The registry is the local cloud's ECR data plane, distribution's registry (localcloud/bins.sh builds
it), started here on its own: TLS with the session's certificate (the CA bundle boto3 uses, so the
module's TLS check runs as it does against the local cloud), HTTP basic auth with exactly the
credentials the endpoint's GetAuthorizationToken issues, storage on the filesystem as there (its
in-memory driver took 10 s to take the demo's 37 MB db layer). Unlike `crane registry serve` it
checks the credentials, and it is the same program as in the local cloud, without that cloud's
scripts (localcloud/registry.sh wants an IAM-enforcing endpoint from tools/moto-server.sh).

The archives are written by demo_app/build_images.py's own write_archive, from a one-file layer, so
they have exactly the layout and manifest encoding of the demo's images.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.oci_registry import DOCKER_MANIFEST, upload_url
from ansible_collections.helix.kubeadm_aws.plugins.modules import ecr_image
from tests.aws_endpoint import REGION, certificate, free_port
from tests.demo_images import build_images
from tests.module_runner import run_module

CACHE_DIR = Path(os.environ.get("HELIX_CACHE_DIR") or Path.home() / ".cache" / "helix")
REGISTRY_BIN = CACHE_DIR / "localcloud" / "bin" / "registry"
ECR_HOST = f"123456789012.dkr.ecr.{REGION}.amazonaws.com"  # moto's default account


def write_image(path, content, cmd=("/hello",)):
    """A one-layer image archive in build_images.py's format; its manifest digest."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode, info.mtime = len(content), 0o644, 0
        tar.addfile(info, io.BytesIO(content))
    raw = buffer.getvalue()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": list(cmd)},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
    }
    return build_images.write_archive(path, "helix-test/hello:1", config, gzip.compress(raw, mtime=0))


class Registry:
    """distribution's registry on a free loopback port, accepting the endpoint's ECR credentials."""

    def __init__(self, directory, password):
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_bundle, key = certificate()
        self.authorization = "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()
        # bcrypt cost 4: the registry checks the password on every request (the default, 12, made a push take 1-2 s)
        (directory / "htpasswd").write_bytes(
            b"AWS:" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)) + b"\n"
        )
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": str(directory / "data")}},
            "http": {"addr": f"127.0.0.1:{self.port}", "tls": {"certificate": self.ca_bundle, "key": key}},
            "auth": {"htpasswd": {"realm": "helix test ECR", "path": str(directory / "htpasswd")}},
        }
        (directory / "config.yml").write_text(json.dumps(config))  # YAML reads JSON
        self.log = open(directory / "registry.log", "wb")  # noqa: SIM115 - lives as long as the registry
        self.process = subprocess.Popen(
            [str(REGISTRY_BIN), "serve", str(directory / "config.yml")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
        )
        self._wait(directory / "registry.log")

    def _wait(self, log, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                self.request("GET", "/v2/", authorize=False)
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, and asking for credentials
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the registry did not answer 401 at {self.url}/v2/; see {log}")

    def request(self, method, path, accept=DOCKER_MANIFEST, authorize=True):
        """(status, headers, body) of a request to the registry."""
        headers = {"Accept": accept, **({"Authorization": self.authorization} if authorize else {})}
        request = urllib.request.Request(self.url + path, method=method, headers=headers)
        context = ssl.create_default_context(cafile=self.ca_bundle)
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, response.headers, response.read()

    def status(self, method, path):
        try:
            return self.request(method, path)[0]
        except urllib.error.HTTPError as e:
            return e.code

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def registry(moto_server, tmp_path_factory):
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip(f"no registry binary at {REGISTRY_BIN}; build it with `localcloud/bins.sh registry`")
    token = moto_server.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    server = Registry(tmp_path_factory.mktemp("registry"), base64.b64decode(token).decode().partition(":")[2])
    yield server
    server.stop()


@pytest.fixture
def repository(aws, registry, request):
    """An ECR repository of its own for each test (the registry keeps its images for the whole module)."""
    name = f"demo/{request.node.name.replace('_', '-')}"
    aws.client("ecr").create_repository(repositoryName=name)
    return name


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "image.tar"
    return path, write_image(path, b"hello\n")


def push(capsys, aws, registry, archive_path, repository, tag="1.0", check_mode=False):
    return push_all(capsys, aws, registry, [(archive_path, repository)], tag=tag, check_mode=check_mode)


def push_all(capsys, aws, registry, images, tag="1.0", check_mode=False):
    args = dict(
        images=[dict(archive=str(path), repository=repository) for path, repository in images],
        tag=tag,
        registry_url=registry.url,
    )
    return run_module(capsys, ecr_image, args, aws=aws, check_mode=check_mode)


def manifest_digest_in_index(path):
    with tarfile.open(path) as tar:
        return json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]


def test_first_push_uploads_every_blob_and_the_registry_serves_the_archives_manifest(
    capsys, aws, registry, repository, archive
):
    path, digest = archive
    result = push(capsys, aws, registry, path, repository)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert digest == manifest_digest_in_index(path)
    assert result["images"] == [
        {
            "repository": repository,
            "digest": digest,
            "image": f"{ECR_HOST}/{repository}@{digest}",
            "changed": True,
            "uploaded_blobs": 2,  # config and layer
        }
    ]
    assert result["tag"] == "1.0"
    assert result["diff"] == {"before": {}, "after": {repository: digest}}
    status, headers, body = registry.request("GET", f"/v2/{repository}/manifests/1.0")
    assert status == 200
    assert headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    with tarfile.open(path) as tar:
        assert body == tar.extractfile(f"blobs/sha256/{digest[7:]}").read()


def test_the_token_is_not_in_the_result(capsys, aws, registry, repository, archive):
    result = push(capsys, aws, registry, archive[0], repository)
    assert result["changed"] is True
    text = json.dumps(result)
    assert "auth-token" not in text  # moto's password: <account>-auth-token
    assert registry.authorization.split()[1] not in text


def test_a_second_push_changes_nothing_and_uploads_nothing(capsys, aws, registry, repository, archive):
    path, digest = archive
    assert push(capsys, aws, registry, path, repository)["changed"] is True
    result = push(capsys, aws, registry, path, repository)
    assert result["changed"] is False
    assert result["images"][0]["uploaded_blobs"] == 0
    assert result["images"][0]["digest"] == digest
    assert result["diff"] == {"before": {repository: digest}, "after": {repository: digest}}


def test_check_mode_reports_the_push_and_uploads_nothing(capsys, aws, registry, repository, archive):
    path, digest = archive
    result = push(capsys, aws, registry, path, repository, check_mode=True)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["images"][0]["uploaded_blobs"] == 2  # would be
    assert result["diff"] == {"before": {}, "after": {repository: digest}}
    assert registry.status("HEAD", f"/v2/{repository}/manifests/1.0") == 404
    with tarfile.open(path) as tar:
        blobs = [m.name for m in tar.getmembers() if m.name.startswith("blobs/sha256/") and m.isfile()]
    assert [registry.status("HEAD", f"/v2/{repository}/blobs/sha256:{b[13:]}") for b in blobs] == [404] * 3


def test_new_content_under_the_same_tag_moves_the_tag_and_uploads_only_new_blobs(
    capsys, aws, registry, repository, archive, tmp_path
):
    path, first = archive
    assert push(capsys, aws, registry, path, repository)["changed"] is True
    changed = tmp_path / "changed.tar"
    second = write_image(changed, b"hello\n", cmd=("/hello", "--loud"))  # same layer, another config
    result = push(capsys, aws, registry, changed, repository)
    assert result["changed"] is True
    assert result["images"][0]["digest"] == second != first
    assert result["images"][0]["uploaded_blobs"] == 1
    assert result["diff"] == {"before": {repository: first}, "after": {repository: second}}
    assert registry.request("HEAD", f"/v2/{repository}/manifests/1.0")[1]["Docker-Content-Digest"] == second


def test_a_missing_repository_fails_naming_it(capsys, aws, registry, archive):
    result = push(capsys, aws, registry, archive[0], "demo/nothing")
    assert result["failed"] is True
    assert result["msg"] == (
        f"ecr_image: ECR repository demo/nothing does not exist in {REGION}; the bootstrap layer makes it"
    )
    assert registry.status("HEAD", "/v2/demo/nothing/manifests/1.0") == 404


def test_an_unreachable_registry_fails_naming_the_image_and_the_url(capsys, aws, registry, repository, archive):
    args = dict(
        images=[dict(archive=str(archive[0]), repository=repository)],
        tag="1.0",
        registry_url=f"https://127.0.0.1:{free_port()}",
    )
    result = run_module(capsys, ecr_image, args, aws=aws)
    assert result["failed"] is True
    assert result["msg"].startswith(f"ecr_image: pushing {repository}:1.0 to {args['registry_url']} failed: HEAD ")
    assert "no answer" in result["msg"]


def test_an_archive_that_is_no_oci_layout_fails_naming_the_image(capsys, aws, registry, repository, tmp_path):
    path = tmp_path / "docker-save.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"[]"))
    result = push(capsys, aws, registry, path, repository)
    assert result["failed"] is True
    assert result["msg"] == f"ecr_image: {repository}:1.0: {path} is not an OCI image layout (no oci-layout file)"


def test_images_of_one_call_are_pushed_in_order_each_only_when_its_tag_moves(
    capsys, aws, registry, repository, archive, tmp_path
):
    path, first = archive
    other = f"{repository}-other"
    aws.client("ecr").create_repository(repositoryName=other)
    assert push(capsys, aws, registry, path, repository)["changed"] is True
    second_path = tmp_path / "second.tar"
    second = write_image(second_path, b"other\n")
    result = push_all(capsys, aws, registry, [(path, repository), (second_path, other)])
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert [(i["repository"], i["digest"], i["changed"]) for i in result["images"]] == [
        (repository, first, False),
        (other, second, True),
    ]
    assert registry.request("HEAD", f"/v2/{other}/manifests/1.0")[1]["Docker-Content-Digest"] == second


def test_every_archive_is_read_before_anything_is_pushed(capsys, aws, registry, repository, archive, tmp_path):
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w"):
        pass
    result = push_all(capsys, aws, registry, [(archive[0], repository), (broken, repository)])
    assert result["failed"] is True
    assert result["msg"].startswith(f"ecr_image: {repository}:1.0: {broken} ")
    assert registry.status("HEAD", f"/v2/{repository}/manifests/1.0") == 404


def test_a_bad_tag_fails_before_anything_is_read(capsys, aws, registry, repository, archive):
    result = push(capsys, aws, registry, archive[0], repository, tag="1.0/../x")
    assert result["failed"] is True
    assert "is not an image tag" in result["msg"]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/v2/demo/api/blobs/uploads/u1?_state=s", "https://r.example/v2/demo/api/blobs/uploads/u1?_state=s&digest="),
        ("https://r.example/v2/demo/api/blobs/uploads/u1", "https://r.example/v2/demo/api/blobs/uploads/u1?digest="),
        ("u1", "https://r.example/v2/demo/api/blobs/uploads/u1?digest="),
        ("https://storage.example/upload/u1?sig=x", "https://storage.example/upload/u1?sig=x&digest="),
    ],
    ids=["relative", "absolute", "relative-to-request", "other-host"],
)
def test_the_upload_location_is_resolved_against_the_request_and_gets_the_digest(location, expected):
    url = upload_url("https://r.example/v2/demo/api/blobs/uploads/", location, "sha256:ab")
    assert url == expected + "sha256%3Aab"
