#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: lifecycle_plan
short_description: The ordered steps an operation on one cluster layer implies
version_added: 0.1.0
description:
  - Returns the plan of an operation on one of the cluster's layers C(bootstrap), C(infrastructure),
    C(cluster) and C(application), from the collection's one layer model
    (C(plugins/module_utils/layers.py)).
  - O(operation=create) creates only O(layer); the layers below must already exist.
  - O(operation=update) re-applies O(layer), then every layer above it, bottom-up.
  - O(operation=delete) deletes every layer above O(layer) top-down, then O(layer).
  - O(operation=recreate) is a delete as above, then creates O(layer) and every layer above it, bottom-up.
  - Changes nothing, so it runs the same in check mode; a playbook prints RV(text) before the first step.
author:
  - Helix platform engineering (@helix)
options:
  layer:
    description: The layer the operation is asked for.
    type: str
    required: true
    choices: [bootstrap, infrastructure, cluster, application]
  operation:
    description: What to do to O(layer) (the playbooks' C(lifecycle_action)).
    type: str
    default: create
    choices: [create, update, recreate, delete]
  cluster_name:
    description: Name of the cluster, only for RV(text).
    type: str
  skip_layers:
    description:
      - Layers this inventory cannot host (the playbooks' C(lifecycle_skip_layers)). Their steps stay in
        RV(steps) and RV(text), marked as skipped, and are left out of RV(step_ids).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Nothing is ever changed.
  diff_mode:
    support: none
    description: Not supported.
"""

EXAMPLES = r"""
- name: Plan the deletion of the infrastructure layer and everything above it
  helix.kubeadm_aws.lifecycle_plan:
    layer: infrastructure
    operation: delete
    cluster_name: demo
  register: lifecycle_plan

- name: Show the plan before anything changes
  ansible.builtin.debug:
    msg: "{{ lifecycle_plan.text.splitlines() }}"
"""

RETURN = r"""
steps:
  description: The steps in the order they must run.
  returned: always
  type: list
  elements: dict
  contains:
    layer:
      description: The layer of the step.
      type: str
    action:
      description: What the step does to its layer, C(create) (converge, idempotent) or C(delete).
      type: str
    id:
      description: The step as one word, C(<action>_<layer>).
      type: str
  sample:
    - {layer: application, action: delete, id: delete_application}
    - {layer: cluster, action: delete, id: delete_cluster}
    - {layer: infrastructure, action: delete, id: delete_infrastructure}
step_ids:
  description:
    - The steps to run as ids, for conditions such as C('delete_cluster' in lifecycle_plan.step_ids);
      the steps of O(skip_layers) are left out.
  returned: always
  type: list
  elements: str
  sample: [delete_application, delete_cluster, delete_infrastructure]
text:
  description: The plan as printable lines.
  returned: always
  type: str
  sample: |-
    Plan: delete infrastructure of cluster demo, 3 step(s)
      1. delete application
      2. delete cluster
      3. delete infrastructure
layers:
  description: Every layer, bottom-up.
  returned: always
  type: list
  elements: str
  sample: [bootstrap, infrastructure, cluster, application]
operations:
  description: Every operation there is.
  returned: always
  type: list
  elements: str
  sample: [create, update, recreate, delete]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.helix.kubeadm_aws.plugins.module_utils import layers  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            layer=dict(type="str", required=True, choices=list(layers.LAYERS)),
            operation=dict(type="str", default="create", choices=list(layers.OPERATIONS)),
            cluster_name=dict(type="str"),
            skip_layers=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    layer, operation, skip = module.params["layer"], module.params["operation"], module.params["skip_layers"]
    unknown = sorted(set(skip) - set(layers.LAYERS))
    if unknown:
        module.fail_json(msg=f"lifecycle_skip_layers: unknown layers {unknown}; layers are {', '.join(layers.LAYERS)}")
    steps = layers.plan(layer, operation)
    module.exit_json(
        changed=False,
        steps=[dict(layer=s.layer, action=s.action, id=layers.step_id(s)) for s in steps],
        step_ids=[layers.step_id(s) for s in steps if s.layer not in skip],
        text=layers.plan_text(layer, operation, steps, module.params["cluster_name"], skip),
        layers=list(layers.LAYERS),
        operations=list(layers.OPERATIONS),
    )


if __name__ == "__main__":
    main()
