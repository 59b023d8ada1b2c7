"""The image built for real, without a registry: rootful podman with storage of its own under
`.artifacts/image` (the base, the layer cache and the built image survive between runs), a stand-in
for the Dockerfile's `FROM` made with debootstrap, and the Dockerfile built as users build it."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from tests.deploy.manifests import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
HOME = ROOT / ".artifacts" / "image"
IMAGE = "localhost/wan22-serve-cpu:test"
MIRROR = "http://deb.debian.org/debian"
# What python:<version>-slim-<suite> holds beyond a minimal Debian: its runtime packages, and a
# `python` that makes venvs. Debian's python3 stands in for the image's own build of CPython.
BASE_PACKAGES = ("ca-certificates", "netbase", "tzdata", "python3", "python3-venv", "python-is-python3")
# The sources of the official Debian images, so that the Dockerfile's apt-get sees what it sees there.
SOURCES = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: {suite} {suite}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: {suite}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
# The python images' configuration that the Dockerfile builds on (`PATH=/opt/wan22/bin:$PATH`).
CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
RECIPE_LABEL = "wan22.test.base-recipe"
BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def missing_tools() -> list[str]:
    return [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]


class Podman:
    """podman on storage of its own. The OCI runtime is runc: crun refuses hosts whose cgroup v2
    hierarchy has controllers next to cgroup v1 ("cgroups in hybrid mode not supported"). The
    overlay driver would bind-mount its directory onto itself and leave it mounted, which keeps
    `rm -rf .artifacts` from working; skip_mount_home leaves nothing mounted between commands."""

    def __init__(self, home: Path = HOME) -> None:
        self.home = home
        for part in ("storage", "run", "tmp"):
            (home / part).mkdir(parents=True, exist_ok=True)

    def command(self, *args: str) -> list[str]:
        home = self.home
        paths = ["--root", str(home / "storage"), "--runroot", str(home / "run"), "--tmpdir", str(home / "tmp")]
        storage = ["--storage-driver", "overlay", "--storage-opt", "overlay.skip_mount_home=true"]
        return ["podman", *paths, *storage, "--runtime", "runc", *args]

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:3])} … exited {result.returncode}: {result.stderr[-3000:]}")
        return result

    def image_id(self, image: str) -> str | None:
        result = self.run("image", "inspect", "--format", "{{.Id}}", image, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def label(self, image: str, name: str) -> str | None:
        result = self.run("image", "inspect", "--format", f'{{{{index .Labels "{name}"}}}}', image, check=False)
        return result.stdout.strip() if result.returncode == 0 else None


def base_reference() -> tuple[str, str]:
    """(the image the Dockerfile's first FROM names, with ARG defaults, as podman stores it; Python's
    version). Deriving both from the Dockerfile keeps the stand-in on the name users pull."""
    defaults, base = {}, None
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["ARG"] and "=" in words[1]:
            defaults.update([words[1].split("=", 1)])
        if words[:1] == ["FROM"] and base is None:
            base = words[1]
    assert base is not None
    for name, value in defaults.items():
        base = base.replace("${" + name + "}", value)
    repository, tag = base.split(":")
    assert "/" not in repository, f"the stand-in is made for Docker Hub's official images, not {base}"
    return f"docker.io/library/{repository}:{tag}", defaults["PYTHON_VERSION"]


def recipe(suite: str) -> str:
    text = "\n".join([suite, MIRROR, *BASE_PACKAGES, SOURCES, *CHANGES])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_base(podman: Podman, log: Path) -> float:
    """Import a debootstrapped Debian as the Dockerfile's base unless the same recipe already is;
    returns the seconds spent (0 when cached)."""
    reference, python = base_reference()
    suite = reference.rsplit("-", 1)[1]
    if podman.label(reference, RECIPE_LABEL) == recipe(suite):
        return 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=podman.home) as scratch:
        rootfs, archive = Path(scratch) / "rootfs", Path(scratch) / "rootfs.tar"
        debootstrap(rootfs, suite, log)
        version = python_version(rootfs)
        assert version == python, f"Debian {suite} has Python {version}; the Dockerfile's base has {python}"
        slim(rootfs, suite)
        # tar keeps what Python's tarfile drops: extended attributes (file capabilities).
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        changes = [f"--change={change}" for change in (*CHANGES, f"LABEL {RECIPE_LABEL}={recipe(suite)}")]
        podman.run("import", *changes, str(archive), reference, timeout=600)
    return time.monotonic() - started


def debootstrap(rootfs: Path, suite: str, log: Path) -> None:
    command = ["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES), suite, str(rootfs), MIRROR]
    with log.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed ({log}):\n" + log.read_text()[-4000:])


def python_version(rootfs: Path) -> str:
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    return subprocess.run(
        ["chroot", str(rootfs), "python", "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def slim(rootfs: Path, suite: str) -> None:
    """What the official images leave out: downloaded packages, package lists, the host's resolver."""
    for directory in (rootfs / "var/cache/apt/archives", rootfs / "var/lib/apt/lists"):
        for entry in directory.glob("*"):
            if entry.is_file():
                entry.unlink()
    for leftover in ("etc/apt/sources.list", "etc/resolv.conf", "etc/hostname"):
        (rootfs / leftover).unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(SOURCES.format(suite=suite))


def trust_mounts() -> list[str]:
    """This machine's CA bundle over the base's, for the build's RUN steps: Debian's pip checks PyPI
    against /etc/ssl/certs/ca-certificates.crt, so a network that re-signs TLS works in the build as
    it does for the machine's own pip. The base has that file, so no mount point stays behind."""
    bundle = Path(os.environ.get("PIP_CERT") or ssl.get_default_verify_paths().cafile or "").resolve()
    return ["-v", f"{bundle}:{BUNDLE}:ro"] if bundle.is_file() else []


def build(podman: Podman, log: Path, variant: str = "cpu") -> float:
    """`docker build -f deploy/docker/Dockerfile --build-arg VARIANT=cpu .` with podman, on the host's
    network (PyPI and Debian), never pulling; the layer cache makes an unchanged rebuild seconds."""
    started, previous = time.monotonic(), podman.image_id(IMAGE)
    args = ["build", "--pull=never", "--network", "host", *trust_mounts(), "--build-arg", f"VARIANT={variant}"]
    with log.open("w") as out:
        result = subprocess.run(podman.command(*args, "-f", str(DOCKERFILE), "-t", IMAGE, str(ROOT)),
                                stdout=out, stderr=subprocess.STDOUT, timeout=1800)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"the build failed ({log}):\n" + log.read_text()[-4000:])
    if previous not in (None, podman.image_id(IMAGE)):
        # Only the image the tag moved away from: pruning dangling images would also drop the
        # build stage's layers (nothing tagged descends from them), and with them the pip cache.
        podman.run("rmi", previous, check=False)
    return time.monotonic() - started


def ulimits() -> list[str]:
    """podman gives containers 1048576 open files, which a host without CAP_SYS_RESOURCE cannot
    grant; its own processes run with 32768 processes at most. Ask for what the host has."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else min(nofile, 1048576)
    nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc, 32768)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]
