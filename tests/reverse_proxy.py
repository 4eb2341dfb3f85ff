"""A threaded TLS reverse proxy on a free loopback port that forwards requests unchanged.

Each request goes upstream byte for byte: the same method, path, headers (so SigV4 signatures stay
valid) and body; only hop-by-hop headers are dropped and a chunked body is sent with a
Content-Length. No header is added: moto routes by Content-Type, so one the client did not send
would change what it does. A subclass may answer a request itself by overriding `answer`.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
# Answered by the proxy itself (BaseHTTPRequestHandler sends 100 Continue); botocore does not sign it.
NOT_FORWARDED = HOP_BY_HOP | {"content-length", "expect"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes


@dataclass
class Response:
    status: int
    reason: str = ""
    headers: list = field(default_factory=list)
    body: bytes = b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ReverseProxy

    def log_message(self, *args):
        pass

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _proxy(self):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in NOT_FORWARDED}
        response = self.server.answer(Request(self.command, self.path, headers, self._read_body()))
        self.send_response_only(response.status, response.reason)
        for key, value in response.headers:
            if key.lower() not in HOP_BY_HOP and not (key.lower() == "content-length" and self.command != "HEAD"):
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _proxy


class ReverseProxy(ThreadingHTTPServer):
    """Serves TLS with certfile/keyfile at `url` and forwards to `upstream`, trusted with cafile."""

    daemon_threads = True

    def __init__(self, upstream, cafile, certfile, keyfile):
        super().__init__(("127.0.0.1", 0), _Handler)
        split = urlsplit(upstream)
        self.upstream_host, self.upstream_port = split.hostname, split.port
        self.upstream_tls = ssl.create_default_context(cafile=cafile)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(certfile, keyfile)
        self.url = f"https://127.0.0.1:{self.server_address[1]}"
        self._thread = None

    def finish_request(self, request, client_address):
        # The handshake runs in the request's own thread, so a slow client does not hold up accept().
        try:
            request = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)

    def answer(self, request):
        return self.forward(request)

    def forward(self, request):
        """Send the request upstream on a connection of its own; the upstream's response."""
        connection = http.client.HTTPSConnection(
            self.upstream_host, self.upstream_port, timeout=300, context=self.upstream_tls
        )
        try:
            # http.client sets Content-Length for a body, and for none only on POST, PUT and PATCH.
            connection.request(request.method, request.path, body=request.body or None, headers=request.headers)
            upstream = connection.getresponse()
            return Response(upstream.status, upstream.reason, upstream.getheaders(), upstream.read())
        finally:
            connection.close()

    def start(self):
        self._thread = threading.Thread(target=self.serve_forever, name="reverse-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()
