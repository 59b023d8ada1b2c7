"""The dependency locks: current with pyproject.toml, complete, consistent, and what is installed."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.locks import (
    LOCK_NAMES,
    ROOT,
    lock_fingerprint,
    locked_requirements,
    locked_torch_version,
    locked_versions,
)

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = {
    "cpu.txt": ("generator", "dev"),
    "cuda.txt": ("generator", "dev"),
    "image-generator.txt": ("generator",),
    "image-base.txt": (),
}
LINUX_311 = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11", "extra": ""}
# The fingerprint scripts/lock.sh writes, computed by the same script from today's pyproject.toml.
CURRENT_INPUTS = subprocess.run(
    [sys.executable, str(ROOT / "scripts" / "lock_inputs.py"), locked_torch_version()],
    capture_output=True, text=True, check=True,
).stdout.strip()  # fmt: skip
STALE = "is stale against pyproject.toml: run `bash scripts/lock.sh` and commit requirements/"


@pytest.mark.parametrize("name", LOCK_NAMES)
def test_lock_is_current_with_pyproject(name: str):
    assert lock_fingerprint(name) == CURRENT_INPUTS, f"requirements/{name} {STALE}"


@pytest.mark.parametrize("name", LOCK_NAMES)
def test_lock_pins_every_requirement_of_the_project(name: str):
    pins = locked_versions(name)
    extras = PROJECT["optional-dependencies"]
    wanted = list(PROJECT["dependencies"]) + [r for extra in EXTRAS[name] for r in extras[extra]]
    for requirement in map(Requirement, wanted):
        if requirement.marker and not requirement.marker.evaluate(LINUX_311):
            continue
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is missing from requirements/{name}: {STALE}"
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement} vs {version} in {name}"


def test_locks_agree_and_keep_cuda_out_of_the_cpu_lock():
    cpu, cuda = locked_versions("cpu.txt"), locked_versions("cuda.txt")
    assert cpu["torch"] == f"{locked_torch_version()}+cpu" and cuda["torch"] == locked_torch_version()
    assert not [name for name in cpu if name.startswith(("nvidia-", "triton", "cuda-"))]
    for name in LOCK_NAMES:
        differing = {p: v for p, v in locked_versions(name).items() if p != "torch" and cuda.get(p, v) != v}
        assert not differing, f"{name} and cuda.txt pin different versions: {differing}"


def test_installed_environment_matches_the_lock():
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU host installs requirements/cuda.txt")
    mismatched = {}
    for requirement in locked_requirements("cpu.txt"):
        if requirement.marker and not requirement.marker.evaluate(LINUX_311):
            continue
        (spec,) = requirement.specifier
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != spec.version:
            mismatched[requirement.name] = (installed, spec.version)
    assert not mismatched, f"installed vs locked: {mismatched}: run `bash scripts/bootstrap.sh`"
