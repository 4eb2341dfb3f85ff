#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_state
short_description: Keep the controller's state of a cluster in the cluster's bucket, and get it back
version_added: 0.2.0
description:
  - The controller keeps a cluster's generated SSH key and admin kubeconfig in one directory. A run
    on another machine, or a new AWX job with an empty private data directory, has none of it.
    This module keeps a copy of those files in the cluster's private bucket under O(prefix), and
    brings missing ones back.
  - With O(state=saved), uploads each of O(files) from O(directory) whose content differs from the
    stored copy, server-side encrypted.
  - With O(state=restored), downloads each of O(files) that is missing from O(directory) and stored
    in the bucket, with mode C(0600) in a C(0700) directory. A missing bucket restores nothing.
  - With O(state=absent), removes the stored copies (every version) and the local files.
  - The bucket is private, TLS only and encrypted; the nodes' instance profiles may read only the
    join command (C(join/)), never O(prefix). File contents are never returned or logged.
author:
  - Helix platform engineering (@helix)
options:
  state:
    description: What to do with the state files.
    type: str
    choices: [saved, restored, absent]
    default: restored
  bucket:
    description: The cluster's private bucket.
    type: str
    required: true
  directory:
    description: The cluster's state directory on the controller.
    type: path
    required: true
  files:
    description: Names of the state files, relative to O(directory).
    type: list
    elements: str
    default: [id_ed25519, id_ed25519.pub, kubeconfig]
  prefix:
    description: Key prefix of the stored copies.
    type: str
    default: state/
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - helix.kubeadm_aws.aws
attributes:
  check_mode:
    support: full
    description: Reports which files would be uploaded, downloaded or removed.
  diff_mode:
    support: none
    description: Not supported; the files are secrets.
"""

EXAMPLES = r"""
- name: Bring back the key and kubeconfig a run on another machine kept
  helix.kubeadm_aws.cluster_state:
    state: restored
    bucket: "{{ cluster_bucket }}"
    directory: ~/.local/state/helix/demo

- name: Keep the admin kubeconfig for later runs and jobs
  helix.kubeadm_aws.cluster_state:
    state: saved
    bucket: "{{ cluster_bucket }}"
    directory: ~/.local/state/helix/demo
    files: [kubeconfig]
"""

RETURN = r"""
files:
  description: The state files this task uploaded, downloaded or removed (or would, in check mode).
  returned: always
  type: list
  elements: str
  sample: [kubeconfig]
"""

import hashlib  # noqa: E402
import os  # noqa: E402

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import (  # noqa: E402
    S3_MISSING,
    BotoCoreError,
    ClientError,
    HelixAWSModule,
    error_code,
)
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.private_files import write_private  # noqa: E402
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.s3_versions import delete_versions  # noqa: E402

MISSING = S3_MISSING + ("NoSuchBucket",)


def read_local(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def stored_md5(s3, bucket, key):
    """MD5 of the stored copy, recorded in its metadata when it was saved; None when there is none."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)["Metadata"].get("md5")
    except ClientError as e:
        if error_code(e) in MISSING:
            return None
        raise


def save(module, s3, key_of, path_of):
    changed = []
    for name in module.params["files"]:
        content = read_local(path_of(name))
        if content is None:
            continue
        md5 = hashlib.md5(content).hexdigest()  # a change detector, not a security function
        if stored_md5(s3, module.params["bucket"], key_of(name)) == md5:
            continue
        changed.append(name)
        if not module.check_mode:
            s3.put_object(
                Bucket=module.params["bucket"],
                Key=key_of(name),
                Body=content,
                ServerSideEncryption="AES256",
                Metadata={"md5": md5},
            )
    return changed


def restore(module, s3, key_of, path_of):
    changed = []
    for name in module.params["files"]:
        if os.path.exists(path_of(name)):
            continue
        try:
            body = s3.get_object(Bucket=module.params["bucket"], Key=key_of(name))["Body"].read()
        except ClientError as e:
            if error_code(e) in MISSING:
                continue
            raise
        changed.append(name)
        if not module.check_mode:
            write_private(path_of(name), body)
    return changed


def remove(module, s3, key_of, path_of):
    changed = []
    for name in module.params["files"]:
        try:
            stored = delete_versions(s3, module.params["bucket"], key=key_of(name), check_mode=module.check_mode)
        except ClientError as e:
            if error_code(e) != "NoSuchBucket":
                raise
            stored = False
        local = os.path.exists(path_of(name))
        if local and not module.check_mode:
            os.unlink(path_of(name))
        if stored or local:
            changed.append(name)
    return changed


def main():
    argument_spec = dict(
        state=dict(type="str", choices=["saved", "restored", "absent"], default="restored"),
        bucket=dict(type="str", required=True),
        directory=dict(type="path", required=True),
        files=dict(type="list", elements="str", default=["id_ed25519", "id_ed25519.pub", "kubeconfig"]),
        prefix=dict(type="str", default="state/"),
    )
    module = HelixAWSModule(argument_spec, supports_check_mode=True)
    p = module.params
    action = {"saved": save, "restored": restore, "absent": remove}[p["state"]]
    try:
        files = action(
            module,
            module.client("s3"),
            lambda name: p["prefix"] + name,
            lambda name: os.path.join(p["directory"], name),
        )
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"cluster_state: s3://{p['bucket']}/{p['prefix']}")
    except OSError as e:
        module.fail_json(msg=f"cluster_state: {p['directory']}: {e.strerror}")
    module.exit_json(changed=bool(files), files=files)


if __name__ == "__main__":
    main()
