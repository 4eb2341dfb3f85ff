# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""botocore waiters, wrapped once: one clock (timeout in seconds) and one poll interval."""

from __future__ import annotations

POLL_SECONDS = 5


def wait(client, waiter_name, timeout=600, **query):
    """Block until the waiter's condition holds for everything in `query`, or raise after `timeout`."""
    client.get_waiter(waiter_name).wait(
        WaiterConfig={"Delay": POLL_SECONDS, "MaxAttempts": max(1, timeout // POLL_SECONDS)}, **query
    )
