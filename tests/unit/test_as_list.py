"""The as_list filter: list variables given as lists or as the comma-separated text of AWX surveys."""

from __future__ import annotations

import pytest

from ansible_collections.helix.kubeadm_aws.plugins.filter.as_list import as_list


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.0/8,192.0.2.0/24", ["127.0.0.0/8", "192.0.2.0/24"]),
        (" 127.0.0.0/8 , 192.0.2.0/24 ,", ["127.0.0.0/8", "192.0.2.0/24"]),
        ("203.0.113.7/32", ["203.0.113.7/32"]),
        ("", []),
        (None, []),
        (["ui", "api"], ["ui", "api"]),
        ([], []),
    ],
)
def test_as_list(value, expected):
    assert as_list(value) == expected
