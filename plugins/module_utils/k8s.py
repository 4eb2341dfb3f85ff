# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Our Kubernetes verbs on kubernetes.core's client and auth options.

kubernetes.core builds the client (kubeconfig or host/token/certificates, context, proxy,
impersonation, the K8S_AUTH_* environment variables); what is ours is a few verbs on it, with
objects in and out as plain dicts. Writes take ``dry_run`` so that check mode is a server-side
dry run: the API server validates and admits the change but stores nothing.
"""

from __future__ import annotations

import copy
import json
import traceback

from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError
except ImportError:
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()
    ApiException = ConfigException = HTTPError = CoreException = Exception
else:
    KUBERNETES_IMPORT_ERROR = None

__all__ = [
    "ApiException",
    "ConfigException",
    "CoreException",
    "HTTPError",
    "K8S_ERRORS",
    "KUBERNETES_IMPORT_ERROR",
    "KubeClient",
    "error_message",
    "k8s_argument_spec",
]

K8S_ERRORS = (ApiException, ConfigException, CoreException, HTTPError)


def k8s_argument_spec():
    """A private copy of kubernetes.core's auth options, safe for a module to change.

    Our Kubernetes modules are AWS modules too, whose options also name validate_certs: one option
    verifies both APIs' certificates, and verifies them unless told not to.
    """
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec["validate_certs"]["default"] = True
    return spec


def error_message(error):
    """HTTP status and the API server's own message, never the request body."""
    status = getattr(error, "status", None)
    if status is None:
        return str(error)
    try:
        message = json.loads(error.body).get("message", error.reason)
    except (TypeError, ValueError, AttributeError):
        message = error.reason
    return f"{status} {message}"


class KubeClient:
    """A Kubernetes API client made by kubernetes.core from a module's auth options."""

    def __init__(self, params):
        auth = {name: params.get(name) for name in AUTH_ARG_SPEC}
        self.dynamic = get_api_client(**auth).client
        self.api = self.dynamic.client

    def close(self):
        self.api.close()

    def resource(self, api_version, kind):
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def get(self, api_version, kind, name, namespace=None):
        """The object as a dict, or None when it does not exist."""
        try:
            return self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def apply(self, body, field_manager, dry_run=False):
        """Server-side apply of a whole object; this manager's fields win over others'."""
        meta = body["metadata"]
        return (
            self.resource(body["apiVersion"], body["kind"])
            .server_side_apply(
                body=body,
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=field_manager,
                force_conflicts=True,
                dry_run="All" if dry_run else None,
            )
            .to_dict()
        )

    def merge_patch(self, api_version, kind, name, namespace, patch, dry_run=False):
        """JSON merge patch; put metadata.resourceVersion in the patch to fail on a concurrent change."""
        return (
            self.resource(api_version, kind)
            .patch(
                body=patch,
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                dry_run="All" if dry_run else None,
            )
            .to_dict()
        )

    def delete(self, api_version, kind, name, namespace=None, dry_run=False):
        """Delete the object; True when it existed."""
        try:
            self.resource(api_version, kind).delete(name=name, namespace=namespace, dry_run="All" if dry_run else None)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True
