"""The manifests agree with the code: stream and group names, environment variables, ports, probe
paths, the models configuration and the drain."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import services.generator.cli
from services import httpserver
from services.keys import GENERATOR_GROUP, Keys
from services.models_config import load_models
from services.settings import CommonSettings, SettingsError, load
from tests.deploy.container import is_ours, materialize, setting_names, settings_class
from tests.deploy.manifests import Rendered, env_sources, port_number
from tests.locks import locked_versions

try:  # boto3's own names for its standard configuration (only with the generator extra)
    from botocore.configprovider import BOTOCORE_DEFAUT_SESSION_VARIABLES
    from botocore.credentials import EnvProvider
except ImportError:  # pragma: no cover
    EnvProvider = None

# Read by the generator CLI itself (Ray's standard variable), not a WAN22_ setting.
RAY_VARIABLES = {"RAY_ADDRESS"}


def aws_variables() -> set[str]:
    if EnvProvider is None:
        pytest.skip("botocore is not installed (the generator extra)")
    region = BOTOCORE_DEFAUT_SESSION_VARIABLES["region"][1]
    return {EnvProvider.ACCESS_KEY, EnvProvider.SECRET_KEY, region, "AWS_ENDPOINT_URL_S3"}


def test_keda_watches_the_job_stream_of_its_generators_task(rendered: Rendered):
    generators = {d["metadata"]["name"]: (task, c) for task, d, c in rendered.generators()}
    scaled_objects = rendered.of_kind("ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled_objects} == set(generators)
    for scaled in scaled_objects:
        task, container = generators[scaled["spec"]["scaleTargetRef"]["name"]]
        keys = Keys(prefix=env_sources(rendered, container)["WAN22_PREFIX"])
        spec = scaled["spec"]
        assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] >= 1 and spec["cooldownPeriod"] > 0
        triggers = spec["triggers"]
        # Every priority stream of the task, each with a waiting (lag) and a running (pending) trigger.
        assert [t["metadata"]["stream"] for t in triggers[::2]] == keys.job_streams(task)
        for waiting, running in zip(triggers[::2], triggers[1::2], strict=True):
            for trigger in (waiting, running):
                assert trigger["type"] == "redis-streams"
                assert trigger["metadata"]["stream"] == waiting["metadata"]["stream"]
                assert trigger["metadata"]["consumerGroup"] == GENERATOR_GROUP
                tls = trigger["metadata"].get("enableTLS", "false")
                assert tls == ("true" if rendered.overlay == "prod" else "false")
            assert int(waiting["metadata"]["lagCount"]) >= 1 and int(waiting["metadata"]["activationLagCount"]) >= 0
            assert int(running["metadata"]["pendingEntriesCount"]) >= 1
    for auth in rendered.of_kind("TriggerAuthentication"):
        assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"address", "username", "password"}


def test_every_variable_is_a_setting_of_the_service_that_gets_it(rendered: Rendered):
    aws = aws_variables()
    shared = rendered.configmap(_shared_configmap(rendered))
    assert set(shared) <= setting_names(CommonSettings) | aws, "the shared ConfigMap holds common settings only"
    for workload in rendered.workloads():
        for container in filter(is_ours, workload.spec["containers"]):
            cls = settings_class(container)
            allowed = setting_names(cls) | aws | (RAY_VARIABLES if cls.__name__ == "GeneratorSettings" else set())
            unknown = set(env_sources(rendered, container)) - allowed
            assert not unknown, f"{workload.name}: {sorted(unknown)} are not {cls.__name__} settings"


def _shared_configmap(rendered: Rendered) -> str:
    (name,) = [c["metadata"]["name"] for c in rendered.of_kind("ConfigMap") if "WAN22_PREFIX" in c["data"]]
    return name


def test_ray_address_is_read_by_the_generator():
    assert all(f'"{name}"' in inspect.getsource(services.generator.cli) for name in RAY_VARIABLES)


def test_settings_load_and_probes_hit_the_port_the_service_listens_on(rendered: Rendered, tmp_path: Path):
    for index, workload in enumerate(rendered.workloads()):
        for container in filter(is_ours, workload.spec["containers"]):
            env = materialize(rendered, workload, container, tmp_path / str(index), "redis://127.0.0.1:6379/0")
            cls = settings_class(container)
            try:
                settings = load(cls, env)
            except SettingsError as exc:
                pytest.fail(f"{workload.name}: {exc}")
            load_models(settings.models)  # the mounted models configuration parses
            if cls is CommonSettings:
                continue
            listens = getattr(settings, "http_port", None) or settings.metrics_port
            assert listens in [p["containerPort"] for p in container["ports"]], workload.name
            probes = [container[p] for p in ("livenessProbe", "readinessProbe", "startupProbe") if p in container]
            assert len(probes) >= 2, f"{workload.name}: liveness and readiness probes"
            for probe in probes:
                assert port_number(container, probe["httpGet"]["port"]) == listens, workload.name


def test_generator_probe_paths_are_served_and_readiness_is_the_gang(rendered: Rendered):
    for _, deployment, container in rendered.generators():
        paths = {p: container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")}
        for ready in (False, True):
            client = TestClient(httpserver.ops_app(lambda ready=ready: ready))
            assert client.get(paths["livenessProbe"]).status_code == 200
            assert client.get(paths["startupProbe"]).status_code == 200
            assert client.get(paths["readinessProbe"]).status_code == (200 if ready else 503)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert TestClient(httpserver.ops_app(lambda: True)).get(annotations["prometheus.io/path"]).status_code == 200


def test_the_drain_fits_the_grace_period(rendered: Rendered, tmp_path: Path):
    for task, deployment, container in rendered.generators():
        workload = next(w for w in rendered.workloads() if w.owner is deployment)
        settings = load(settings_class(container), materialize(rendered, workload, container, tmp_path, "redis://x"))
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        # the longest job can finish during the drain, and the hand-back still fits after it
        assert settings.job_timeout_s <= settings.grace_s <= grace - 30, task


def test_tasks_match_the_models_configuration_and_the_gpu_pool(rendered: Rendered, tmp_path: Path):
    models_file = tmp_path / "models.toml"
    models_file.write_text(rendered.configmap(_models_configmap(rendered))["models.toml"])
    models = load_models(str(models_file))
    configured = set(re.findall(r"^\[tasks\.([^\]]+)\]", models_file.read_text(), re.M))
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s["spec"] for s in rendered.of_kind("ScaledObject")}
    generators = {task: scaled[d["metadata"]["name"]]["maxReplicaCount"] for task, d, _ in rendered.generators()}
    assert set(generators) == configured, "one generator per configured task, and no other"
    ray = rendered.get("RayCluster", "wan22")
    groups = {g["groupName"]: g["template"]["spec"]["containers"][0] for g in ray["spec"]["workerGroupSpecs"]}
    gpus = {name: int(worker["resources"]["limits"]["nvidia.com/gpu"]) for name, worker in groups.items()}
    capacity = sum(gpus[g["groupName"]] * g["maxReplicas"] for g in ray["spec"]["workerGroupSpecs"])
    mounts = {m["mountPath"] for worker in groups.values() for m in worker["volumeMounts"]}
    demand = 0
    for task, max_replicas in generators.items():
        served = models.get(task)
        assert served and any(served.ckpt_dir.startswith(m + "/") for m in mounts), f"{task}: weights not mounted"
        one_node = served.placement_strategy == "STRICT_PACK"
        fits = [name for name, n in gpus.items() if n >= served.world_size or not one_node]
        assert fits, f"{task}: no worker group holds a gang of {served.world_size} GPUs"
        demand += max_replicas * served.world_size
    assert demand <= capacity, f"KEDA may ask for {demand} GPUs, the worker groups hold {capacity}"
    for group in ray["spec"]["workerGroupSpecs"]:
        assert group["minReplicas"] == 0 and group.get("replicas", 0) == 0


def _models_configmap(rendered: Rendered) -> str:
    (name,) = [c["metadata"]["name"] for c in rendered.of_kind("ConfigMap") if "models.toml" in c["data"]]
    return name


def test_generators_reach_the_head_client_port_and_ray_matches_the_image(rendered: Rendered):
    ray = rendered.get("RayCluster", "wan22")
    spec = ray["spec"]
    assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    client_port = port_number(head, "client")
    for _, _, container in rendered.generators():
        address = env_sources(rendered, container)["RAY_ADDRESS"]
        assert address == f"ray://{ray['metadata']['name']}-head-svc:{client_port}"  # KubeRay's head Service
    assert locked_versions("image-generator.txt")["ray"] == spec["rayVersion"]


def test_ingress_admits_the_largest_request(rendered: Rendered):
    from services.ingest.settings import IngestSettings

    for ingress in rendered.of_kind("Ingress"):
        size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
        number, unit = re.fullmatch(r"(\d+)([kmg]?)", size.lower()).groups()
        limit = int(number) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]
        assert limit >= IngestSettings().max_body_bytes
