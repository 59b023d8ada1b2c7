"""deploy/compose.yaml agrees with the code: commands, settings, ports, health checks, mounts."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from services.models_config import load_models
from services.settings import load
from tests.deploy.container import SETTINGS, setting_names
from tests.deploy.manifests import DEPLOY, ROOT

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set in the environment."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def environment(name: str) -> dict[str, str]:
    env = {k: interpolate(str(v)) for k, v in SERVICES[name]["environment"].items()}
    for volume in SERVICES[name].get("volumes", []):  # bind mounts: the container path → this checkout
        if isinstance(volume, dict) and volume["type"] == "bind":
            target, source = volume["target"], str((DEPLOY / interpolate(volume["source"])).resolve())
            env = {k: source + v[len(target) :] if v.startswith(target) else v for k, v in env.items()}
    return env


def seconds(duration: str) -> int:
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in re.findall(r"(\d+)([hms])", duration))


def test_one_box_redis_ingest_notifier_generator():
    assert set(SERVICES) == {"redis", "ingest", "notifier", "generator"}
    redis = SERVICES["redis"]
    assert int(redis["image"].split(":")[1].split(".")[0]) >= 7
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert any(str(v).endswith(":/data") for v in redis["volumes"])


def test_services_run_wan22_with_their_settings():
    for name in ("ingest", "notifier", "generator"):
        service = SERVICES[name]
        cls = SETTINGS[service["command"][0]]
        env = environment(name)
        assert set(env) <= setting_names(cls), f"{name}: {sorted(set(env) - setting_names(cls))}"
        settings = load(cls, env)
        assert urlsplit(settings.redis_url).hostname in SERVICES, name
        listens = getattr(settings, "http_port", None) or settings.metrics_port
        url = urlsplit(re.search(r"http://[^'\"]+", " ".join(service["healthcheck"]["test"])).group(0))
        assert url.port == listens and url.path in ("/healthz", "/readyz", "/metrics"), name
        for key in env:
            if re.search(r"SECRET|TOKENS$|PASSWORD", key):
                assert str(service["environment"][key]).startswith("${"), f"{name}: {key} must come from outside"
    published = SERVICES["ingest"]["ports"][0].rsplit(":", 1)[1]
    assert int(published) == load(SETTINGS["ingest"], environment("ingest")).http_port


def test_images_and_the_generator():
    assert (ROOT / SERVICES["ingest"]["build"]["dockerfile"]).is_file()
    assert (DEPLOY / SERVICES["ingest"]["build"]["context"]).resolve() == ROOT
    assert SERVICES["ingest"]["build"]["args"]["VARIANT"] == "cpu"
    assert SERVICES["notifier"]["image"] == SERVICES["ingest"]["image"]
    generator = SERVICES["generator"]
    assert "VARIANT" not in generator["build"].get("args", {})  # the CUDA default
    assert generator["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    settings = load(SETTINGS["generator"], environment("generator"))
    assert settings.job_timeout_s <= settings.grace_s <= seconds(generator["stop_grace_period"]) - 30
    task = interpolate(generator["command"][generator["command"].index("--task") + 1])
    served = load_models(settings.models).get(task)
    weights = next(v for v in generator["volumes"] if isinstance(v, dict) and v["target"] == "/models")
    assert served and served.ckpt_dir.startswith(weights["target"] + "/") and weights["read_only"]
    assert Path(settings.models).is_file()
