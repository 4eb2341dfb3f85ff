# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  region:
    description:
      - The AWS region to use.
      - The C(AWS_REGION) or C(AWS_DEFAULT_REGION) environment variables may also be used.
    type: str
    aliases: [aws_region]
  endpoint_url:
    description:
      - URL of the AWS API endpoint to talk to instead of the public AWS endpoints,
        for example a local moto server C(http://127.0.0.1:5000).
      - The C(HELIX_AWS_ENDPOINT_URL) environment variable may also be used.
    type: str
    aliases: [aws_endpoint_url]
  access_key:
    description:
      - AWS access key ID. The C(AWS_ACCESS_KEY_ID) environment variable may also be used.
    type: str
    aliases: [aws_access_key_id, aws_access_key]
  secret_key:
    description:
      - AWS secret access key. The C(AWS_SECRET_ACCESS_KEY) environment variable may also be used.
    type: str
    aliases: [aws_secret_access_key, aws_secret_key]
  session_token:
    description:
      - AWS STS session token for temporary credentials.
    type: str
    aliases: [aws_session_token]
  profile:
    description:
      - A named AWS profile. The C(AWS_PROFILE) environment variable may also be used.
    type: str
    aliases: [aws_profile]
  aws_ca_bundle:
    description:
      - CA bundle to verify the endpoint's TLS certificate with, for example the local endpoint's own.
      - The C(AWS_CA_BUNDLE) environment variable may also be used.
    type: path
requirements:
  - python >= 3.9
  - boto3 >= 1.34
  - botocore >= 1.34
notes:
  - The same options are accepted by the C(amazon.aws) modules, so one C(module_defaults) entry
    for C(group/helix.kubeadm_aws.aws) configures both.
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
