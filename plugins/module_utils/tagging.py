# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tags in and out as plain dicts; the cluster ownership tag written once."""

from __future__ import annotations

LAYER_TAG = "helix/layer"
ROLE_TAG = "helix/node-role"


def cluster_tag_key(cluster_name):
    return f"kubernetes.io/cluster/{cluster_name}"


def cluster_tags(cluster_name, layer, **extra):
    tags = {cluster_tag_key(cluster_name): "owned", LAYER_TAG: layer}
    tags.update(extra)
    return tags


def cluster_filter(cluster_name):
    """EC2 Describe* filter that selects everything the cluster owns."""
    return {"Name": f"tag:{cluster_tag_key(cluster_name)}", "Values": ["owned"]}


def to_dict(tag_list):
    return {t["Key"]: t["Value"] for t in tag_list or []}


def to_list(tags):
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_specifications(resource_types, tags):
    return [{"ResourceType": rt, "Tags": to_list(tags)} for rt in resource_types]
