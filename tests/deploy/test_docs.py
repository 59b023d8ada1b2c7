"""docs/deploy.md tells an operator what the manifests need (its examples are run against ingest in
test_services.py)."""

from __future__ import annotations

import re

from tests.deploy.manifests import ROOT, SECRETS

DOCS = (ROOT / "docs" / "deploy.md").read_text()
SECTIONS = ("Prerequisites", "Build and push", "Apply", "Verify", "Trigger", "Watch 0 → N → 0", "Troubleshooting")


def created_secrets() -> dict[str, list[set[str]]]:
    """Secret name → the key sets of every `kubectl create secret` in the docs."""
    commands = re.findall(r"create secret (generic|tls) ([\w-]+)((?:[^\n]*\\\n)*[^\n]*)", DOCS)
    created: dict[str, list[set[str]]] = {}
    for kind, name, rest in commands:
        keys = {"tls.crt", "tls.key"} if kind == "tls" else set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", rest))
        created.setdefault(name, []).append(keys)
    return created


def test_every_secret_the_manifests_use_is_created_with_its_keys():
    created = created_secrets()
    assert set(created) == set(SECRETS)
    for name, key_sets in created.items():
        assert all(keys == SECRETS[name] for keys in key_sets), name


def test_keda_addresses_resolve_from_kedas_namespace():
    addresses = re.findall(r"--from-literal=address=([\w.-]+):(\d+)", DOCS)
    assert addresses and all("." in host for host, _ in addresses), "host:port with the namespace (or an FQDN)"


def test_prerequisites_and_sections():
    for needle in ("kuberay-operator ≥ 1.2.1", "KEDA ≥ 2.11", "Redis ≥ 7", "GPU nodes", "lagCount"):
        assert needle in DOCS, needle
    headings = set(re.findall(r"^## (.+)$", DOCS, re.M))
    assert set(SECTIONS) <= headings
    for path in re.findall(r"`(deploy/[\w./-]+)`", DOCS):
        assert (ROOT / path).exists(), path
