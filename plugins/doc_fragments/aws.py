# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The common AWS options come from amazon.aws's fragments (amazon.aws.common.modules,
    # amazon.aws.region.modules, amazon.aws.boto3); this adds what is ours.
    DOCUMENTATION = r"""
options: {}
notes:
  - The option O(endpoint_url) falls back to the environment variable C(HELIX_AWS_ENDPOINT_URL), then
    to C(AWS_URL).
  - Every AWS client retries throttling and transient errors with adaptive, jittered back-off.
  - The options are those of the C(amazon.aws) modules, so one C(module_defaults) entry for
    C(group/helix.kubeadm_aws.aws) configures both.
"""

    CLUSTER = r"""
options:
  cluster_name:
    description:
      - Name of the cluster. Every resource this module makes carries the tag
        C(kubernetes.io/cluster/<cluster_name>=owned), and resources are found by that tag.
    type: str
    required: true
"""
