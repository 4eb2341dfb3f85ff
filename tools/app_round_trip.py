"""Check the demo app from outside, as a user would: the ui page, then a write and a read through it.

    .venv/bin/python tools/app_round_trip.py URL        # or --url-file FILE (the application layer's app-url)

GETs URL (the ui page must be the demo's), POSTs a message to URL/api/messages (the ui proxies /api to
the api, which writes it to the database) and GETs URL/api/messages, which must list it. Prints one line
per step; exits 1 naming the step that failed. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

UI_TITLE = "<title>helix demo</title>"


def fetch(url, data=None, timeout=10):
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read().decode()


def round_trip(url, text=None):
    """The message written and read back; raises AssertionError naming the step that failed."""
    url = url.rstrip("/")
    status, page = fetch(url + "/")
    assert status == 200 and UI_TITLE in page, f"GET {url}/ did not return the demo's ui page ({status})"
    text = text or f"round trip {time.time_ns()}"
    status, body = fetch(url + "/api/messages", json.dumps({"text": text}).encode())
    assert status == 201, f"POST {url}/api/messages answered {status}: {body}"
    status, body = fetch(url + "/api/messages")
    assert status == 200 and text in [m["text"] for m in json.loads(body)], f"GET {url}/api/messages lacks {text!r}"
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("url", nargs="?")
    where.add_argument("--url-file", type=Path)
    args = parser.parse_args()
    url = args.url or args.url_file.read_text().strip()
    try:
        text = round_trip(url)
    except (AssertionError, OSError, ValueError) as failure:
        print(f"{url}: {failure}", file=sys.stderr)
        return 1
    print(f"{url}: the ui page answers; {text!r} was written through the api and read back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
