"""ECR's data plane for the local cloud: a TLS front that keeps ECR's promises, in front of distribution's registry.

On AWS, <account>.dkr.ecr.<region>.amazonaws.com and ECR's API are one service. Locally the API is
moto (tests/moto_server.py) and the images live in distribution's registry, which this program
starts on a loopback port of its own and stands in front of. Every request goes through here:

- Credentials: the password of an ECR authorization token, as the endpoint's GetAuthorizationToken
  issues it (tests/moto_server.py, with the token key both share). A request with no credentials
  gets 401 and a Basic challenge; a password that is forged, garbled or past its expiry gets 403
  DENIED "Your authorization token has expired. Reauthenticate and try again.", as ECR answers.
  The registry itself only ever sees this front's own credential (a random password, bcrypt-hashed
  in its htpasswd).
- Repositories: a request for a repository the endpoint's ECR does not have gets 404 NAME_UNKNOWN,
  as on ECR. In an IMMUTABLE repository, pushing a tag that already names another image gets 400
  TAG_INVALID.
- Read after write: a manifest PUT that the registry accepts is recorded in the endpoint's ECR
  (PutImage, with the registry's Docker-Content-Digest) before the client gets its answer, so
  DescribeImages lists the image as soon as the push returns; a manifest DELETE is removed from ECR
  (BatchDeleteImage) before the answer.
- Repository deletion: every --sweep-interval seconds the repositories in the registry's storage are
  compared with the endpoint's; the data of one that is gone (DeleteRepository, with force) is
  removed from the storage, and with it every blob no remaining repository links to. Requests wait
  while that runs, so no push loses a blob it is committing. A repository deleted and made again
  (another createdAt) loses its namesake's data at its first request, before the next sweep.

Bodies are streamed byte for byte in both directions (blob uploads and pulls are never held in
memory); only a manifest PUT body (at most 4 MiB, as on ECR) is read whole, to record it.

    python localcloud/ecr_front.py --listen PORT --registry-port PORT --dir DIR --endpoint URL \
        --cert CERT --key KEY --token-key FILE [--sweep-interval SECONDS] [--registry-bin PATH]

The endpoint's administrator keys and AWS_CA_BUNDLE come from the environment. docs/local-cloud-registry.md.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
import boto3
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("ecr-front")

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
# Never passed to the registry: the client's credentials (replaced by the front's own), what the
# front answers itself (Expect) or frames itself (Content-Length), and forwarding headers a client could forge.
NOT_FORWARDED = HOP_BY_HOP | {
    "authorization",
    "content-length",
    "expect",
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
}
MANIFEST_LIMIT = 4 * 1024 * 1024  # ECR's and distribution's limit on a manifest
CHUNK = 64 * 1024
REPOSITORY_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|tags)/(?P<rest>[^?]*)")
DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
TOKEN_VERSION = "helix1"
EXPIRED = "Your authorization token has expired. Reauthenticate and try again."


# --- ECR authorization tokens (the endpoint issues them: tests/moto_server.py, ecr_password) ---


def token_mac(key, payload):
    return base64.urlsafe_b64encode(hmac.new(key, payload, hashlib.sha256).digest()).rstrip(b"=").decode()


def check_password(key, password, now=None):
    """The token's claims ({"account", "expires", ...}) if the endpoint issued `password` and it has not expired.

    A password is "helix1.<base64url of the JSON claims>.<base64url of their HMAC-SHA256 under the token key>";
    anything else, or a password whose "expires" (epoch seconds) has come, gives None.
    """
    parts = password.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION or not parts[1] or not parts[2]:
        return None
    encoded, mac = parts[1:]
    payload = encoded.encode()
    if not hmac.compare_digest(token_mac(key, payload), mac):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        expires = float(claims["expires"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return claims if (time.time() if now is None else now) < expires else None


def basic_credentials(header):
    """(user, password) of a Basic Authorization header, or None."""
    scheme, value = ((header or "").split(" ", 1) + [""])[:2]
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return tuple(decoded.split(":", 1)) if ":" in decoded else None


# --- the registry's storage (filesystem driver) ---


class Storage:
    """The registry's filesystem storage: which repositories it holds, and removing one with its blobs."""

    REPOSITORY_PARTS = ("_layers", "_manifests", "_uploads")

    def __init__(self, root):
        self.v2 = Path(root) / "docker/registry/v2"
        self.repositories_dir = self.v2 / "repositories"
        self.blobs_dir = self.v2 / "blobs"

    def repositories(self):
        """Names of the repositories that have any data (a name may be a prefix of another: demo, demo/api)."""
        if not self.repositories_dir.is_dir():
            return set()
        names = set()
        for path, dirs, _files in os.walk(self.repositories_dir):
            if any(part in dirs for part in self.REPOSITORY_PARTS):
                names.add(str(Path(path).relative_to(self.repositories_dir)))
            # A repository's own data holds no repository (a tag may be named _layers).
            dirs[:] = [d for d in dirs if d not in self.REPOSITORY_PARTS]
        return names

    def remove_repository(self, name):
        directory = self.repositories_dir / name
        for part in self.REPOSITORY_PARTS:
            shutil.rmtree(directory / part, ignore_errors=True)
        while directory != self.repositories_dir and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
            directory = directory.parent

    def linked_blobs(self):
        """Every digest a repository links to: its layers, its manifests' revisions, its tags."""
        linked = set()
        if self.repositories_dir.is_dir():
            for path, _dirs, files in os.walk(self.repositories_dir):
                if "link" in files:
                    linked.add((Path(path) / "link").read_text().strip())
        return linked

    def remove_unlinked_blobs(self):
        """Remove the blobs no repository links to; how many went."""
        linked, removed = self.linked_blobs(), 0
        if not self.blobs_dir.is_dir():
            return 0
        for algorithm in self.blobs_dir.iterdir():
            for prefix in list(algorithm.iterdir()):
                for blob in list(prefix.iterdir()):
                    if f"{algorithm.name}:{blob.name}" not in linked:
                        shutil.rmtree(blob)
                        removed += 1
                if not any(prefix.iterdir()):
                    prefix.rmdir()
        return removed


class ReadWriteLock:
    """Requests share it; the sweep takes it alone, and new requests wait while the sweep waits."""

    def __init__(self):
        self._condition = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def shared(self):
        with self._condition:
            self._condition.wait_for(lambda: not self._writer)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextmanager
    def exclusive(self):
        with self._condition:
            self._condition.wait_for(lambda: not self._writer)
            self._writer = True
            self._condition.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            with self._condition:
                self._writer = False
                self._condition.notify_all()


# --- the endpoint's ECR ---


class Ecr:
    def __init__(self, endpoint, region):
        self.client = boto3.client("ecr", endpoint_url=endpoint, region_name=region)

    def repository(self, name):
        """The repository's description, or None if the endpoint's ECR does not have it."""
        try:
            return self.client.describe_repositories(repositoryNames=[name])["repositories"][0]
        except ClientError as error:
            if error.response["Error"]["Code"] == "RepositoryNotFoundException":
                return None
            raise

    def repositories(self):
        """{name: createdAt} of every repository."""
        pages = self.client.get_paginator("describe_repositories").paginate()
        return {repo["repositoryName"]: repo["createdAt"] for page in pages for repo in page["repositories"]}

    def tagged_digest(self, repository, tag):
        try:
            images = self.client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        except ClientError as error:
            if error.response["Error"]["Code"] == "ImageNotFoundException":
                return None
            raise
        return images["imageDetails"][0]["imageDigest"] if images["imageDetails"] else None

    def put_image(self, repository, reference, manifest, media_type, digest):
        args = dict(repositoryName=repository, imageManifest=manifest, imageDigest=digest)
        if media_type:
            args["imageManifestMediaType"] = media_type
        if not DIGEST.match(reference):
            args["imageTag"] = reference
        try:
            self.client.put_image(**args)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ImageAlreadyExistsException":  # the same push again
                raise

    def delete_image(self, repository, reference):
        image_id = {"imageDigest": reference} if DIGEST.match(reference) else {"imageTag": reference}
        self.client.batch_delete_image(repositoryName=repository, imageIds=[image_id])


# --- the front ---


def error_body(code, message):
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Front
    claims = None  # of the request's token, once authorized

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, code, message, headers=()):
        """Answer the request here; the connection closes, since its body may not have been read."""
        body = error_body(code, message)
        self.close_connection = True
        self.send_response_only(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        log.info("%s %s -> %d %s", self.command, self.path, status, code)

    def authorized(self):
        credentials = basic_credentials(self.headers.get("Authorization"))
        if credentials is None:
            host = self.headers.get("Host", "")
            challenge = f'Basic realm="https://{host}/",service="ecr.amazonaws.com"'
            self.answer(401, "UNAUTHORIZED", "Not Authorized", [("WWW-Authenticate", challenge)])
            return False
        user, password = credentials
        self.claims = check_password(self.server.token_key, password) if user == "AWS" else None
        if self.claims is None:
            self.answer(403, "DENIED", EXPIRED)
            return False
        return True

    def handle_request(self):
        if not self.authorized():
            return
        match = REPOSITORY_PATH.match(self.path)
        if match is None:
            with self.server.lock.shared():
                self.forward()
            return
        name, kind, reference = match["name"], match["kind"], match["rest"]
        repository = self.server.ecr.repository(name)
        if repository is None:
            registry_id = self.server.account
            message = f"The repository with name '{name}' does not exist in the registry with id '{registry_id}'"
            self.answer(404, "NAME_UNKNOWN", message)
            return
        self.server.claim(name, repository["createdAt"])
        if kind == "manifests" and self.command in ("GET", "HEAD"):  # which token a pull used, for the record
            issued, expires = (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.claims.get(k, 0))) for k in ("issued", "expires")
            )
            log.info("%s %s:%s with a token issued %s, expiring %s", self.command, name, reference, issued, expires)
        with self.server.lock.shared():
            if kind == "manifests" and self.command == "PUT":
                self.put_manifest(repository, name, reference)
            elif kind == "manifests" and self.command == "DELETE":
                self.forward(before_answer=lambda upstream: self.unrecord(upstream, name, reference))
            else:
                self.forward()

    def put_manifest(self, repository, name, reference):
        body = self.read_body(MANIFEST_LIMIT + 1)
        if len(body) > MANIFEST_LIMIT:
            self.answer(400, "MANIFEST_INVALID", "manifest invalid: larger than 4 MiB")
            return
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if repository.get("imageTagMutability") == "IMMUTABLE" and not DIGEST.match(reference):
            tagged = self.server.ecr.tagged_digest(name, reference)
            if tagged not in (None, digest):
                message = (
                    f"The image tag '{reference}' already exists in the '{name}' repository and cannot be "
                    "overwritten because the repository is immutable."
                )
                self.answer(400, "TAG_INVALID", message)
                return
        # Recorded in ECR before the client hears the push succeeded: DescribeImages sees it at once.
        self.forward(body, lambda upstream: self.record(upstream, name, reference, body))

    def record(self, upstream, name, reference, body):
        if upstream.status == 201:
            digest = upstream.getheader("Docker-Content-Digest")
            self.server.ecr.put_image(name, reference, body.decode(), self.headers.get("Content-Type"), digest)
            log.info("%s:%s (%s) recorded in ECR", name, reference, digest)

    def unrecord(self, upstream, name, reference):
        if upstream.status == 202:
            self.server.ecr.delete_image(name, reference)
            log.info("%s:%s removed from ECR", name, reference)

    def read_body(self, limit):
        """The request's body, or its first `limit` bytes or more if it is longer (the rest is left unread)."""
        body = bytearray()
        for data in self.body_chunks():
            body += data
            if len(body) >= limit:
                break
        return bytes(body)

    def body_chunks(self):
        """The request's body as it arrives, de-chunked."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, CHUNK))
                    if not data:
                        raise ConnectionError("client closed mid-chunk")
                    remaining -= len(data)
                    yield data
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining:
            data = self.rfile.read(min(remaining, CHUNK))
            if not data:
                raise ConnectionError("client closed mid-body")
            remaining -= len(data)
            yield data

    def forward(self, body=None, before_answer=None):
        """Send the request to the registry, streaming its body, then stream the answer back; the status."""
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.registry_port, timeout=300)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in NOT_FORWARDED:
                    upstream.putheader(key, value)
            upstream.putheader("Authorization", self.server.registry_authorization)
            upstream.putheader("X-Forwarded-Proto", "https")  # the registry's Location URLs name the front
            chunked = body is None and self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            if body is not None:
                upstream.putheader("Content-Length", str(len(body)))
            elif chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            elif self.headers.get("Content-Length") is not None:
                upstream.putheader("Content-Length", self.headers["Content-Length"])
            upstream.endheaders()
            if body is not None:
                upstream.send(body)
            else:
                for data in self.body_chunks():
                    upstream.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                if chunked:
                    upstream.send(b"0\r\n\r\n")
            response = upstream.getresponse()
            if before_answer is not None:
                before_answer(response)
            self.relay(response)
            return response.status
        finally:
            upstream.close()

    def relay(self, response):
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        bodiless = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        chunked = not bodiless and response.getheader("Content-Length") is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if bodiless:
            return
        while data := response.read1(CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def dispatch(self):
        try:
            self.handle_request()
        except ClientError as error:
            log.error("%s %s: the endpoint's ECR answered %s", self.command, self.path, error)
            self.answer(500, "UNKNOWN", f"the local ECR endpoint failed: {error.response['Error']['Code']}")
        except BotoCoreError as error:
            log.error("%s %s: the endpoint's ECR did not answer: %s", self.command, self.path, error)
            self.answer(500, "UNKNOWN", "the local ECR endpoint did not answer")
        except (OSError, http.client.HTTPException) as error:
            log.error("%s %s: %s", self.command, self.path, error)
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = dispatch


class Front(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, listen, tls, registry_port, registry_authorization, ecr, token_key, storage, account):
        super().__init__(("127.0.0.1", listen), Handler)
        self.tls = tls
        self.registry_port = registry_port
        self.registry_authorization = registry_authorization
        self.ecr = ecr
        self.token_key = token_key
        self.storage = storage
        self.account = account
        self.lock = ReadWriteLock()
        # {name: createdAt} of the repository whose data the storage holds under that name.
        self.created = {}
        self.created_lock = threading.Lock()

    def finish_request(self, request, client_address):
        # The handshake runs in the request's own thread, so a slow client does not hold up accept().
        try:
            request = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)

    def claim(self, name, created):
        """Requests for `name` go to the repository created at `created`: a deleted namesake's data goes first."""
        with self.created_lock:
            seen = self.created.setdefault(name, created)
        if seen != created:  # deleted and made again since the storage got its data
            with self.lock.exclusive():
                if self.created.get(name) != created:
                    self.storage.remove_repository(name)
                    blobs = self.storage.remove_unlinked_blobs()
                    with self.created_lock:
                        self.created[name] = created
                    log.info("repository %s made again in ECR, the old one's data removed (%d blobs)", name, blobs)

    def stale(self, current):
        """The repositories in the storage that are not, or no longer, those of ECR's {name: createdAt}."""
        with self.created_lock:
            return {
                name
                for name in self.storage.repositories()
                if name not in current or self.created.get(name, current[name]) != current[name]
            }

    def sweep(self):
        """Remove the storage of every repository the endpoint's ECR no longer has; the names removed."""
        if not self.storage.repositories() or not self.stale(self.ecr.repositories()):
            return []
        with self.lock.exclusive():  # checked again with no request in flight
            gone = sorted(self.stale(self.ecr.repositories()))
            for name in gone:
                self.storage.remove_repository(name)
                with self.created_lock:
                    self.created.pop(name, None)
            blobs = self.storage.remove_unlinked_blobs()
        if gone:
            log.info("repositories deleted from ECR, their data removed from the registry: %s (%d blobs)", gone, blobs)
        return gone

    def sweep_forever(self, interval):
        while True:
            time.sleep(interval)
            try:
                self.sweep()
            except Exception as error:  # the next sweep tries again; say what failed
                log.error("sweep failed: %s", error)


# --- the registry behind it ---


def start_registry(binary, directory, port, password):
    """distribution's registry on 127.0.0.1:port, plain HTTP, accepting only the front's own credential."""
    # bcrypt cost 4: the registry checks it on every request, and the password is 256 random bits, not a word.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    (directory / "htpasswd").write_text(f"front:{hashed}\n")
    config = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": str(directory / "data")}, "delete": {"enabled": True}},
        "http": {
            "addr": f"127.0.0.1:{port}",
            "secret": secrets.token_hex(32),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": {"htpasswd": {"realm": "local ECR (helix local cloud)", "path": str(directory / "htpasswd")}},
    }
    (directory / "config.yml").write_text(json.dumps(config))  # YAML reads JSON
    return subprocess.Popen(
        [binary, "serve", str(directory / "config.yml")],
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},  # nothing listens for traces here
        stdin=subprocess.DEVNULL,
    )


def wait_for_registry(process, port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/v2/")
            if connection.getresponse().status == 401:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the registry did not answer on 127.0.0.1:{port}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True, help="the front's TLS port on 127.0.0.1")
    parser.add_argument("--registry-port", type=int, required=True, help="the registry's port on 127.0.0.1")
    parser.add_argument("--dir", type=Path, required=True, help="the registry's configuration and storage")
    parser.add_argument("--endpoint", required=True, help="the local AWS endpoint")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token-key", type=Path, required=True, help="the key the endpoint signs ECR tokens with")
    parser.add_argument("--sweep-interval", type=float, default=2.0)
    parser.add_argument("--registry-bin", default=str(Path.home() / ".cache/helix/localcloud/bin/registry"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s ecr-front %(message)s")

    ecr = Ecr(args.endpoint, args.region)
    account = boto3.client("sts", endpoint_url=args.endpoint, region_name=args.region).get_caller_identity()["Account"]
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    password = secrets.token_urlsafe(32)
    args.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    registry = start_registry(args.registry_bin, args.dir, args.registry_port, password)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the registry stops with it (finally, below)
    try:
        wait_for_registry(registry, args.registry_port)
        authorization = "Basic " + base64.b64encode(f"front:{password}".encode()).decode()
        front = Front(
            args.listen,
            tls,
            args.registry_port,
            authorization,
            ecr,
            args.token_key.read_bytes(),
            Storage(args.dir / "data"),
            account,
        )
        threading.Thread(target=front.sweep_forever, args=(args.sweep_interval,), daemon=True).start()
        threading.Thread(target=front.serve_forever, daemon=True).start()
        log.info("serving https://127.0.0.1:%d/v2/, the registry on 127.0.0.1:%d", args.listen, args.registry_port)
        registry.wait()
        raise SystemExit(f"the registry exited with {registry.returncode}")
    finally:
        if registry.poll() is None:
            registry.terminate()
            registry.wait(timeout=10)


if __name__ == "__main__":
    main()
