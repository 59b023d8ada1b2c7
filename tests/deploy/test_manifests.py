"""Every overlay renders, every object is valid for its schema, and every reference resolves."""

from __future__ import annotations

import copy
import re

import kubernetes_validate
import pytest

from tests.deploy.manifests import SECRETS, Rendered, port_number
from tests.deploy.schemas import KUBERNETES_VERSIONS, crd_errors, is_custom, validate_builtin

SECRET_LIKE = re.compile(r"PASSWORD|SECRET|TOKENS?$|ACCESS_KEY|REDIS_URL$")


def test_renders_into_one_namespace_without_placeholders(rendered: Rendered):
    namespaces = {o["metadata"]["name"] for o in rendered.of_kind("Namespace")}
    assert len(namespaces) == 1
    names = [(o["kind"], o["metadata"]["name"]) for o in rendered.objects]
    assert len(names) == len(set(names)), "duplicate objects"
    for obj in rendered.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") in namespaces, obj["metadata"]["name"]
    text = repr(rendered.objects)
    assert not re.search(r"'(TASK|STREAM)'", text), "a template placeholder survived"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_kinds_match_the_kubernetes_schemas(rendered: Rendered, version: str):
    builtin = [o for o in rendered.objects if not is_custom(o)]
    assert {o["kind"] for o in builtin} >= {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    for obj in builtin:
        try:
            validate_builtin(obj, version)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}): {exc.message}")


def test_custom_resources_match_their_crds(rendered: Rendered):
    custom = [o for o in rendered.objects if is_custom(o)]
    assert {o["kind"] for o in custom} == {"RayCluster", "ScaledObject", "TriggerAuthentication"}
    for obj in custom:
        assert crd_errors(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"
    for scaled in rendered.of_kind("ScaledObject"):  # the CRD's CEL rule
        assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


def test_the_validators_reject_what_the_api_server_would(prod: Rendered):
    deployment = copy.deepcopy(prod.of_kind("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(deployment, KUBERNETES_VERSIONS[0])
    ray = copy.deepcopy(prod.get("RayCluster", "wan22"))
    ray["spec"]["autoscalerOptions"]["idleTimeoutSecond"] = 60
    ray["spec"]["workerGroupSpecs"][0]["minReplicas"] = "0"
    assert len(crd_errors(ray)) == 2
    scaled = copy.deepcopy(prod.of_kind("ScaledObject")[0])
    scaled["spec"]["triggers"][0]["metadata"]["lagCount"] = 1  # trigger metadata are strings
    assert crd_errors(scaled)


def test_references_resolve(rendered: Rendered):
    for workload in rendered.workloads():
        volumes = {v["name"]: v for v in workload.spec.get("volumes", [])}
        for volume in volumes.values():
            if "configMap" in volume:
                assert rendered.has("ConfigMap", volume["configMap"]["name"]), workload.name
            if "secret" in volume:
                assert volume["secret"]["secretName"] in SECRETS, workload.name
            if "persistentVolumeClaim" in volume:
                assert rendered.has("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
        for container in workload.spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or _claim_template(workload, mount["name"]), workload.name
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert rendered.has("ConfigMap", source["configMapRef"]["name"]), workload.name
                else:
                    assert source["secretRef"]["name"] in SECRETS, workload.name
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in SECRETS[ref["name"]], f"{workload.name}: {var['name']}"


def _claim_template(workload, name: str) -> bool:
    templates = workload.owner["spec"].get("volumeClaimTemplates", [])
    return any(t["metadata"]["name"] == name for t in templates)


def test_services_and_targets_select_real_pods(rendered: Rendered):
    templates = {w.owner["metadata"]["name"]: w for w in rendered.workloads() if w.owner["kind"] != "RayCluster"}
    for service in rendered.of_kind("Service"):
        selector = service["spec"]["selector"]
        if "ray.io/cluster" in selector:  # KubeRay labels its pods: ray.io/cluster, ray.io/node-type
            assert rendered.has("RayCluster", selector["ray.io/cluster"])
            assert selector.get("ray.io/node-type") in ("head", "worker")
            continue
        matches = [w for w in templates.values() if selector.items() <= w.labels.items()]
        assert len(matches) == 1, service["metadata"]["name"]
        container = matches[0].spec["containers"][0]
        for port in service["spec"]["ports"]:
            port_number(container, port.get("targetPort", port["port"]))
    for budget in rendered.of_kind("PodDisruptionBudget"):
        labels = budget["spec"]["selector"]["matchLabels"].items()
        assert [w for w in templates.values() if labels <= w.labels.items()], budget["metadata"]["name"]
    for hpa in rendered.of_kind("HorizontalPodAutoscaler"):
        assert rendered.has(hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"])
    for scaled in rendered.of_kind("ScaledObject"):
        assert rendered.has("Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        for trigger in scaled["spec"]["triggers"]:
            assert rendered.has("TriggerAuthentication", trigger["authenticationRef"]["name"])
    for auth in rendered.of_kind("TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in SECRETS[ref["name"]]
    for ingress in rendered.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = rendered.get("Service", backend["name"])
                assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
        for tls in ingress["spec"].get("tls", []):
            assert tls["secretName"] in SECRETS


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(rendered: Rendered):
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in rendered.of_kind("HorizontalPodAutoscaler")}
    targets |= {s["spec"]["scaleTargetRef"]["name"] for s in rendered.of_kind("ScaledObject")}
    for deployment in rendered.of_kind("Deployment"):
        if deployment["metadata"]["name"] in targets:
            assert "replicas" not in deployment["spec"], deployment["metadata"]["name"]


def test_no_secret_values_and_no_root(rendered: Rendered):
    assert rendered.of_kind("Secret") == []
    for workload in rendered.workloads():
        pod_context = workload.spec.get("securityContext", {})
        for container in workload.spec["containers"]:
            context = {**pod_context, **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, workload.name
            assert context.get("allowPrivilegeEscalation") is False, workload.name
            for var in container.get("env", []):
                if SECRET_LIKE.search(var["name"]) and not var["name"].endswith("_FILE"):
                    assert "valueFrom" in var, f"{workload.name}: {var['name']} must come from a Secret"
    for configmap in rendered.of_kind("ConfigMap"):
        for key in configmap["data"]:
            assert not SECRET_LIKE.search(key), f"{configmap['metadata']['name']}: {key} belongs in a Secret"
