"""Assemble a one-layer OCI image archive from local files, for `ctr -n k8s.io images import`.

No registry and no container engine: the layer is a tar of the given files, the config names the
entrypoint, and index.json carries the image name containerd imports it under.

    python tests/nodes/oci_image.py --ref registry.k8s.io/pause:3.10.1 --out pause.tar \
        --file ~/.cache/helix/nodes/bin/pause:/pause --entrypoint /pause

--from-rootfs DIR --with-libs /usr/sbin/xtables-nft-multi copies an executable from a Debian rootfs
together with the shared libraries it needs (read with ldd in a chroot), including the dynamic
loader; --with-dir /usr/lib/x86_64-linux-gnu/xtables copies a directory of the rootfs (iptables'
extension modules, loaded at run time, so ldd does not list them). Symlinks are followed inside the
rootfs, as in a chroot (merged-/usr Debian links the loader with an absolute symlink).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

EPOCH = 0  # reproducible: the same inputs give the same digests, so re-imports are no-ops


def add_file(tar, src, dest, mode=None):
    dest = dest.lstrip("/")
    parts = Path(dest).parts
    for i in range(1, len(parts)):
        directory = "/".join(parts[:i])
        if directory not in tar.getnames():
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tar.addfile(info)
    if dest in tar.getnames():
        return
    info = tar.gettarinfo(src, arcname=dest)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = EPOCH
    if mode is not None:
        info.mode = mode
    if info.issym():
        tar.addfile(info)
    else:
        with open(src, "rb") as f:
            tar.addfile(info, f)


def add_symlink(tar, dest, target):
    info = tarfile.TarInfo(dest.lstrip("/"))
    info.type, info.linkname, info.mtime, info.mode = tarfile.SYMTYPE, target, EPOCH, 0o777
    tar.addfile(info)


def libraries(rootfs, executable):
    """Paths (inside rootfs) of the shared libraries an executable needs, with the loader."""
    out = subprocess.run(["chroot", rootfs, "ldd", executable], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        words = line.split()
        path = words[2] if "=>" in words and len(words) > 2 else words[0]
        if path.startswith("/"):
            libs.append(path)
    return libs


def resolve_in(rootfs, path):
    """The file a path names inside rootfs, following symlinks as a chroot would; None outside."""
    root = Path(rootfs).resolve()
    parts = list(Path(path.lstrip("/")).parts)
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root
            parts = list(Path(target.lstrip("/")).parts) + parts
            continue
        current = candidate
    return current if current.exists() else None


def files_in(rootfs, directory):
    """Paths (inside rootfs) of the regular files below a directory of rootfs."""
    base = resolve_in(rootfs, directory)
    if base is None or not base.is_dir():
        raise SystemExit(f"{directory} is not a directory in {rootfs}")
    return sorted("/" + directory.strip("/") + "/" + str(f.relative_to(base)) for f in base.rglob("*") if f.is_file())


def blob(layout, data, media_type):
    digest = hashlib.sha256(data).hexdigest()
    layout[f"blobs/sha256/{digest}"] = data
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def build(args):
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for spec in args.file:
            src, dest, *mode = spec.split(":")
            add_file(tar, os.path.expanduser(src), dest, int(mode[0], 8) if mode else None)
        wanted = []
        for exe in args.with_libs:
            wanted += [exe, *libraries(args.from_rootfs, exe)]
        for directory in args.with_dir:
            for path in files_in(args.from_rootfs, directory):
                wanted += [path, *libraries(args.from_rootfs, path)]
        for path in wanted:
            resolved = resolve_in(args.from_rootfs, path)
            if resolved is None:
                raise SystemExit(f"{path} not found in {args.from_rootfs}")
            add_file(tar, str(resolved), path)
        for spec in args.symlink:
            dest, target = spec.split(":")
            add_symlink(tar, dest, target)
        for directory in args.dir:
            info = tarfile.TarInfo(directory.lstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            if info.name not in tar.getnames():
                tar.addfile(info)
    raw = layer_tar.getvalue()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    compressed = gzip.compress(raw, compresslevel=1, mtime=EPOCH)

    layout = {}
    layer = blob(layout, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": args.entrypoint or None,
            "Cmd": args.cmd or None,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *args.env],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_desc = blob(layout, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer],
    }
    manifest_desc = blob(
        layout, json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json"
    )
    manifest_desc["annotations"] = {
        "io.containerd.image.name": args.ref,
        "org.opencontainers.image.ref.name": args.ref.rsplit(":", 1)[-1],
    }
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    layout["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}, sort_keys=True).encode()
    layout["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'

    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in ["oci-layout", "index.json", *sorted(n for n in layout if n.startswith("blobs/"))]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(layout[name]), EPOCH, 0o644
            tar.addfile(info, io.BytesIO(layout[name]))
    os.replace(tmp, out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="image name, e.g. registry.k8s.io/pause:3.10.1")
    parser.add_argument("--out", required=True)
    parser.add_argument("--file", action="append", default=[], help="SRC:DEST[:OCTAL_MODE]")
    parser.add_argument("--symlink", action="append", default=[], help="DEST:TARGET")
    parser.add_argument("--dir", action="append", default=[], help="empty directory to create")
    parser.add_argument("--from-rootfs", default="")
    parser.add_argument("--with-libs", action="append", default=[], help="executable in --from-rootfs")
    parser.add_argument("--with-dir", action="append", default=[], help="directory of --from-rootfs, with libraries")
    parser.add_argument("--entrypoint", action="append", default=[])
    parser.add_argument("--cmd", action="append", default=[])
    parser.add_argument("--env", action="append", default=[])
    args = parser.parse_args()
    start = time.monotonic()
    build(args)
    print(f"{args.out}: {args.ref} in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
