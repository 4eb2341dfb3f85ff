#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: join_command
short_description: Hand the kubeadm worker join command over through the cluster's S3 bucket
version_added: 0.1.0
description:
  - With O(state=published), on the control plane, stores the output of
    C(kubeadm token create --print-join-command) in an S3 object, server-side encrypted, with the
    token's expiry in the object's C(expires-at) metadata. A new token is made only when the
    object is missing, expires within O(renew_before), or its token is no longer listed by
    C(kubeadm token list). So workers added days later get a fresh token, never a stale one.
  - With O(state=fetched), on a worker, reads the command with the node's own credentials (its
    instance profile on EC2) and either returns it or writes it to O(dest), readable by root only.
  - With O(state=absent), removes the object with all its versions.
  - The join command is a secret for as long as its token lives. It is never logged by this
    module; a task that returns it (O(state=fetched) without O(dest)) must set C(no_log=true).
author:
  - Helix platform engineering (@helix)
options:
  state:
    description: What to do with the join object.
    type: str
    choices: [published, fetched, absent]
    default: published
  bucket:
    description: The cluster's private bucket.
    type: str
    required: true
  key:
    description: Key of the join object.
    type: str
    default: join/worker
  token_ttl:
    description:
      - Lifetime of a new bootstrap token, as kubeadm's C(--ttl) takes it (C(2h), C(90m), C(1h30m)).
      - C(0) makes a token that never expires; avoid it.
    type: str
    default: 2h
  renew_before:
    description: A stored command that expires within this duration is replaced.
    type: str
    default: 30m
  kubeadm_path:
    description: The kubeadm executable; a bare name is looked up on C(PATH) and in C(/usr/local/bin).
    type: str
    default: kubeadm
  kubeconfig:
    description: Admin kubeconfig that kubeadm uses to list and create tokens.
    type: path
    default: /etc/kubernetes/admin.conf
  token_description:
    description: Description of a new token, shown by C(kubeadm token list).
    type: str
    default: worker join command published by helix.kubeadm_aws.join_command
  encryption:
    description: Server-side encryption of the object.
    type: str
    choices: [AES256, aws:kms]
    default: AES256
  kms_key_id:
    description: KMS key for O(encryption=aws:kms); empty uses the account's S3 key.
    type: str
  dest:
    description:
      - With O(state=fetched), write the command to this file (mode C(0600)) instead of returning it.
    type: path
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - helix.kubeadm_aws.aws
attributes:
  check_mode:
    support: full
    description: Reports whether the object would be published, written or removed.
  diff_mode:
    support: none
    description: Not supported; the command is a secret.
"""

EXAMPLES = r"""
- name: Publish a fresh worker join command when the stored one is stale
  helix.kubeadm_aws.join_command:
    state: published
    bucket: "{{ cluster_bucket }}"

- name: Fetch the join command on a worker, into a root-only file
  helix.kubeadm_aws.join_command:
    state: fetched
    bucket: "{{ cluster_bucket }}"
    dest: /etc/kubernetes/join-command

- name: Fetch the join command as a value
  helix.kubeadm_aws.join_command:
    state: fetched
    bucket: "{{ cluster_bucket }}"
  register: join
  no_log: true

- name: Remove the join object
  helix.kubeadm_aws.join_command:
    state: absent
    bucket: "{{ cluster_bucket }}"
"""

RETURN = r"""
bucket:
  description: The bucket of the join object.
  returned: always
  type: str
key:
  description: The key of the join object.
  returned: always
  type: str
token_id:
  description: Public half of the stored token (before the dot); not a secret.
  returned: when the object exists after the task
  type: str
  sample: abcdef
expires_at:
  description: When the stored token expires (UTC, ISO 8601); empty for a token that never expires.
  returned: when the object exists after the task
  type: str
  sample: "2026-01-01T12:00:00Z"
reason:
  description: Why a new command was published.
  returned: when O(state=published) and changed
  type: str
  sample: the join object is missing
api_server_endpoint:
  description: The API server the command joins, C(host:port).
  returned: when O(state=fetched)
  type: str
ca_cert_hashes:
  description: The C(--discovery-token-ca-cert-hash) values of the command.
  returned: when O(state=fetched)
  type: list
  elements: str
command:
  description: The whole join command. A secret; register it only with C(no_log=true).
  returned: when O(state=fetched) and O(dest) is not set
  type: str
token:
  description: The bootstrap token of the command. A secret; register it only with C(no_log).
  returned: when O(state=fetched) and O(dest) is not set
  type: str
"""

import os  # noqa: E402

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import join_command as jc  # noqa: E402
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import (  # noqa: E402
    S3_MISSING,
    BotoCoreError,
    ClientError,
    HelixAWSModule,
    error_code,
)
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.private_files import write_private  # noqa: E402
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.s3_versions import delete_versions  # noqa: E402


def read_object(s3, bucket, key):
    """(body, metadata) of the join object, or (None, {}) when it does not exist."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as e:
        if error_code(e) in S3_MISSING:
            return None, {}
        raise
    return obj["Body"].read().decode("utf-8").strip(), obj.get("Metadata", {})


class Kubeadm:
    def __init__(self, aws):
        self.aws = aws
        p = aws.params
        self.path = p["kubeadm_path"]
        if os.sep not in self.path:
            self.path = aws.get_bin_path(self.path, opt_dirs=["/usr/local/bin", "/usr/bin"])
        elif not os.access(self.path, os.X_OK):
            self.path = None
        self.kubeconfig = p["kubeconfig"]

    def run(self, *args):
        if not self.path:
            return 127, "", f"kubeadm executable {self.aws.params['kubeadm_path']!r} not found"
        return self.aws.run_command([self.path, *args, "--kubeconfig", self.kubeconfig])

    def listed_ids(self):
        rc, out, err = self.run("token", "list")
        if rc != 0:
            raise jc.JoinCommandError(f"kubeadm token list failed (rc={rc}): {err.strip()}")
        return jc.listed_token_ids(out)

    def create(self, ttl, description):
        rc, out, err = self.run("token", "create", "--ttl", ttl, "--description", description, "--print-join-command")
        if rc != 0:
            # stdout would hold the command: never echo it.
            raise jc.JoinCommandError(f"kubeadm token create failed (rc={rc}): {err.strip()}")
        command = out.strip().splitlines()[-1].strip() if out.strip() else ""
        parts = jc.parse(command)
        self.aws.no_log_values.update([command, parts["token"]])
        return command, parts


def publish(aws, s3):
    p = aws.params
    ttl = jc.duration_seconds(p["token_ttl"])
    renew_before = jc.duration_seconds(p["renew_before"])
    if ttl and ttl <= renew_before:
        raise jc.JoinCommandError("token_ttl must be longer than renew_before")
    body, metadata = read_object(s3, p["bucket"], p["key"])
    kubeadm = Kubeadm(aws)
    if body is None:
        reason = "the join object is missing"
    else:
        aws.no_log_values.add(body)
        try:
            listed = kubeadm.listed_ids()
        except jc.JoinCommandError:
            if not aws.check_mode:
                raise
            listed = set()  # before kubeadm init, check mode cannot list tokens
        reason = jc.stale_reason(metadata, body, listed, renew_before)
    if reason is None:
        return False, {"token_id": metadata.get(jc.TOKEN_ID, ""), "expires_at": metadata.get(jc.EXPIRES_AT, "")}
    if aws.check_mode:
        return True, {"reason": reason}
    expires_at = jc.expiry(ttl)
    command, parts = kubeadm.create(p["token_ttl"], p["token_description"])
    put = dict(
        Bucket=p["bucket"],
        Key=p["key"],
        Body=(command + "\n").encode("utf-8"),
        ContentType="text/plain",
        ServerSideEncryption=p["encryption"],
        Metadata={jc.EXPIRES_AT: expires_at, jc.TOKEN_ID: jc.token_id(parts["token"])},
    )
    if p["encryption"] == "aws:kms" and p["kms_key_id"]:
        put["SSEKMSKeyId"] = p["kms_key_id"]
    s3.put_object(**put)
    return True, {"reason": reason, "token_id": jc.token_id(parts["token"]), "expires_at": expires_at}


def write_secret(aws, dest, content):
    """Write content to dest with mode 0600 unless it is already there; returns changed."""
    try:
        with open(dest, encoding="utf-8") as f:
            if f.read() == content and (os.stat(dest).st_mode & 0o077) == 0:
                return False
    except OSError:
        pass
    if not aws.check_mode:
        write_private(dest, content.encode("utf-8"))
    return True


def fetch(aws, s3):
    p = aws.params
    body, metadata = read_object(s3, p["bucket"], p["key"])
    where = f"s3://{p['bucket']}/{p['key']}"
    if body is None:
        raise jc.JoinCommandError(f"no join command at {where}: publish one on the control plane first")
    aws.no_log_values.add(body)
    expires_at = metadata.get(jc.EXPIRES_AT, "")
    moment = jc.parse_time(expires_at)
    if expires_at and (moment is None or moment <= jc.now()):
        raise jc.JoinCommandError(f"the join command at {where} expired at {expires_at}: publish a new one")
    parts = jc.parse(body)
    result = {
        "token_id": jc.token_id(parts["token"]),
        "expires_at": expires_at,
        "api_server_endpoint": parts["api_server_endpoint"],
        "ca_cert_hashes": parts["ca_cert_hashes"],
    }
    if p["dest"]:
        return write_secret(aws, p["dest"], body + "\n"), result
    # Returned on purpose: the caller registers it with no_log.
    aws.no_log_values.discard(body)
    result.update(command=body, token=parts["token"])
    return False, result


def remove(aws, s3):
    """Delete every version of the join object: in a versioned bucket a plain delete only hides it."""
    p = aws.params
    try:
        return delete_versions(s3, p["bucket"], key=p["key"], check_mode=aws.check_mode), {}
    except (BotoCoreError, ClientError) as e:
        if error_code(e) == "NoSuchBucket":
            return False, {}
        raise


def main():
    argument_spec = dict(
        state=dict(type="str", choices=["published", "fetched", "absent"], default="published"),
        bucket=dict(type="str", required=True),
        key=dict(type="str", default="join/worker", no_log=False),
        token_ttl=dict(type="str", default="2h", no_log=False),
        renew_before=dict(type="str", default="30m"),
        kubeadm_path=dict(type="str", default="kubeadm"),
        kubeconfig=dict(type="path", default="/etc/kubernetes/admin.conf"),
        token_description=dict(
            type="str", default="worker join command published by helix.kubeadm_aws.join_command", no_log=False
        ),
        encryption=dict(type="str", choices=["AES256", "aws:kms"], default="AES256"),
        kms_key_id=dict(type="str"),
        dest=dict(type="path"),
    )
    aws = HelixAWSModule(argument_spec, supports_check_mode=True)
    p = aws.params
    s3 = aws.client("s3")
    action = {"published": publish, "fetched": fetch, "absent": remove}[p["state"]]
    try:
        changed, result = action(aws, s3)
    except jc.JoinCommandError as e:
        aws.fail_json(msg=f"join_command: {e}", bucket=p["bucket"], key=p["key"])
    except (BotoCoreError, ClientError) as e:
        aws.fail_json_aws(e, msg=f"join_command: s3://{p['bucket']}/{p['key']}")
    except OSError as e:
        aws.fail_json(msg=f"join_command: cannot write {p['dest']}: {e.strerror}")
    aws.exit_json(changed=changed, bucket=p["bucket"], key=p["key"], **result)


if __name__ == "__main__":
    main()
