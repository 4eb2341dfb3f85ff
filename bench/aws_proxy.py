"""A counting reverse proxy in front of the local AWS endpoint.

Every request the playbooks make passes through it and is recorded with:
- the service, read from the SigV4 credential scope of the Authorization header;
- the operation, read from X-Amz-Target (JSON protocols), Action= (query and EC2 protocols),
  the /operation/ path segment (RPC v2 CBOR) or, for REST (S3), the method and path shape;
- the Ansible module that sent it: the proxy looks up which local process owns the client end of
  the TCP connection (/proc/net/tcp, /proc/<pid>/fd) and reads AnsiballZ_<module>.py from its
  command line; a request from ansible-playbook itself (a lookup plugin) is "controller".

Standard library only; Linux only (it reads /proc).
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
MODULE = re.compile(rb"AnsiballZ_(\w+)\.py")


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    module: str
    status: int


def operation_of(method, path, headers, body):
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    url = urlsplit(path)
    if "/operation/" in url.path:
        return url.path.rsplit("/operation/", 1)[-1]
    action = parse_qs(url.query).get("Action")
    if not action and body and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    if action:
        return action[0]
    # REST (S3): the method and how deep the path goes stand in for the operation.
    depth = len([p for p in url.path.split("/") if p])
    query = "?" + ",".join(sorted(parse_qs(url.query, keep_blank_values=True))) if url.query else ""
    return f"{method} /{'/'.join(['{bucket}', '{key}'][:depth])}{query}"


def _socket_inode(client_port, server_port):
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == client_port and int(remote.rsplit(":", 1)[1], 16) == server_port:
                return fields[9]
    return None


def module_of_client(client_port, server_port):
    """Which Ansible module (or the controller) owns the client end of a loopback connection."""
    inode = _socket_inode(client_port, server_port)
    if inode is None:
        return "unknown"
    target = f"socket:[{inode}]"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            if b"AnsiballZ_" not in cmdline and b"ansible-playbook" not in cmdline:
                continue
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd")):
                found = MODULE.search(cmdline)
                return found.group(1).decode() if found else "controller"
        except OSError:
            continue
    return "unknown"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CountingProxy

    def log_message(self, *args):
        pass

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _module(self):
        if not hasattr(self, "_client_module"):
            self._client_module = module_of_client(self.client_address[1], self.server.server_address[1])
        return self._client_module

    def _upstream(self):
        if getattr(self, "_connection", None) is None:
            upstream, tls = (self.server.upstream_host, self.server.upstream_port), self.server.upstream_tls
            if tls is None:
                self._connection = http.client.HTTPConnection(*upstream, timeout=300)
            else:
                self._connection = http.client.HTTPSConnection(*upstream, timeout=300, context=tls)
        return self._connection

    def _forward(self, body):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"content-length"}}
        headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            try:
                connection = self._upstream()
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                return response, response.read()
            except (http.client.HTTPException, OSError):
                self._connection = None
                if attempt == 2:
                    raise

    def _proxy(self):
        body = self._read_body()
        module = self._module()
        response, payload = self._forward(body)
        self.server.record(
            Call(
                service=(SCOPE.search(self.headers.get("Authorization", "")) or [None, "-"])[1],
                operation=operation_of(self.command, self.path, self.headers, body),
                module=module,
                status=response.status,
            )
        )
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and not (key.lower() == "content-length" and self.command != "HEAD"):
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def finish(self):
        if getattr(self, "_connection", None) is not None:
            self._connection.close()
        super().finish()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _proxy


class CountingProxy(ThreadingHTTPServer):
    """Forwards to `upstream` and keeps a list of the calls it forwarded.

    An https upstream is trusted with `cafile`; given `certfile` and `keyfile` the proxy serves TLS
    itself, so the modules speak to it as they would to AWS.
    """

    daemon_threads = True

    def __init__(self, upstream, cafile=None, certfile=None, keyfile=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        split = urlsplit(upstream)
        self.upstream_host, self.upstream_port = split.hostname, split.port
        self.upstream_tls = ssl.create_default_context(cafile=cafile) if split.scheme == "https" else None
        scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server_address[1]}"
        self._calls = []
        self._lock = threading.Lock()
        self._thread = None

    def record(self, call):
        with self._lock:
            self._calls.append(call)

    def take(self):
        """The calls since the last take(), and forget them."""
        with self._lock:
            calls, self._calls = self._calls, []
        return calls

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, name="aws-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()
