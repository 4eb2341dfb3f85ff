# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An image archive and the Docker Registry HTTP API v2, as much as pushing one image takes.

ImageArchive reads the one image of a tar that is an OCI image layout (oci-layout, index.json,
blobs/sha256/<hex>), as demo_app/build_images.py writes it: the manifest's exact bytes (so the
registry computes the digest index.json names), its media type and the blobs it refers to.

Registry speaks HTTPS with ansible.module_utils.urls: HEAD for a tag's digest and for a blob,
POST then monolithic PUT for a blob upload, PUT for the manifest. Its credentials go only to the
registry's own host, never along a redirect or to an upload Location on another host.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from urllib.error import HTTPError
from urllib.parse import quote, urlencode, urljoin, urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
# A tag may point to any of these; asking for all of them gets its digest whatever it is.
ACCEPT = ", ".join(MANIFEST_TYPES + (DOCKER_LIST, OCI_INDEX))
TIMEOUT = 60  # seconds without progress on one request
USER_AGENT = "helix.kubeadm_aws"


class ArchiveError(Exception):
    """The archive is not an OCI image layout holding one image."""


class RegistryError(Exception):
    """A request the registry refused or that did not reach it."""

    def __init__(self, what, status=None, codes=(), detail=""):
        self.what, self.status, self.codes, self.detail = what, status, tuple(codes), detail
        super().__init__(what + (f": HTTP {status}" if status else "") + (f": {detail}" if detail else ""))


def blob_path(digest):
    algorithm, hexdigest = digest.split(":", 1)
    return f"blobs/{algorithm}/{hexdigest}"


class ImageArchive:
    """The one image of an OCI image layout tar; a context manager that keeps the tar open."""

    def __init__(self, path):
        try:
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
        except (OSError, tarfile.TarError) as e:
            raise ArchiveError(f"cannot read {path}: {e}") from e
        try:
            self._members = {posixpath.normpath(m.name.lstrip("/")): m for m in self._tar.getmembers() if m.isfile()}
            descriptor = self._descriptor(path)
            self.digest = descriptor["digest"]
            self.manifest = self._read(blob_path(self.digest), path)
            if "sha256:" + hashlib.sha256(self.manifest).hexdigest() != self.digest:
                raise ArchiveError(f"{path}: the manifest's bytes do not have the digest {self.digest} of index.json")
            manifest = json.loads(self.manifest)
            self.media_type = manifest.get("mediaType") or descriptor.get("mediaType")
            if self.media_type not in MANIFEST_TYPES:
                raise ArchiveError(
                    f"{path}: the image's manifest has media type {self.media_type}, not one of "
                    f"{', '.join(MANIFEST_TYPES)} (multi-platform indexes are not supported)"
                )
            self.blobs = self._blobs(manifest, path)
        except (ArchiveError, tarfile.TarError, OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            self.close()
            if isinstance(e, ArchiveError):
                raise
            raise ArchiveError(f"{path} is not an OCI image layout with one image: {e!r}") from e

    def _read(self, name, path):
        member = self._members.get(name)
        if member is None:
            raise ArchiveError(f"{path} has no {name}")
        return self._tar.extractfile(member).read()

    def _descriptor(self, path):
        if "oci-layout" not in self._members:
            raise ArchiveError(f"{path} is not an OCI image layout (no oci-layout file)")
        manifests = json.loads(self._read("index.json", path)).get("manifests") or []
        if len(manifests) != 1:
            raise ArchiveError(f"{path} names {len(manifests)} images in its index.json; one is expected")
        return manifests[0]

    def _blobs(self, manifest, path):
        """The config and layer descriptors, once each, after checking that the archive holds them."""
        blobs = {}
        for descriptor in [manifest["config"], *manifest["layers"]]:
            digest, size = descriptor["digest"], descriptor["size"]
            member = self._members.get(blob_path(digest))
            if member is None:
                raise ArchiveError(f"{path} lacks the blob {digest} that its manifest refers to")
            if member.size != size:
                raise ArchiveError(f"{path}: blob {digest} has {member.size} bytes, the manifest says {size}")
            blobs[digest] = size
        return blobs

    def open_blob(self, digest):
        return self._tar.extractfile(self._members[blob_path(digest)])

    def close(self):
        self._tar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def upload_url(request_url, location, digest):
    """Where to PUT the blob: the Location of the upload (relative to the request or absolute) with its digest."""
    url = urljoin(request_url, location)
    separator = "&" if urlsplit(url).query else "?"
    return url + separator + urlencode({"digest": digest})


class Registry:
    """The registry at url (scheme and host), with HTTP basic credentials for that host only."""

    def __init__(self, url, username, password, validate_certs=True, ca_path=None):
        self.url = url.rstrip("/")
        self._host = urlsplit(self.url).netloc
        self._credentials = (username, password)
        self._tls = dict(validate_certs=validate_certs, ca_path=ca_path)

    def _open(self, what, method, url, data=None, headers=None, follow_redirects="urllib2"):
        headers = dict(headers or {})
        auth = {}
        if urlsplit(url).netloc == self._host:
            auth = dict(url_username=self._credentials[0], url_password=self._credentials[1], force_basic_auth=True)
        try:
            return open_url(
                url,
                data=data,
                headers=headers,
                method=method,
                timeout=TIMEOUT,
                follow_redirects=follow_redirects,
                unredirected_headers=["Authorization"],
                use_netrc=False,
                http_agent=USER_AGENT,
                **auth,
                **self._tls,
            )
        except HTTPError as e:
            raise error_from_response(what, e) from None
        except (OSError, UrlsConnectionError) as e:
            raise RegistryError(what, detail=f"no answer: {getattr(e, 'reason', e)}") from None

    def _repository_url(self, repository, kind, reference=""):
        return f"{self.url}/v2/{quote(repository)}/{kind}/{quote(reference, safe=':')}"

    def tag_digest(self, repository, tag):
        """The digest of the manifest the tag points to; None when there is no such tag."""
        url = self._repository_url(repository, "manifests", tag)
        try:
            response = self._open(f"HEAD {url}", "HEAD", url, headers={"Accept": ACCEPT})
        except RegistryError as e:
            if e.status == 404:
                return None
            raise
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:  # the header is optional: the digest of the bytes then
            body = self._open(f"GET {url}", "GET", url, headers={"Accept": ACCEPT}).read()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        return digest

    def has_blob(self, repository, digest):
        url = self._repository_url(repository, "blobs", digest)
        try:
            # A redirect (to the registry's storage) also means the blob is there.
            self._open(f"HEAD {url}", "HEAD", url, follow_redirects="none")
        except RegistryError as e:
            if e.status == 404:
                return False
            if e.status and 300 <= e.status < 400:
                return True
            raise
        return True

    def upload_blob(self, repository, digest, size, stream):
        """POST an upload, then PUT the whole blob to its Location (relative or absolute)."""
        start = self._repository_url(repository, "blobs/uploads")
        response = self._open(f"POST {start}", "POST", start, data=b"", headers={"Content-Length": "0"})
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"POST {start}", response.status, detail="the answer has no Location")
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        self._open(f"PUT blob {digest}", "PUT", upload_url(start, location, digest), data=stream, headers=headers)

    def put_manifest(self, repository, tag, media_type, manifest):
        """PUT the manifest's bytes under the tag; the digest the registry reports (None if it does not)."""
        url = self._repository_url(repository, "manifests", tag)
        response = self._open(f"PUT {url}", "PUT", url, data=manifest, headers={"Content-Type": media_type})
        return response.headers.get("Docker-Content-Digest")


def error_from_response(what, error):
    """A RegistryError from an HTTP error answer, with the registry's error codes and messages."""
    codes, messages = [], []
    try:
        body = error.read(65536)
        for entry in json.loads(body).get("errors") or []:
            codes.append(entry.get("code", ""))
            messages.append(f"{entry.get('code', '')} {entry.get('message', '')}".strip())
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    detail = "; ".join(messages) or str(error.reason or "")
    return RegistryError(what, error.code, codes, detail)
