"""An ingest process per module, configured with a test models file and input root."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.redis_server import RedisServer, free_port
from tests.services_proc import ServiceProcess

MODELS_TOML = """
[tasks.i2v-A14B]
ckpt_dir = "/data/Wan2.2-I2V-A14B"

[tasks.demo]
base = "ti2v-5B"
ckpt_dir = "/models/demo"
sizes = ["64*64", "96*64"]
frame_num = 5
sample_steps = 4
negative_prompt = "blurry, static"

[[tasks.demo.lora_registry.adapters]]
name = "style"
path = "/models/loras/style.safetensors"
scale = 0.8

[[tasks.demo.lora_registry.adapters]]
name = "broken"
path = "/models/loras/broken.safetensors"
"""

StartIngest = Callable[..., str]


@pytest.fixture(scope="module")
def start_ingest(redis_server: RedisServer, tmp_path_factory) -> Iterator[StartIngest]:
    procs: list[ServiceProcess] = []
    base = tmp_path_factory.mktemp("ingest")
    (base / "models.toml").write_text(MODELS_TOML)

    def start(**env: str) -> str:
        port = free_port()
        settings = {
            "WAN22_REDIS_URL": redis_server.url,
            "WAN22_HTTP_HOST": "127.0.0.1",
            "WAN22_HTTP_PORT": str(port),
            "WAN22_MODELS": str(base / "models.toml"),
            "WAN22_INPUT_ROOT": "/path/in/pod",
            "WAN22_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
            "WAN22_MAX_BODY_BYTES": "65536",
            "WAN22_LEASE_MS": "2000",
        } | env
        proc = ServiceProcess(["ingest"], settings, base / f"ingest-{port}.log").start()
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        proc.wait_http(url + "/healthz")
        return url

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture(scope="module")
def ingest_url(start_ingest: StartIngest) -> str:
    return start_ingest()
