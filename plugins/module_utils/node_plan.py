# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which nodes of a node group to launch and which to remove; no AWS calls here.

Nodes of a group are interchangeable, as in an Auto Scaling group: the plan keeps the subnets
(one per availability zone) balanced. New nodes go to the subnets with the fewest nodes, first
subnet first on a tie. Scale-down takes the newest node of the subnets with the most nodes, so the
oldest nodes stay and the zones stay balanced.
"""

from __future__ import annotations

ROLE_NAMES = {"control_plane": "control-plane", "worker": "worker"}


def group_name(cluster_name, role):
    """The Name tag every node of the group carries (roles/nodes names its launch template alike)."""
    return f"{cluster_name}-{ROLE_NAMES[role]}"


def plan_nodes(nodes, count, subnet_ids):
    """Plan a node group change.

    nodes: the live nodes as (node id, subnet id) pairs, oldest first.
    subnet_ids: the subnets new nodes may go to, in order.
    Returns (launch, terminate): {subnet id: how many to launch}, node ids to terminate.
    """
    members = {subnet: [] for subnet in subnet_ids}
    for age, (node_id, subnet) in enumerate(nodes):
        members.setdefault(subnet, []).append((age, node_id))

    terminate = []
    while len(nodes) - len(terminate) > count:
        fullest = max(members.values(), key=lambda m: (len(m), m[-1][0] if m else -1))
        terminate.append(fullest.pop()[1])

    launch = {}
    while len(nodes) + sum(launch.values()) < count:
        emptiest = min(subnet_ids, key=lambda s: len(members[s]) + launch.get(s, 0))
        launch[emptiest] = launch.get(emptiest, 0) + 1
    return launch, terminate
