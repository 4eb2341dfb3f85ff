"""Build the demo's three images (ui, api, db) from Debian bookworm packages, without a container engine.

    .venv/bin/python demo_app/build_images.py --out DIR --tag TAG [--tiers ui,api,db] [--repository-prefix P]
        [--json]

writes DIR/<tier>.tar for each tier and prints `<tier> <manifest digest>` on stdout (progress goes to
stderr); with --json, one JSON object instead: {"<tier>": {"archive": PATH, "digest": DIGEST, "previous":
the digest of the archive it replaced or null, "changed": digest != previous}} (what the application role
reads to report a change only when an image's content changed). An archive whose inputs (this script, the
packages, the wheels, the tier's files) are those recorded in DIR/<tier>.tar.inputs is kept without
building it again (renamed when the tag or prefix changed). Nothing is pulled from a container registry
and no daemon runs: each image is one layer, assembled from

- the Debian packages the tier needs: the dependency closure that `apt-cache depends --recurse` gives
  for a few root packages, minus EXCLUDED (maintainer-script machinery and wrappers that an image
  which is unpacked, never configured, does not use), fetched with `apt-get download` into
  $HELIX_CACHE_DIR/demo_app/debs (default ~/.cache/helix; checked against the SHA256 of the apt index);
  apt's answers are kept in $HELIX_CACHE_DIR/demo_app/resolved, keyed by this script, the tiers and
  the apt state they depend on (package lists, sources, preferences, dpkg status: path, size, mtime),
  and read with `dpkg-deb --fsys-tarfile`, laid out merged-/usr like Debian's own images;
- for the api, the wheels that api/requirements.lock pins and hashes (fetched with `pip download`
  into $HELIX_CACHE_DIR/demo_app/wheels), unpacked into /usr/local/lib/python3.11/dist-packages;
- the tier's files from demo_app/<tier>/, where its Dockerfile puts them, and demo_app/debian/<tier>/
  (the nginx main configuration, the db's entrypoint), at the same path in the image;
- /etc/passwd and /etc/group naming the tier's numeric user, and /var/lib/dpkg/status.d/<package>
  (the installed packages, as distroless images record them, for scanners).

Every ELF file of an image must find the shared libraries it needs in the image, or the build fails.

The archive is an OCI image layout (oci-layout, index.json: what `ctr -n k8s.io images import`
reads, naming the image PREFIX/<tier>:TAG) that also carries a docker-save manifest.json over the same
blobs (what `crane push DIR/<tier>.tar REF` and `docker load` read). The manifest uses Docker's
schema-2 media types and the JSON encoding of go-containerregistry, so the digest printed here is the
one a registry reports after `crane push`. Entries are sorted, owned by numeric ids and dated 1970: the
same packages, files and wheels give the same digests. The tag and prefix are not part of the image,
only of its name; a changed digest means changed content.

Needs Debian's apt (current package lists: `apt-get update`) and dpkg-deb; no root.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("HELIX_CACHE_DIR") or Path.home() / ".cache" / "helix") / "demo_app"
ARCH = "amd64"
PYTHON = "3.11"  # bookworm's python3
PG_MAJOR = "15"  # bookworm's PostgreSQL (the Dockerfile's alpine image has 17)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CREATED = "1970-01-01T00:00:00Z"
MERGED = ("bin", "sbin", "lib", "lib64")  # merged /usr: top-level symlinks into /usr
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib")  # where ld.so looks without an ld.so.cache

# Dependencies the images do without. The packages are unpacked, never configured: nothing runs
# their maintainer scripts, so what those scripts need is left out, as are wrappers that the
# images bypass. A dependency group whose alternatives are all excluded is dropped.
EXCLUDED = {
    "adduser": "maintainer scripts",
    "cdebconf": "maintainer scripts",
    "debconf": "maintainer scripts",
    "debianutils": "maintainer scripts (add-shell, run-parts)",
    "dpkg": "maintainer scripts; the images are never changed by dpkg",
    "init-system-helpers": "maintainer scripts",
    "lsb-base": "init scripts",
    "sysvinit-utils": "init scripts",
    "ucf": "maintainer scripts",
    "awk": "base-files' maintainer scripts (Pre-Depends: awk, a virtual package)",
    "install-info": "readline-common's maintainer scripts",
    "sensible-utils": "interactive helpers of postgresql-client",
    "iproute2": "nginx's init script",
    "perl": "postgresql-common's wrappers",
    "perl-base": "postgresql-common's wrappers",
    "locales": "libc-bin has C.UTF-8, the only locale the images use",
    "locales-all": "libc-bin has C.UTF-8, the only locale the images use",
    "ssl-cert": "postgresql-common's snakeoil certificate; the demo's db does not serve TLS",
    "postgresql-common": "pg_ctlcluster and friends (perl); the entrypoint runs /usr/lib/postgresql/15/bin",
    "postgresql-client-common": "pg_wrapper (perl); PATH has /usr/lib/postgresql/15/bin",
    "libllvm14": "JIT compilation only (llvmjit.so, left out); 107 MB",
}

# Paths left out of every image (prefixes): documentation other than copyright files, translations,
# init system and packaging integration, and glibc's iconv modules for legacy character sets (8 MB;
# UTF-8 is built into glibc, the images use C.UTF-8, PostgreSQL converts encodings itself).
DROPPED = (
    "usr/lib/x86_64-linux-gnu/gconv/",
    "etc/cron.d/",
    "etc/default/",
    "etc/init.d/",
    "etc/logrotate.d/",
    "etc/ufw/",
    "usr/lib/systemd/",
    "usr/share/apport/",
    "usr/share/bug/",
    "usr/share/doc-base/",
    "usr/share/info/",
    "usr/share/lintian/",
    "usr/share/locale/",
    "usr/share/man/",
    "usr/share/menu/",
    "usr/share/vim/",
)


@dataclass
class Tier:
    packages: list[str]  # roots of the dependency closure
    user: str  # name:uid:home:shell; the group has the same name and id
    files: dict[str, str]  # path in the image: file under demo_app/
    config: dict
    dropped: tuple[str, ...] = ()
    dirs: dict[str, tuple[int, int]] = field(default_factory=dict)  # path: (mode, owner uid = gid)
    symlinks: dict[str, str] = field(default_factory=dict)
    wheels: str = ""  # lock file under demo_app/, installed into /usr/local/lib/python3.X/dist-packages


BASE = ["base-files", "libc-bin", "dash"]

TIERS = {
    "ui": Tier(
        packages=[*BASE, "nginx"],
        user="nginx:101:/nonexistent:/usr/sbin/nologin",
        files={
            "etc/nginx/conf.d/default.conf": "ui/nginx.conf",
            "usr/share/nginx/html/index.html": "ui/index.html",
        },
        config={
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Env": [f"PATH={PATH}"],
            "ExposedPorts": {"8080/tcp": {}},
            "StopSignal": "SIGQUIT",
            "User": "101:101",
            "WorkingDir": "/",
        },
    ),
    "api": Tier(
        packages=[*BASE, "python3"],
        user="app:10001:/app:/usr/sbin/nologin",
        files={"app/requirements.txt": "api/requirements.txt", "app/app.py": "api/app.py"},
        config={
            "Cmd": ["python", "/app/app.py"],
            "Env": [f"PATH={PATH}", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1", "PORT=8080"],
            "ExposedPorts": {"8080/tcp": {}},
            "User": "10001:10001",
            "WorkingDir": "/app",
        },
        symlinks={"usr/bin/python": "python3"},
        wheels="api/requirements.lock",
    ),
    "db": Tier(
        packages=[*BASE, "tzdata", f"postgresql-{PG_MAJOR}"],
        user="postgres:70:/var/lib/postgresql:/bin/sh",
        files={"docker-entrypoint-initdb.d/10-init.sql": "db/init.sql"},
        config={
            "Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"],
            "Cmd": ["postgres"],
            "Env": [
                f"PATH=/usr/lib/postgresql/{PG_MAJOR}/bin:{PATH}",
                "LANG=C.UTF-8",
                f"PG_MAJOR={PG_MAJOR}",
                "PGDATA=/var/lib/postgresql/data/pgdata",
            ],
            "ExposedPorts": {"5432/tcp": {}},
            "StopSignal": "SIGINT",
            "User": "70:70",
            "Volumes": {"/var/lib/postgresql/data": {}},
            "WorkingDir": "/",
        },
        dropped=(
            f"usr/lib/postgresql/{PG_MAJOR}/lib/bitcode/",
            f"usr/lib/postgresql/{PG_MAJOR}/lib/llvmjit.so",
            f"usr/lib/postgresql/{PG_MAJOR}/lib/llvmjit_types.bc",
            f"usr/share/postgresql/{PG_MAJOR}/man/",
        ),
        # As in the official image: writable by any uid, owned by postgres.
        dirs={
            "var/lib/postgresql": (0o755, 70),
            "var/lib/postgresql/data": (0o1777, 70),
            "run/postgresql": (0o3777, 70),
        },
        symlinks={"etc/localtime": "/usr/share/zoneinfo/Etc/UTC"},
    ),
}


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    return subprocess.run(cmd, check=True, **kwargs)


# --- packages ---------------------------------------------------------------------------------


@dataclass
class Package:
    name: str
    version: str
    filename: str  # pool path
    sha256: str

    @property
    def deb(self):
        return CACHE / "debs" / posixpath.basename(self.filename)


def dependency_graph(roots):
    """{package: [[alternative, ...] per dependency]} from apt-cache depends --recurse.

    A virtual package appears as <name> with its providers below it; {<name>: [[provider], ...]}.
    """
    out = run(
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *roots,
        ],
        capture_output=True,
        text=True,
    ).stdout
    graph, current, group, last = {}, None, [], None
    for line in out.splitlines():
        if not line.startswith(" "):
            current = line.strip()
            graph.setdefault(current, [])
            continue
        match = re.match(r"^ ([ |])(Pre)?Depends: (\S+)$", line)
        if match:
            last = match.group(3)
            group.append(last)
            if match.group(1) == " ":  # the group's last alternative
                graph[current].append(group)
                group = []
        elif line.startswith("    ") and last and last.startswith("<"):
            graph.setdefault(last, []).append([line.strip()])
    return graph


def closure(roots):
    """The packages the roots need, as apt resolves them, without EXCLUDED."""
    graph = dependency_graph(roots)
    wanted, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        for alternatives in graph.get(name, []):
            for alternative in alternatives:
                if alternative.strip("<>") in EXCLUDED:
                    continue
                if alternative.startswith("<"):  # virtual: its providers
                    providers = [p[0].split(":")[0] for p in graph.get(alternative, [])]
                else:
                    providers = [alternative.split(":")[0]]
                chosen = [p for p in providers if p not in EXCLUDED]
                if chosen:
                    todo.append(chosen[0])
                    break
    return sorted(wanted)


def candidates(names):
    """Package records (candidate versions) from apt-cache show."""
    result = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", *names], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise SystemExit(f"apt-cache show failed (run apt-get update?): {result.stderr.strip()}")
    packages = {}
    for stanza in result.stdout.strip().split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", stanza, re.M))
        if fields.get("Architecture") in (ARCH, "all"):
            packages[fields["Package"]] = Package(
                fields["Package"], fields["Version"], fields["Filename"], fields["SHA256"]
            )
    missing = set(names) - set(packages)
    if missing:
        raise SystemExit(f"no {ARCH} candidate for {', '.join(sorted(missing))} (run apt-get update?)")
    return [packages[n] for n in names]


def apt_state():
    """What apt-cache's answers depend on: the package lists, sources, preferences and dpkg status."""
    paths = [*Path("/var/lib/apt/lists").glob("*"), *Path("/etc/apt").rglob("*"), Path("/var/lib/dpkg/status")]
    return sorted(f"{p} {s.st_size} {s.st_mtime_ns}" for p in paths if p.is_file() for s in [p.stat()])


def resolve(tiers):
    """({tier: its package names}, {name: Package}); apt-cache runs only when what it reads has changed."""
    key = {
        "script": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "roots": {tier: TIERS[tier].packages for tier in tiers},
        "apt": apt_state(),
    }
    cached = CACHE / "resolved" / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()}.json"
    if cached.is_file():
        answer = json.loads(cached.read_text())
        return answer["closures"], {name: Package(**fields) for name, fields in answer["records"].items()}
    closures = {tier: closure(TIERS[tier].packages) for tier in tiers}
    records = {p.name: p for p in candidates(sorted({n for names in closures.values() for n in names}))}
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_text(json.dumps({"closures": closures, "records": {n: asdict(p) for n, p in records.items()}}))
    os.replace(partial, cached)
    return closures, records


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(packages):
    """Every package's .deb in the cache, downloaded with apt-get download when missing or changed."""
    missing = [p for p in packages if not p.deb.is_file() or sha256_file(p.deb) != p.sha256]
    if not missing:
        return
    (CACHE / "debs").mkdir(parents=True, exist_ok=True)
    log(f"downloading {len(missing)} packages with apt-get download")
    with tempfile.TemporaryDirectory(dir=CACHE / "debs") as tmp:
        # Root's apt drops to the _apt user for downloads, which cannot write below ~root.
        sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
        run(
            ["apt-get", "download", "-q", *sandbox, *(f"{p.name}={p.version}" for p in missing)],
            cwd=tmp,
            stdout=sys.stderr,
        )
        by_hash = {sha256_file(f): f for f in Path(tmp).glob("*.deb")}
        for package in missing:
            if package.sha256 not in by_hash:
                raise SystemExit(f"apt-get download gave no file with the index's SHA256 for {package.name}")
            os.replace(by_hash[package.sha256], package.deb)


def fetch_wheels(lock):
    """The wheels a lock file pins (hashed), in the cache; downloaded with pip when missing."""
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement, digest = line.split(" --hash=sha256:")
            pins[requirement.strip()] = digest.strip()
    required = lock.with_name("requirements.txt")
    for line in required.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and line not in pins:
            raise SystemExit(f"{required}: {line} is not pinned in {lock.name}; update it (see its header)")
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    have = {sha256_file(f): f for f in wheels.glob("*.whl")}
    if not set(pins.values()) <= set(have):
        log(f"downloading the wheels of {lock.name} with pip")
        pip = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "-q", "download"]
        options = ["--no-deps", "--require-hashes", "--only-binary=:all:", "--python-version", PYTHON]
        run([*pip, *options, "-d", str(wheels), "-r", str(lock)], stdout=sys.stderr)
        have = {sha256_file(f): f for f in wheels.glob("*.whl")}
    return [have[digest] for digest in pins.values()]


def add_wheels(tree, wheels, site):
    """Install pure-Python wheels: their files go to site as they are (what pip does, minus its own
    INSTALLER and RECORD lines, so the image does not depend on the pip that built it)."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            info = next(n for n in names if re.fullmatch(r"[^/]+\.dist-info/WHEEL", n))
            if "Root-Is-Purelib: true" not in archive.read(info).decode():
                raise SystemExit(f"{wheel.name} is not a pure-Python wheel")
            for name in names:
                path = posixpath.normpath(name)
                if path.startswith(("/", "../")) or re.match(r"[^/]+\.data/", path):
                    raise SystemExit(f"{wheel.name}: {name} cannot be installed by this script")
                executable = (archive.getinfo(name).external_attr >> 16) & 0o111
                add_file(tree, f"{site}/{path}", archive.read(name), 0o755 if executable else 0o644)


# --- the image's file tree --------------------------------------------------------------------


@dataclass
class Entry:
    kind: str  # f (file), d (directory), l (symlink), h (hard link to .link)
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    link: str = ""


def canonical(name):
    """A tar member's path in the merged-/usr image, without ./ and slashes: ./bin/sh -> usr/bin/sh."""
    name = name[2:] if name.startswith("./") else name
    name = posixpath.normpath("/" + name).lstrip("/")
    return "usr/" + name if name.split("/")[0] in MERGED else name


def add_deb(tree, deb):
    """Add a package's files (dpkg-deb --fsys-tarfile) to the tree."""
    raw = run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for member in tar:
            path = canonical(member.name)
            if not path:
                continue
            mode = member.mode & 0o7777
            if member.isdir():
                if path not in tree:
                    tree[path] = Entry("d", mode, member.uid, member.gid)
            elif member.issym():
                target = member.linkname
                if path != member.name.removeprefix("./") and not target.startswith("/"):
                    # Moved into /usr: keep a relative target pointing where it pointed before.
                    old = posixpath.normpath(posixpath.join("/", posixpath.dirname(member.name.lstrip(".")), target))
                    target = posixpath.relpath("/" + canonical(old), "/" + posixpath.dirname(path))
                tree[path] = Entry("l", 0o777, member.uid, member.gid, link=target)
            elif member.islnk():
                tree[path] = Entry("h", mode & ~0o6000, member.uid, member.gid, link=canonical(member.linkname))
            elif member.isfile():
                # No setuid/setgid programs: the containers run without privilege escalation anyway.
                tree[path] = Entry("f", mode & ~0o6000, member.uid, member.gid, data=tar.extractfile(member).read())


def drop(tree, prefixes):
    for path in [p for p in tree if any(p == x.rstrip("/") or p.startswith(x) for x in prefixes)]:
        del tree[path]


def drop_docs(tree):
    """Documentation goes, except the copyright files (and the directories and links holding them)."""
    for path in [p for p, e in tree.items() if p.startswith("usr/share/doc/") and e.kind in "fh"]:
        if not path.endswith("/copyright"):
            del tree[path]


def add_file(tree, path, data, mode=0o644, uid=0):
    tree[path] = Entry("f", mode, uid, uid, data=data)


def add_local(tree, path, source):
    """A file of this directory: 0755 when executable here, else 0644 (the checkout's umask does not count)."""
    add_file(tree, path, source.read_bytes(), 0o755 if source.stat().st_mode & 0o111 else 0o644)


def add_parents(tree):
    for path in list(tree):
        parts = path.split("/")
        for i in range(1, len(parts)):
            tree.setdefault("/".join(parts[:i]), Entry("d", 0o755))


def resolve_hard_links(tree):
    """Each group of hard links becomes one file, at the group's first path, and links to it (tar order)."""
    groups = {}
    for path, entry in tree.items():
        if entry.kind == "h":
            target = entry.link
            while target in tree and tree[target].kind == "h":
                target = tree[target].link
            groups.setdefault(target, []).append(path)
    for target, links in groups.items():
        source = tree.get(target)
        if source is None or source.kind != "f":
            raise SystemExit(f"hard links {links} point to {target}, which is not a file of the image")
        first, *others = sorted([target, *links])
        tree[first] = Entry("f", source.mode, source.uid, source.gid, data=source.data)
        for path in others:
            tree[path] = Entry("h", source.mode, source.uid, source.gid, link=first)


def lookup(tree, path):
    """The tree path that path names, following symlinks as the kernel would; None when missing."""
    parts, current, hops = [p for p in path.split("/") if p], [], 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = current[:-1]
            continue
        entry = tree.get("/".join([*current, part]))
        if entry is None:
            return None
        if entry.kind == "l":
            hops += 1
            if hops > 40:
                return None
            if entry.link.startswith("/"):
                current = []
            parts = [p for p in entry.link.split("/") if p] + parts
            continue
        current.append(part)
    return "/".join(current)


def elf_dependencies(data):
    """(interpreter, needed, runpath) of a 64-bit little-endian ELF file; None for other files."""
    if data[:6] != b"\x7fELF\x02\x01":
        return None
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    loads, dynamic, interpreter = [], None, ""
    for i in range(phnum):
        # Elf64_Phdr: p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, ...
        kind, offset, vaddr, filesz = struct.unpack_from("<I4xQQ8xQ", data, phoff + i * phentsize)
        if kind == 1:
            loads.append((vaddr, offset, filesz))
        elif kind == 2:
            dynamic = (offset, filesz)
        elif kind == 3:
            interpreter = data[offset : offset + filesz].rstrip(b"\0").decode()
    if dynamic is None:
        return interpreter, [], []
    tags = []
    for offset in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, offset)
        if tag == 0:
            break
        tags.append((tag, value))
    strtab = next(v for t, v in tags if t == 5)
    base = next(off + strtab - vaddr for vaddr, off, size in loads if vaddr <= strtab < vaddr + size)

    def string(at):
        return data[base + at : data.index(b"\0", base + at)].decode()

    needed = [string(v) for t, v in tags if t == 1]
    runpath = [d for t, v in tags if t in (15, 29) for d in string(v).split(":")]
    return interpreter, needed, runpath


def check_libraries(tree):
    """Every ELF file finds its interpreter and shared libraries in the image (no ld.so.cache there)."""
    problems = []
    for path, entry in sorted(tree.items()):
        found = elf_dependencies(entry.data) if entry.kind == "f" else None
        if not found:
            continue
        interpreter, needed, runpath = found
        if interpreter and lookup(tree, interpreter) is None:
            problems.append(f"/{path}: interpreter {interpreter}")
        origin = posixpath.dirname(path)
        dirs = [d.replace("$ORIGIN", "/" + origin).replace("${ORIGIN}", "/" + origin) for d in runpath]
        for library in needed:
            if not any(lookup(tree, posixpath.join(d, library)) for d in [*dirs, *LIBRARY_DIRS]):
                problems.append(f"/{path}: {library}")
    if problems:
        raise SystemExit("shared libraries missing from the image:\n  " + "\n  ".join(problems))


def status_entry(deb):
    """The package's dpkg status paragraph (its control file, installed)."""
    control = run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True).stdout.rstrip("\n") + "\n"
    lines = control.splitlines(keepends=True)
    return "".join([lines[0], "Status: install ok installed\n", *lines[1:]]).encode()


def image_tree(name, packages, wheels):
    tier = TIERS[name]
    tree = {}
    for package in sorted(packages, key=lambda p: p.name):
        add_deb(tree, package.deb)
    drop(tree, DROPPED + tier.dropped)
    drop_docs(tree)
    for package in packages:
        add_file(tree, f"var/lib/dpkg/status.d/{package.name}", status_entry(package.deb))

    # What maintainer scripts would have done: merged-/usr and /var/run links, nsswitch.conf.
    for top in MERGED:
        tree.setdefault(f"usr/{top}", Entry("d", 0o755))
        tree[top] = Entry("l", 0o777, link=f"usr/{top}")
    for path, target in (("var/run", "/run"), ("var/lock", "/run/lock")):
        if any(p.startswith(path + "/") for p in tree):
            raise SystemExit(f"a package ships files below /{path}, which is a symlink to {target}")
        tree[path] = Entry("l", 0o777, link=target)
    if "usr/share/libc-bin/nsswitch.conf" in tree:
        add_file(tree, "etc/nsswitch.conf", tree["usr/share/libc-bin/nsswitch.conf"].data)

    user, uid, home, shell = tier.user.split(":")
    add_file(
        tree,
        "etc/passwd",
        (
            "root:x:0:0:root:/root:/bin/sh\n"
            f"{user}:x:{uid}:{uid}:{user}:{home}:{shell}\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ).encode(),
    )
    add_file(tree, "etc/group", f"root:x:0:\n{user}:x:{uid}:\nnogroup:x:65534:\n".encode())

    for path, source in tier.files.items():
        add_local(tree, path, HERE / source)
    overlay = HERE / "debian" / name
    for source in sorted(p for p in overlay.rglob("*") if p.is_file()):
        add_local(tree, source.relative_to(overlay).as_posix(), source)
    add_wheels(tree, wheels, f"usr/local/lib/python{PYTHON}/dist-packages")
    for path, (mode, owner) in tier.dirs.items():
        tree[path] = Entry("d", mode, owner, owner)
    for path, target in tier.symlinks.items():
        tree[path] = Entry("l", 0o777, link=target)

    add_parents(tree)
    resolve_hard_links(tree)
    check_libraries(tree)
    return tree


def layer(tree):
    """The uncompressed layer: sorted entries, numeric owners, mtime 0."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(tree):
            entry = tree[path]
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.gid, 0
            info.uname = info.gname = ""
            if entry.kind == "d":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind in "lh":
                info.type = tarfile.SYMTYPE if entry.kind == "l" else tarfile.LNKTYPE
                info.linkname = entry.link
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return buffer.getvalue()


# --- the archive ------------------------------------------------------------------------------


def go_json(value):
    """JSON as Go's encoding/json writes it for go-containerregistry's structs (fields in order)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def write_archive(out, ref, config, compressed):
    """out: OCI layout + docker-save manifest.json over the same blobs; the manifest's digest."""
    config_blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    blobs = {}

    def descriptor(media_type, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[f"blobs/sha256/{digest[7:]}"] = data
        return {"mediaType": media_type, "size": len(data), "digest": digest}

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": descriptor("application/vnd.docker.container.image.v1+json", config_blob),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", compressed)],
    }
    manifest_descriptor = descriptor(manifest["mediaType"], go_json(manifest))
    manifest_descriptor["platform"] = {"architecture": ARCH, "os": "linux"}
    manifest_descriptor["annotations"] = {
        "io.containerd.image.name": ref,
        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
    }
    files = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [manifest_descriptor],
            },
            sort_keys=True,
        ).encode(),
        "manifest.json": json.dumps(
            [
                {
                    "Config": f"blobs/sha256/{manifest['config']['digest'][7:]}",
                    "RepoTags": [ref],
                    "Layers": [f"blobs/sha256/{manifest['layers'][0]['digest'][7:]}"],
                }
            ]
        ).encode(),
        **dict(sorted(blobs.items())),
    }
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)
    return manifest_descriptor["digest"]


def archive_digest(path):
    """The manifest digest of an archive this script wrote earlier; None when there is none or it is unreadable."""
    try:
        with tarfile.open(path) as tar:
            return json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]
    except (OSError, tarfile.TarError, KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def inputs_key(tier_name, packages, wheels):
    """A digest of everything an image is made from: this script, the packages (by the index's SHA256),
    the wheels, the tier's files under demo_app/ (with their executable bit), and zlib's version."""
    tier = TIERS[tier_name]
    overlay = HERE / "debian" / tier_name
    sources = [HERE / source for source in tier.files.values()]
    sources += sorted(p for p in overlay.rglob("*") if p.is_file())
    key = {
        "script": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "tier": tier_name,
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "packages": sorted(f"{p.name} {p.version} {p.sha256}" for p in packages),
        "wheels": sorted(sha256_file(w) for w in wheels),
        "files": [f"{s.relative_to(HERE)} {s.stat().st_mode & 0o111 != 0} {sha256_file(s)}" for s in sources],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def renamed(out, ref):
    """The archive at out rewritten from its own blobs under another name (ref); its manifest digest."""
    with tarfile.open(out) as tar:
        digest = json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]
        manifest = json.load(tar.extractfile(f"blobs/sha256/{digest[7:]}"))
        config = json.load(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'][7:]}"))
        compressed = tar.extractfile(f"blobs/sha256/{manifest['layers'][0]['digest'][7:]}").read()
    return write_archive(out, ref, config, compressed)


def build(tier_name, packages, wheels, out, ref):
    """Write one tier's archive, unless the one there was made from the same inputs; its manifest digest.

    The inputs' digest and the image's name are recorded in <out>.inputs: with the same inputs the archive is
    kept, or only renamed (the image, and so its digest, stays the same)."""
    tier = TIERS[tier_name]
    start = time.monotonic()
    key, key_file = inputs_key(tier_name, packages, wheels), out.with_name(out.name + ".inputs")
    previous = archive_digest(out)
    try:
        recorded = json.loads(key_file.read_text())
    except (OSError, ValueError):
        recorded = {}
    if previous and recorded.get("inputs") == key:
        if recorded.get("ref") == ref:
            log(f"{out}: {ref}, made from the same inputs ({key[:12]}): kept")
            return previous
        if renamed(out, ref) == previous:
            key_file.write_text(json.dumps({"inputs": key, "ref": ref}) + "\n")
            log(f"{out}: made from the same inputs ({key[:12]}): renamed {recorded.get('ref')} -> {ref}")
            return previous
    tree = image_tree(tier_name, packages, wheels)
    raw = layer(tree)
    compressed = gzip.compress(raw, compresslevel=6, mtime=0)
    roots = ", ".join(f"{p.name} {p.version}" for p in packages if p.name in tier.packages[len(BASE) :])
    config = {
        "architecture": ARCH,
        "os": "linux",
        "created": CREATED,
        "config": tier.config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [
            {
                "created": CREATED,
                "created_by": f"demo_app/build_images.py {tier_name}: Debian bookworm {roots} "
                f"({len(packages)} packages)",
            }
        ],
    }
    digest = write_archive(out, ref, config, compressed)
    key_file.write_text(json.dumps({"inputs": key, "ref": ref}) + "\n")
    log(
        f"{out}: {ref}, {len(packages)} packages, {len(tree)} entries, {len(raw) / 1e6:.1f} MB "
        f"({len(compressed) / 1e6:.1f} MB gzipped) in {time.monotonic() - start:.1f} s"
    )
    return digest


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="directory for <tier>.tar")
    parser.add_argument("--tag", required=True, help="image tag, e.g. 0.1.0")
    parser.add_argument("--tiers", default="ui,api,db", help="comma-separated subset of ui,api,db")
    parser.add_argument(
        "--repository-prefix",
        default="helix-demo",
        help="name images PREFIX/<tier>:TAG (what ctr import names them); e.g. <registry>/<cluster_name>",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object: each tier's archive, digest and previous digest"
    )
    args = parser.parse_args()
    tiers = [t for t in args.tiers.split(",") if t]
    if not tiers or set(tiers) - set(TIERS):
        parser.error(f"--tiers must name some of {', '.join(TIERS)}, got {args.tiers!r}")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", args.tag):
        parser.error(f"--tag must be an image tag (letters, digits, _ . -; at most 128), got {args.tag!r}")
    arch = run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    if arch != ARCH:
        raise SystemExit(f"the images are {ARCH}; this machine's packages are {arch}")

    start = time.monotonic()
    closures, records = resolve(tiers)
    fetch(list(records.values()))

    wheels = {tier: fetch_wheels(HERE / TIERS[tier].wheels) if TIERS[tier].wheels else [] for tier in tiers}
    log(f"{len(records)} packages resolved and cached in {time.monotonic() - start:.1f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    built = {}
    for tier in tiers:
        ref = f"{args.repository_prefix}/{tier}:{args.tag}"
        out = args.out / f"{tier}.tar"
        previous = archive_digest(out)
        digest = build(tier, [records[n] for n in closures[tier]], wheels[tier], out, ref)
        built[tier] = {"archive": str(out), "digest": digest, "previous": previous, "changed": digest != previous}
        if not args.json:
            print(f"{tier} {digest}", flush=True)
    if args.json:
        print(json.dumps(built, indent=1, sort_keys=True), flush=True)
    log(f"done in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
