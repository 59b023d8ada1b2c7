"""Reading the dependency locks under requirements/ (written by scripts/lock.sh)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
LOCK_NAMES = ("cpu.txt", "cuda.txt", "image-generator.txt", "image-base.txt")


def locked_requirements(name: str) -> list[Requirement]:
    lines = (line.strip() for line in (LOCKS / name).read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith(("#", "-"))]


def locked_versions(name: str) -> dict[str, str]:
    """Canonical package name → pinned version (markers are not evaluated)."""
    versions = {}
    for requirement in locked_requirements(name):
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{name}: {requirement} is not an exact pin"
        versions[canonicalize_name(requirement.name)] = spec.version
    return versions


def lock_fingerprint(name: str) -> str:
    match = re.search(r"^# inputs: (\w+)$", (LOCKS / name).read_text(), re.MULTILINE)
    assert match, f"{name} has no inputs line: refresh it with `bash scripts/lock.sh`"
    return match.group(1)


def locked_torch_version() -> str:
    match = re.search(r"^TORCH_VERSION=(\S+)$", (ROOT / "scripts" / "lock.sh").read_text(), re.MULTILINE)
    assert match
    return match.group(1)
