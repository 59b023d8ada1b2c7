"""A container of the rendered manifests, laid out on this machine: its environment as the kubelet
builds it (ConfigMaps, Secrets with stand-in values), its volumes under a directory, and the paths
in its environment pointing there. Also the settings class each service command reads."""

from __future__ import annotations

import base64
import importlib.metadata
import sys
import tomllib
from pathlib import Path
from typing import Any

import msgspec
from packaging.requirements import Requirement

from services.generator.settings import GeneratorSettings
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from services.settings import CommonSettings, env_name
from tests.deploy.manifests import ROOT, SECRETS, Rendered, Workload

# The command (first argument of `wan22`) → the settings it loads. Ray pods run no command of
# ours: they only pass the shared settings on to the gang's actors.
SETTINGS: dict[str, type[CommonSettings]] = {
    "ingest": IngestSettings,
    "notifier": NotifierSettings,
    "generator": GeneratorSettings,
}
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
API_TOKEN = "tok-deploy-test"


def settings_class(container: dict[str, Any]) -> type[CommonSettings]:
    args = container.get("args") or container.get("command") or []
    return SETTINGS.get(args[0], CommonSettings) if args else CommonSettings


def setting_names(cls: type[msgspec.Struct]) -> set[str]:
    return {env_name(field.name) for field in msgspec.structs.fields(cls)}


def is_ours(container: dict[str, Any]) -> bool:
    return "wan22-serve" in container["image"]


def secret_value(name: str, key: str, redis_url: str) -> str:
    if (name, key) == ("wan22-redis", "url"):
        return redis_url
    if (name, key) == ("wan22-webhook", "secret"):
        return WEBHOOK_SECRET
    if (name, key) == ("wan22-api-tokens", "tokens"):
        return API_TOKEN + "\n"
    return f"stand-in-{key}"


def materialize(
    rendered: Rendered, workload: Workload, container: dict[str, Any], root: Path, redis_url: str
) -> dict[str, str]:
    """The container's environment, with its volume mounts laid out under `root`."""
    volumes = {v["name"]: v for v in workload.spec.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        where = root / mount["mountPath"].strip("/")
        where.mkdir(parents=True, exist_ok=True)
        volume = volumes.get(mount["name"], {})
        if "configMap" in volume:
            for key, value in rendered.configmap(volume["configMap"]["name"]).items():
                (where / key).write_text(value)
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            for key in SECRETS[name]:
                (where / key).write_text(secret_value(name, key, redis_url))
        mounts[mount["mountPath"]] = where
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(rendered.configmap(source["configMapRef"]["name"]))
        elif not source["secretRef"].get("optional"):
            name = source["secretRef"]["name"]
            env.update({key: secret_value(name, key, redis_url) for key in SECRETS[name]})
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "secretKeyRef" in source:
            env[var["name"]] = secret_value(source["secretKeyRef"]["name"], source["secretKeyRef"]["key"], redis_url)
        elif "fieldRef" in source:  # the downward API: the pod's own name and such
            env[var["name"]] = f"{workload.owner['metadata']['name']}-0"
        else:
            env[var["name"]] = var["value"]
    for name, value in env.items():
        for path, where in mounts.items():
            if value.startswith(path + "/"):
                env[name] = str(where / value[len(path) + 1 :])
    return env


def generator_only_modules() -> list[str]:
    """Top-level modules of the `generator` extra (torch, ray, …): absent from the CPU image."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    provided = importlib.metadata.packages_distributions()
    by_dist: dict[str, set[str]] = {}
    for module, dists in provided.items():
        for dist in dists:
            by_dist.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    base = {Requirement(r).name.lower() for r in project["dependencies"]}
    modules: set[str] = set()
    for requirement in project["optional-dependencies"]["generator"]:
        name = Requirement(requirement).name.lower()
        if name not in base:
            modules |= by_dist.get(name, {name.replace("-", "_")})
    return sorted(modules)


def cpu_image_command(args: list[str]) -> list[str]:
    """`wan22 ARGS` as in the CPU image: the generator extra's modules cannot be imported."""
    blocked = generator_only_modules()
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); "
        "from services.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, *args]
