"""The demo api: /healthz, /readyz and /api/messages (read and write the db), stdlib HTTP + pg8000.

The table is made by the db image (db/init.sql).

Configuration from the environment: DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD, PORT.
"""

from __future__ import annotations

import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pg8000.native


def connect():
    return pg8000.native.Connection(
        user=os.environ.get("DB_USER", "app"),
        password=os.environ.get("DB_PASSWORD", ""),
        host=os.environ.get("DB_HOST", "db"),
        port=int(os.environ.get("DB_PORT", "5432")),
        database=os.environ.get("DB_NAME", "app"),
        timeout=5,
    )


def query(sql, **params):
    db = connect()
    try:
        return db.run(sql, **params)
    finally:
        db.close()


class Handler(BaseHTTPRequestHandler):
    server_version = "helix-demo-api/1"

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - the name http.server calls
        if self.path == "/healthz":
            self.reply(200, {"status": "ok", "host": socket.gethostname()})
        elif self.path == "/readyz":
            try:
                query("SELECT 1")
                self.reply(200, {"status": "ready"})
            except Exception as e:  # the probe reports any db failure as not ready
                self.reply(503, {"status": "db unavailable", "error": type(e).__name__})
        elif self.path == "/api/messages":
            rows = query("SELECT id, text, created FROM messages ORDER BY id DESC LIMIT 20")
            self.reply(200, [{"id": i, "text": t, "created": c.isoformat()} for i, t, c in rows])
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):  # noqa: N802
        if self.path != "/api/messages":
            self.reply(404, {"error": "not found"})
            return
        try:
            length = min(int(self.headers.get("Content-Length", "0")), 4096)
            text = str(json.loads(self.rfile.read(length) or b"{}")["text"])[:200]
        except (ValueError, KeyError, TypeError):
            self.reply(400, {"error": 'expected {"text": "..."}'})
            return
        (row,) = query("INSERT INTO messages (text) VALUES (:text) RETURNING id", text=text)
        self.reply(201, {"id": row[0], "text": text})


def main():
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
