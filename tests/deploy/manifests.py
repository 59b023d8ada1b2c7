"""Render the kustomize overlays and look things up in the rendered objects."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Secrets are created by hand (docs/deploy.md) and never rendered: name → the keys the manifests use.
SECRETS = {
    "wan22-redis": {"url", "address", "username", "password"},
    "wan22-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
    "wan22-webhook": {"secret"},
    "wan22-api-tokens": {"tokens"},
    "wan22-ingest-tls": {"tls.crt", "tls.key"},
}


def kubectl() -> str | None:
    """The kubectl installed with the dev extra (next to this Python), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.exists() else shutil.which("kubectl")


def load_yaml_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=Loader) if doc]


@functools.cache
def render(overlay: str) -> Rendered:
    exe = kubectl()
    if exe is None:
        raise RuntimeError("kubectl is not installed")
    out = subprocess.run(
        [exe, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60, check=True
    )
    return Rendered(overlay, tuple(load_yaml_all(out.stdout)))


@dataclass(frozen=True)
class Workload:
    """One pod template: its owner, where in the owner it sits, and the pod spec."""

    owner: dict[str, Any]
    where: str
    template: dict[str, Any]

    @property
    def spec(self) -> dict[str, Any]:
        return self.template["spec"]

    @property
    def labels(self) -> dict[str, str]:
        return self.template.get("metadata", {}).get("labels", {})

    @property
    def name(self) -> str:
        return f"{self.owner['kind']}/{self.owner['metadata']['name']}{self.where}"


@dataclass(frozen=True)
class Rendered:
    overlay: str
    objects: tuple[dict[str, Any], ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(o["metadata"]["name"] == name for o in self.of_kind(kind))

    def configmap(self, name: str) -> dict[str, str]:
        return self.get("ConfigMap", name)["data"]

    def workloads(self) -> Iterator[Workload]:
        for obj in self.objects:
            if obj["kind"] in ("Deployment", "StatefulSet"):
                yield Workload(obj, "", obj["spec"]["template"])
            elif obj["kind"] == "RayCluster":
                yield Workload(obj, "/head", obj["spec"]["headGroupSpec"]["template"])
                for group in obj["spec"]["workerGroupSpecs"]:
                    yield Workload(obj, f"/{group['groupName']}", group["template"])

    def generators(self) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(task, Deployment, its container) of every generator Deployment."""
        for deployment in self.of_kind("Deployment"):
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            args = container.get("args", [])
            if args[:1] == ["generator"]:
                yield args[args.index("--task") + 1], deployment, container


def env_sources(rendered: Rendered, container: dict[str, Any]) -> dict[str, str | None]:
    """Every variable the container gets → its literal value, or None when a Secret holds it."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(rendered.configmap(source["configMapRef"]["name"]))
        else:
            env.update(dict.fromkeys(SECRETS[source["secretRef"]["name"]]))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value")
    return env


def secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Variable → (Secret, key) for every `secretKeyRef`."""
    refs = {}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs[var["name"]] = (ref["name"], ref["key"])
    return refs


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"container {container['name']} has no port named {port!r}"
    return named[port]
