# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Deleting from a versioned bucket: a plain delete only hides an object behind a delete marker."""

from __future__ import annotations


def delete_versions(s3, bucket, key=None, check_mode=False):
    """Delete every version and delete marker (of `key` only, if given), 1,000 per request.

    Returns whether there was anything to delete; in check mode nothing is deleted.
    """
    query = {"Bucket": bucket, "Prefix": key} if key else {"Bucket": bucket}
    found = False
    for page in s3.get_paginator("list_object_versions").paginate(**query):
        refs = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            if key is None or v["Key"] == key
        ]
        found = found or bool(refs)
        if refs and not check_mode:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": refs, "Quiet": True})
    return found
