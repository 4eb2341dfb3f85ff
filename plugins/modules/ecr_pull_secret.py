#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ecr_pull_secret
short_description: Image pull secrets for ECR that are refreshed before the token expires
version_added: 0.1.0
description:
  - Gets an ECR authorization token and writes it as a C(kubernetes.io/dockerconfigjson) Secret for the
    account's registry host in each of O(namespaces).
  - Records in annotations when the token was issued (C(helix.io/ecr-token-issued-at)), when it expires
    (C(helix.io/ecr-token-expires-at)) and for which registry (C(helix.io/ecr-registry)).
  - Writes a Secret only when it is missing, holds no credentials for the registry, was made for another
    registry, or expires within O(refresh_before_expiry). A re-run while the token is fresh changes nothing,
    so running the module from a schedule more often than every 12 hours keeps pulls working.
  - Optionally adds the Secret to a service account's C(imagePullSecrets).
  - The token is never returned or logged, and the diff shows the annotations, not the data.
author:
  - Helix platform engineering (@helix)
options:
  name:
    description: Name of the Secret.
    type: str
    default: ecr-pull-secret
  namespaces:
    description: Namespaces to write the Secret to. They must exist.
    type: list
    elements: str
    required: true
  registry_id:
    description:
      - AWS account id of the registry. Defaults to the account of the credentials.
    type: str
  refresh_before_expiry:
    description:
      - Seconds before the recorded expiry at which the Secret counts as stale and is refreshed.
      - ECR tokens are valid for 12 hours; the default refreshes a token that is more than 6 hours old.
    type: int
    default: 21600
  force_refresh:
    description: Write a new token even when the stored one is fresh.
    type: bool
    default: false
  service_account:
    description:
      - Name of a service account in each namespace that gets the Secret in its C(imagePullSecrets).
        Pods created under that account afterwards can pull from the registry without naming the Secret.
      - The service account must exist. With O(state=absent) the Secret is removed from its list.
    type: str
  state:
    description: Whether the Secret should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - helix.kubeadm_aws.aws
requirements:
  - kubernetes >= 24.2.0
notes:
  - If the AWS endpoint reports an expiry that is not in the future (local ECR emulators such as moto do),
    the module warns and assumes the documented token lifetime of 12 hours from issue.
attributes:
  check_mode:
    support: full
    description: The Kubernetes writes are sent as server-side dry runs, so the API server still validates them.
  diff_mode:
    support: full
    description: Shows type, annotations and registry of each Secret; never its data.
"""

EXAMPLES = r"""
- name: Pull secret for the application namespace, used by its default service account
  helix.kubeadm_aws.ecr_pull_secret:
    namespaces: [demo]
    service_account: default
    kubeconfig: ~/.local/state/helix/demo/kubeconfig

- name: Refresh the pull secrets of several namespaces from a schedule (changes only when stale)
  helix.kubeadm_aws.ecr_pull_secret:
    name: ecr-pull-secret
    namespaces: [demo, tools]
    refresh_before_expiry: 14400
"""

RETURN = r"""
registry:
  description: Registry host the credentials are for.
  returned: when O(state=present)
  type: str
  sample: 123456789012.dkr.ecr.us-east-1.amazonaws.com
secrets:
  description: One entry per namespace, in the order of O(namespaces).
  returned: always
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace of the Secret.
      type: str
    name:
      description: Name of the Secret.
      type: str
    action:
      description: What was done.
      type: str
      sample: refreshed
      choices: [created, refreshed, unchanged, deleted, absent]
    reason:
      description: Why the Secret was written; null when it was fresh.
      type: str
      returned: when O(state=present)
      sample: expiring
      choices: [missing, for another registry, no recorded expiry, expiring, forced]
    issued_at:
      description: When the stored token was issued (UTC, ISO 8601).
      type: str
      sample: "2026-11-25T03:00:00Z"
    expires_at:
      description: When the stored token expires (UTC, ISO 8601).
      type: str
      sample: "2026-11-25T15:00:00Z"
"""

import base64  # noqa: E402 - imports follow the documentation in Ansible modules
import json  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

from ansible.module_utils.basic import missing_required_lib  # noqa: E402

from ansible_collections.helix.kubeadm_aws.plugins.module_utils.aws import BotoCoreError, ClientError, HelixAWSModule  # noqa: E402
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.ecr import authorization  # noqa: E402
from ansible_collections.helix.kubeadm_aws.plugins.module_utils.k8s import (  # noqa: E402
    KUBERNETES_IMPORT_ERROR,
    ApiException,
    ConfigException,
    CoreException,
    HTTPError,
    KubeClient,
    error_message,
    k8s_argument_spec,
)

ISSUED_AT = "helix.io/ecr-token-issued-at"
EXPIRES_AT = "helix.io/ecr-token-expires-at"
REGISTRY = "helix.io/ecr-registry"
MANAGED_BY = "helix.kubeadm_aws.ecr_pull_secret"
SECRET_TYPE = "kubernetes.io/dockerconfigjson"
TOKEN_LIFETIME = timedelta(hours=12)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_time(moment):
    return moment.astimezone(timezone.utc).strftime(TIME_FORMAT)


def parse_time(text):
    try:
        return datetime.strptime(text or "", TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def get_token(aws, registry_id):
    """The token, its registry host and its validity, with the token hidden from every output."""
    data = authorization(aws, aws.client("ecr"), registry_id)
    issued = datetime.now(timezone.utc).replace(microsecond=0)
    expires = data["expires"]
    if expires <= issued:
        aws.warn(f"ECR reported the token expiring at {format_time(expires)}, not in the future; assuming 12h")
        expires = issued + TOKEN_LIFETIME
    return {**data, "issued": issued, "expires": expires}


def stored_hosts(secret):
    """Registry hosts the Secret holds credentials for (empty when unreadable)."""
    try:
        config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
        return {host for host, entry in config["auths"].items() if entry.get("auth") or entry.get("password")}
    except (KeyError, TypeError, ValueError, AttributeError):
        return set()


def stale_reason(secret, host, refresh_before, now):
    """Why the Secret must be written, or None when its token is fresh."""
    if secret is None:
        return "missing"
    annotations = secret["metadata"].get("annotations") or {}
    if annotations.get(REGISTRY) != host or host not in stored_hosts(secret):
        return "for another registry"
    expires = parse_time(annotations.get(EXPIRES_AT))
    if expires is None:
        return "no recorded expiry"
    if expires - now <= refresh_before:
        return "expiring"
    return None


def secret_body(params, namespace, token):
    config = {"auths": {token["host"]: {"username": "AWS", "password": token["password"], "auth": token["token"]}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {
            "name": params["name"],
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
            "annotations": {
                ISSUED_AT: format_time(token["issued"]),
                EXPIRES_AT: format_time(token["expires"]),
                REGISTRY: token["host"],
            },
        },
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def summary(secret):
    """What the diff and the result may show of a Secret: no data."""
    if secret is None:
        return {}
    annotations = secret["metadata"].get("annotations") or {}
    return {
        "type": secret.get("type"),
        "registry": annotations.get(REGISTRY),
        "issued_at": annotations.get(ISSUED_AT),
        "expires_at": annotations.get(EXPIRES_AT),
    }


def update_service_account(kube, params, namespace, present, check_mode):
    """Add the Secret to (or remove it from) the account's imagePullSecrets; True when changed."""
    account = kube.get("v1", "ServiceAccount", params["service_account"], namespace)
    if account is None:
        if not present:
            return False
        raise LookupError(f"service account {namespace}/{params['service_account']} does not exist")
    current = account.get("imagePullSecrets") or []
    listed = any(ref.get("name") == params["name"] for ref in current)
    if listed == present:
        return False
    others = [ref for ref in current if ref.get("name") != params["name"]]
    wanted = current + [{"name": params["name"]}] if present else others
    patch = {"metadata": {"resourceVersion": account["metadata"]["resourceVersion"]}, "imagePullSecrets": wanted}
    kube.merge_patch("v1", "ServiceAccount", params["service_account"], namespace, patch, dry_run=check_mode)
    return True


def ensure_present(aws, kube, namespace, token, now):
    """Write the Secret when stale; returns (changed, result entry, diff before, diff after)."""
    params = aws.params
    existing = kube.get("v1", "Secret", params["name"], namespace)
    if existing is not None and existing.get("type") != SECRET_TYPE:
        raise LookupError(
            f"Secret {namespace}/{params['name']} exists with type {existing.get('type')}, not {SECRET_TYPE}; "
            "delete it or choose another name"
        )
    reason = "forced" if params["force_refresh"] else None
    reason = reason or stale_reason(existing, token["host"], timedelta(seconds=params["refresh_before_expiry"]), now)
    secret = existing
    if reason:
        secret = kube.apply(secret_body(params, namespace, token), MANAGED_BY, dry_run=aws.check_mode)
    changed = reason is not None
    if params["service_account"]:
        changed |= update_service_account(kube, params, namespace, True, aws.check_mode)
    action = "unchanged" if not reason else ("created" if existing is None else "refreshed")
    after = summary(secret)
    entry = dict(namespace=namespace, name=params["name"], action=action, reason=reason)
    entry.update(issued_at=after["issued_at"], expires_at=after["expires_at"])
    return changed, entry, summary(existing), after


def ensure_absent(aws, kube, namespace):
    params = aws.params
    existing = kube.get("v1", "Secret", params["name"], namespace)
    changed = False
    if params["service_account"]:
        changed |= update_service_account(kube, params, namespace, False, aws.check_mode)
    if existing is not None:
        changed = True
        kube.delete("v1", "Secret", params["name"], namespace, dry_run=aws.check_mode)
    entry = dict(namespace=namespace, name=params["name"], action="deleted" if existing is not None else "absent")
    return changed, entry, summary(existing), {}


def main():
    argument_spec = k8s_argument_spec()
    argument_spec.update(
        name=dict(type="str", default="ecr-pull-secret"),
        namespaces=dict(type="list", elements="str", required=True),
        registry_id=dict(type="str"),
        refresh_before_expiry=dict(type="int", default=21600),
        force_refresh=dict(type="bool", default=False),
        service_account=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    aws = HelixAWSModule(argument_spec, supports_check_mode=True)
    if KUBERNETES_IMPORT_ERROR:
        aws.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    params = aws.params
    result = dict(changed=False, secrets=[], diff=dict(before={}, after={}))
    try:
        kube = KubeClient(params)
    except (ApiException, ConfigException, CoreException, HTTPError) as e:
        aws.fail_json(msg=f"ecr_pull_secret: cannot load the kubeconfig: {error_message(e)}")
    try:
        token = get_token(aws, params["registry_id"]) if params["state"] == "present" else None
        now = datetime.now(timezone.utc)
        for namespace in params["namespaces"]:
            if token:
                changed, entry, before, after = ensure_present(aws, kube, namespace, token, now)
            else:
                changed, entry, before, after = ensure_absent(aws, kube, namespace)
            result["changed"] |= changed
            result["secrets"].append(entry)
            result["diff"]["before"][namespace] = before
            result["diff"]["after"][namespace] = after
        if token:
            result["registry"] = token["host"]
    except (BotoCoreError, ClientError) as e:
        aws.fail_json_aws(e, msg="ecr_pull_secret: could not get an ECR authorization token")
    except (ApiException, ConfigException, CoreException, HTTPError) as e:
        aws.fail_json(msg=f"ecr_pull_secret: Kubernetes API: {error_message(e)}", **result)
    except LookupError as e:
        aws.fail_json(msg=f"ecr_pull_secret: {e}", **result)
    finally:
        kube.close()
    aws.exit_json(**result)


if __name__ == "__main__":
    main()
