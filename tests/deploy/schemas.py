"""Validators: built-in kinds against the Kubernetes OpenAPI schemas that `kubernetes-validate` ships
(offline, strict: unknown fields are errors), custom resources against the openAPIV3Schema of the
CRDs in tests/data/crds (also strict, as the API server's field validation is)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.deploy.manifests import ROOT, Loader

CRD_DIR = ROOT / "tests" / "data" / "crds"
# The oldest Kubernetes the deployment supports and a recent one; both ship with kubernetes-validate.
KUBERNETES_VERSIONS = ("1.28", "1.33")
CUSTOM_GROUPS = ("ray.io", "keda.sh")


def is_custom(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"].split("/")[0] in CUSTOM_GROUPS


def validate_builtin(obj: dict[str, Any], version: str) -> None:
    """Raises kubernetes_validate.ValidationError (or SchemaNotFoundError for an unknown kind)."""
    kubernetes_validate.validate(obj, version, strict=True)


def _strict(schema: Any) -> Any:
    """OpenAPI v3 structural schema → JSON Schema that rejects undeclared fields (what Kubernetes
    prunes silently or, with strict field validation, refuses) and accepts null where nullable."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    open_ended = schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-embedded-resource")
    if "properties" in schema and "additionalProperties" not in schema and not open_ended:
        out["additionalProperties"] = False
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    validators = {}
    for path in sorted(Path(CRD_DIR).glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=Loader)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = _strict(version["schema"]["openAPIV3Schema"])
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def crd_errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of a custom resource, as 'path: message'."""
    validator = _crd_validators().get((obj["apiVersion"], obj["kind"]))
    if validator is None:
        return [f"no CRD in tests/data/crds serves {obj['apiVersion']} {obj['kind']}"]
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
