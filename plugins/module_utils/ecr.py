# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ECR authorization tokens, shared by ecr_pull_secret and ecr_image."""

from __future__ import annotations

import base64


def authorization(aws, ecr, registry_id=None):
    """ECR's authorization data with its decoded user and password and the registry host.

    The token and the password are registered as no_log values, so no output of the module shows them.
    """
    kwargs = {"registryIds": [registry_id]} if registry_id else {}
    data = ecr.get_authorization_token(**kwargs)["authorizationData"][0]
    token = data["authorizationToken"]
    user, _sep, password = base64.b64decode(token).decode().partition(":")
    aws.no_log_values.update([token, password])
    return {
        "token": token,
        "user": user,
        "password": password,
        "host": data["proxyEndpoint"].split("://", 1)[-1].rstrip("/"),
        "expires": data["expiresAt"],
    }
