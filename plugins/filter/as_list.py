# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: as_list
short_description: A list given as a list or as comma-separated text
version_added: 0.2.0
description:
  - Returns a list unchanged, and splits text at commas into its non-empty, trimmed parts.
  - AWX surveys and C(-e key=value) pass lists as text, for example C(127.0.0.0/8,192.0.2.0/24);
    the collection converts each list variable once with this filter and validates the result.
positional: _input
options:
  _input:
    description: A list, or text whose items are separated by commas.
    type: raw
    required: true
author:
  - Helix platform engineering (@helix)
"""

EXAMPLES = r"""
- name: Both give ['127.0.0.0/8', '192.0.2.0/24']
  ansible.builtin.debug:
    msg:
      - "{{ '127.0.0.0/8, 192.0.2.0/24' | helix.kubeadm_aws.as_list }}"
      - "{{ ['127.0.0.0/8', '192.0.2.0/24'] | helix.kubeadm_aws.as_list }}"
"""

RETURN = r"""
_value:
  description: The items.
  type: list
"""


def as_list(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)


class FilterModule:
    def filters(self):
        return {"as_list": as_list}
