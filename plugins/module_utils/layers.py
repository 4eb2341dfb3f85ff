# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The layer model: the one place that knows the layers, their order and what each operation implies.

A cluster is four layers, each standing on the ones below it:

    bootstrap < infrastructure < cluster < application

An operation on a layer is a plan: an ordered list of steps (layer, action), where an action is
what a layer playbook does to its own layer and nothing else:

- ``create``: converge the layer to what the variables ask for (idempotent: it makes what is
  missing and corrects what differs, so it is also how a layer is re-applied);
- ``delete``: remove everything of the layer.

Operations on layer L:

- ``create L``   = create L. Only L: the layers below must already exist (preflight of L can check
  for them); the layers above are left alone. Creating everything is ``create`` of each layer
  bottom-up (site.yml), or ``update bootstrap``.
- ``update L``   = create (re-apply) L, then re-apply every layer above it bottom-up, because they
  are built on what L provides (nodes, API server, ...).
- ``delete L``   = delete every layer above L top-down, then L.
- ``recreate L`` = ``delete L``, then create L and every layer above it bottom-up.

Every plan is a subsequence of one canonical order (every delete top-down, then every create
bottom-up), so a playbook that runs the canonical steps, each only when the plan holds it, runs any
plan in the right order: see ``canonical_steps()`` and playbooks/lifecycle.yml.

Pure Python, no Ansible imports: used by the lifecycle_plan module, tools/draw_layers.py and tests.
"""

from __future__ import annotations

from collections import namedtuple

LAYERS = ("bootstrap", "infrastructure", "cluster", "application")

OPERATIONS = ("create", "update", "recreate", "delete")

ACTIONS = ("create", "delete")

# What each layer makes, for the plan text, docs/architecture.md and the picture.
LAYER_CONTENTS = {
    "bootstrap": "S3 bucket, SSH key pair, ECR repositories",
    "infrastructure": "VPC, subnets, routes, security groups, IAM, launch templates, EC2 nodes",
    "cluster": "kubeadm control plane, joined workers, flannel CNI, kubeconfig",
    "application": "three-tier demo app: namespace, deployments, database statefulset, services",
}

Step = namedtuple("Step", ["layer", "action"])


def _check_layer(layer):
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; layers are {', '.join(LAYERS)}")


def layer_index(layer):
    _check_layer(layer)
    return LAYERS.index(layer)


def layers_below(layer):
    """The layers L stands on, bottom-up."""
    return LAYERS[: layer_index(layer)]


def layers_above(layer):
    """The layers standing on L, bottom-up."""
    return LAYERS[layer_index(layer) + 1 :]


def _deletes(layer):
    """Delete every layer above L top-down, then L."""
    return [Step(name, "delete") for name in reversed((layer, *layers_above(layer)))]


def _creates(layer):
    """Create L, then every layer above it bottom-up."""
    return [Step(name, "create") for name in (layer, *layers_above(layer))]


def plan(layer, operation):
    """The ordered steps that ``operation`` on ``layer`` implies."""
    _check_layer(layer)
    if operation == "create":
        return [Step(layer, "create")]
    if operation == "update":
        return _creates(layer)
    if operation == "delete":
        return _deletes(layer)
    if operation == "recreate":
        return _deletes(layer) + _creates(layer)
    raise ValueError(f"unknown operation {operation!r}; operations are {', '.join(OPERATIONS)}")


def canonical_steps():
    """Every step there is, in the one order any plan's steps keep: deletes top-down, then creates."""
    return [Step(name, "delete") for name in reversed(LAYERS)] + [Step(name, "create") for name in LAYERS]


def step_id(step):
    """A step as one word, e.g. ``delete_cluster``: the value playbooks test with ``in``."""
    return f"{step.action}_{step.layer}"


def plan_text(layer, operation, steps=None, cluster_name=None, skip_layers=()):
    """The plan as lines a person reads before anything changes; steps of skip_layers say so."""
    steps = plan(layer, operation) if steps is None else steps
    target = f" of cluster {cluster_name}" if cluster_name else ""
    lines = [f"Plan: {operation} {layer}{target}, {len(steps)} step(s)"]
    for number, step in enumerate(steps, start=1):
        skipped = " - skipped (lifecycle_skip_layers)" if step.layer in skip_layers else ""
        lines.append(f"  {number}. {step.action} {step.layer}{skipped}")
    return "\n".join(lines)
