# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubeadm join commands: parse them, read kubeadm's token list, and decide when one is stale."""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timedelta, timezone

TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
EXPIRES_AT = "expires-at"
TOKEN_ID = "token-id"


class JoinCommandError(ValueError):
    """A join command or kubeadm output that cannot be understood. Never carries the secret."""


def duration_seconds(text):
    """Seconds of a kubeadm --ttl duration such as 2h, 90m, 1h30m or 3600s; 0 means never expires."""
    if text == "0":
        return 0
    match = DURATION.match(text or "")
    if not text or not match:
        raise JoinCommandError(f"not a duration like 2h, 90m or 1h30m: {text!r}")
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def parse(command):
    """The parts of `kubeadm join HOST:PORT --token T --discovery-token-ca-cert-hash H ...`."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        words = []
    if len(words) < 3 or not words[0].endswith("kubeadm") or words[1] != "join":
        raise JoinCommandError("not a 'kubeadm join' command")
    parts = {"api_server_endpoint": None, "token": None, "ca_cert_hashes": []}
    rest = iter(words[2:])
    for word in rest:
        if word in ("--token", "--discovery-token-ca-cert-hash"):
            value = next(rest, None)
        elif word.startswith(("--token=", "--discovery-token-ca-cert-hash=")):
            word, value = word.split("=", 1)
        elif not word.startswith("-") and parts["api_server_endpoint"] is None:
            parts["api_server_endpoint"] = word
            continue
        else:
            continue
        if word == "--token":
            parts["token"] = value
        else:
            parts["ca_cert_hashes"].append(value)
    if not parts["api_server_endpoint"] or not TOKEN.match(parts["token"] or "") or not parts["ca_cert_hashes"]:
        raise JoinCommandError("the join command lacks the API endpoint, a valid token or the CA certificate hash")
    return parts


def token_id(token):
    """The public half of a bootstrap token (before the dot); safe to log."""
    return token.split(".", 1)[0]


def listed_token_ids(output):
    """Token ids in the text output of `kubeadm token list` (first column, header skipped)."""
    ids = set()
    for line in (output or "").splitlines():
        first = line.split(None, 1)[0] if line.strip() else ""
        match = TOKEN.match(first)
        if match:
            ids.add(match.group(1))
    return ids


def now():
    return datetime.now(timezone.utc).replace(microsecond=0)


def format_time(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    try:
        return datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def expiry(ttl_seconds, at=None):
    """expires-at metadata value for a token made now with the given TTL; empty for a TTL of 0."""
    if ttl_seconds == 0:
        return ""
    return format_time((at or now()) + timedelta(seconds=ttl_seconds))


def stale_reason(metadata, command, listed_ids, renew_before, at=None):
    """Why a stored join command must be replaced, or None while it is still good.

    metadata: the object's user metadata; command: its body; listed_ids: ids from `kubeadm token list`;
    renew_before: seconds of validity a command must still have to be kept.
    """
    try:
        parts = parse(command)
    except JoinCommandError:
        return "the stored object is not a kubeadm join command"
    if token_id(parts["token"]) not in listed_ids:
        return "its token is no longer listed by kubeadm"
    expires_at = metadata.get(EXPIRES_AT, "")
    if expires_at:
        moment = parse_time(expires_at)
        if moment is None:
            return f"its {EXPIRES_AT} metadata is not a UTC time: {expires_at!r}"
        if moment <= (at or now()) + timedelta(seconds=renew_before):
            return f"it expires at {expires_at}"
    return None
