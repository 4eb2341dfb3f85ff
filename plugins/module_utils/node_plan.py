# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which nodes of a node group to create and which to remove; no AWS calls here.

Nodes are numbered from 1. Node N lives in subnet (N - 1) mod len(subnets), so a group
spreads round-robin over availability zones and a node keeps its name and zone for life.
Scale-down removes the highest numbers first.
"""

from __future__ import annotations

ROLE_NAMES = {"control_plane": "control-plane", "worker": "worker"}


def node_name(cluster_name, role, number):
    return f"{cluster_name}-{ROLE_NAMES[role]}-{number:02d}"


def subnet_for(number, subnet_ids):
    return subnet_ids[(number - 1) % len(subnet_ids)]


def plan_nodes(numbers, unnumbered, count):
    """Plan a node group change.

    numbers: node numbers of the live instances that carry one.
    unnumbered: ids of live instances of the group without a number (a launch cut short).
    Returns (keep, adopt, create, terminate_numbers, terminate_unnumbered):
    numbers kept, {instance id: number} given to unnumbered instances,
    numbers to launch, numbers to terminate, unnumbered ids to terminate.
    """
    ordered = sorted(numbers)
    keep = ordered[:count]
    terminate = ordered[count:]
    free = _free_numbers(set(keep), count - len(keep))
    adopt = dict(zip(unnumbered, free))
    create = free[len(adopt) :]
    terminate_unnumbered = [i for i in unnumbered if i not in adopt]
    return keep, adopt, create, terminate, terminate_unnumbered


def _free_numbers(taken, wanted):
    free, number = [], 1
    while len(free) < wanted:
        if number not in taken:
            free.append(number)
        number += 1
    return free


def batches_by_subnet(numbers, subnet_ids):
    """Group node numbers by their subnet: one RunInstances call per subnet."""
    batches = {}
    for number in sorted(numbers):
        batches.setdefault(subnet_for(number, subnet_ids), []).append(number)
    return batches
