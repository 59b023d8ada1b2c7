"""The CPU image built from deploy/docker/Dockerfile with podman, on a base made here with debootstrap
(no registry is needed), and ingest and the notifier run from it against the test's redis-server.
Cold, this takes minutes (debootstrap, apt and PyPI downloads), so `make test` leaves it out:
`make image-test` runs it. Reruns reuse the base and the layer cache under `.artifacts/image`."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis as redis_sync

from services.keys import NOTIFIER_GROUP, Keys
from tests.deploy.podman import BUNDLE, HOME, IMAGE, Podman, base_reference, build, make_base, missing_tools, ulimits
from tests.redis_server import free_port

pytestmark = [pytest.mark.image_build, pytest.mark.slow]


@pytest.fixture(scope="module")
def podman() -> Podman:
    if os.geteuid() != 0:
        pytest.skip("the build runs rootful podman and debootstrap: run it as root")
    if missing := missing_tools():
        pytest.skip(f"{', '.join(missing)} missing: `bash scripts/bootstrap.sh image` installs them")
    return Podman()


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    base_s = make_base(podman, HOME / "debootstrap.log")
    build_s = build(podman, HOME / "build.log")
    print(f"base {base_s:.0f} s (0 = cached), build {build_s:.0f} s")
    return IMAGE


@contextmanager
def container(podman: Podman, env: dict[str, str], *args: str) -> Iterator[str]:
    """A detached container of the image on the host's network (the test's Redis listens on
    127.0.0.1); removed whatever happens."""
    name = f"wan22-image-test-{uuid.uuid4().hex[:8]}"
    environment = [option for key, value in env.items() for option in ("-e", f"{key}={value}")]
    try:
        podman.run("run", "-d", "--name", name, "--network", "host", *ulimits(), *environment, IMAGE, *args)
        yield name
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)


def wait_ok(podman: Podman, name: str, url: str, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state(podman, name)["Status"] != "running":
            pytest.fail(f"{name} stopped before answering {url}:\n{logs(podman, name)}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer 200 within {timeout} s:\n{logs(podman, name)}")


def state(podman: Podman, name: str) -> dict:
    return json.loads(podman.run("inspect", "--format", "{{json .State}}", name).stdout)


def logs(podman: Podman, name: str) -> str:
    result = podman.run("logs", name, check=False)
    return (result.stdout + result.stderr)[-3000:]


def stop_gracefully(podman: Podman, name: str) -> None:
    """SIGTERM through tini: the service drains and exits 0 well before podman would SIGKILL."""
    podman.run("stop", "--time", "20", name, timeout=60)
    exit_code = state(podman, name)["ExitCode"]
    assert exit_code == 0, f"{name} exited {exit_code} on SIGTERM:\n{logs(podman, name)}"


def groups(client: redis_sync.Redis, stream: str) -> set[str]:
    if not client.exists(stream):
        return set()
    return {group["name"] for group in client.xinfo_groups(stream)}


def test_the_cpu_image_runs_as_a_user_without_the_generator(podman: Podman, image: str):
    config = json.loads(podman.run("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == "1000:1000" and config["Entrypoint"] == ["tini", "--", "wan22"]
    probe = "import importlib.util as u, os; print(os.getuid(), [m for m in ('torch', 'ray') if u.find_spec(m)])"
    result = podman.run("run", "--rm", "--network", "none", *ulimits(), "--entrypoint", "python", image, "-c", probe)
    assert result.stdout.split(None, 1) == ["1000", "[]\n"], result.stdout
    # The CA bundle mounted over the base's for the build's pip is not part of the image.
    digests = [
        podman.run("run", "--rm", "--network", "none", *ulimits(), "--entrypoint", "sha256sum", name, BUNDLE).stdout
        for name in (image, base_reference()[0])
    ]
    assert digests[0] == digests[1], digests


def test_ingest_and_notifier_run_from_the_image(podman: Podman, image: str, redis_url: str):
    client = redis_sync.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    keys = Keys()
    ingest_port, notifier_port = free_port(), free_port()
    common = {"WAN22_REDIS_URL": redis_url, "WAN22_LOG_LEVEL": "warning"}
    try:
        with container(podman, common | {"WAN22_HTTP_PORT": str(ingest_port)}, "ingest") as ingest:
            assert wait_ok(podman, ingest, f"http://127.0.0.1:{ingest_port}/healthz").json() == {"status": "ok"}
            wait_ok(podman, ingest, f"http://127.0.0.1:{ingest_port}/readyz")
            body = {"task": "t2v-A14B", "prompt": "a red fox in the snow", "size": "1280*720"}
            response = httpx.post(f"http://127.0.0.1:{ingest_port}/generate", json=body, timeout=10)
            assert response.status_code == 202, response.text
            task_id = response.json()["task_id"]
            assert client.hget(keys.task(task_id), "status") == "queued"
            assert client.xlen(keys.jobs("t2v-A14B")) == 1

            assert NOTIFIER_GROUP not in groups(client, keys.events)  # the notifier, not ingest, makes it
            with container(podman, common | {"WAN22_METRICS_PORT": str(notifier_port)}, "notifier") as notifier:
                assert "wan22_" in wait_ok(podman, notifier, f"http://127.0.0.1:{notifier_port}/metrics").text
                deadline = time.monotonic() + 20
                while NOTIFIER_GROUP not in groups(client, keys.events) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert NOTIFIER_GROUP in groups(client, keys.events), logs(podman, notifier)
                stop_gracefully(podman, notifier)
            stop_gracefully(podman, ingest)
    finally:
        client.close()
