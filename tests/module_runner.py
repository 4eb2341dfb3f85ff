"""Run one of our modules in-process, as Ansible would, and return its result."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from tests.aws_endpoint import CREDENTIALS, REGION


def run_module(capsys, module, args, aws=None, check_mode=False):
    """Call module.main() with args; returns the result it printed (with 'failed' set on failure)."""
    args = dict(args)
    if aws is not None:
        args.update(
            endpoint_url=aws.url,
            region=REGION,
            access_key=CREDENTIALS["aws_access_key_id"],
            secret_key=CREDENTIALS["aws_secret_access_key"],
        )
    if check_mode:
        args["_ansible_check_mode"] = True
    args["_ansible_diff"] = True
    capsys.readouterr()
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)
