"""ingest and notifier started as the prod manifests start them (their environment, their mounted
files), without the generator extra as in the CPU image; their probes answer, the examples of
docs/deploy.md are accepted, and SIGTERM stops them well within the pod's grace period."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from services.keys import Keys
from tests.deploy.container import API_TOKEN, cpu_image_command, materialize
from tests.deploy.manifests import ROOT, Rendered, port_number
from tests.redis_server import free_port

DOCS = (ROOT / "docs" / "deploy.md").read_text()


def start(rendered: Rendered, name: str, tmp_path: Path, redis_url: str, port_var: str):
    """The Deployment's container as a local process on a free port; returns (process, port, deployment)."""
    deployment = rendered.get("Deployment", name)
    workload = next(w for w in rendered.workloads() if w.owner is deployment)
    container = workload.spec["containers"][0]
    env = materialize(rendered, workload, container, tmp_path / name, redis_url)
    port = free_port()
    env |= {port_var: str(port), "WAN22_LOG_FORMAT": "console", "WAN22_LOG_LEVEL": "warning"}
    env |= {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    proc = subprocess.Popen(cpu_image_command(container["args"]), env=env, cwd=tmp_path)
    return proc, port, deployment


def wait_ok(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode} before answering {url}"
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200 within {timeout} s")


def stop(proc: subprocess.Popen, deployment: dict) -> None:
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=min(grace, 20)) == 0
    finally:
        proc.kill()


def docs_curl_body() -> dict:
    (body,) = re.findall(r"-d '(\{.*?\})'", DOCS)
    return json.loads(body)


def docs_go_fields() -> dict[str, str]:
    block = re.search(r"Values: map\[string\]any\{\n(.*?)\n\t\t?\}", DOCS, re.S).group(1)
    return dict(re.findall(r'"(\w+)":\s*"([^"]*)"', block))


def probe_paths(container: dict) -> set[str]:
    return {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe") if p in container}


def test_ingest_and_notifier_run_from_the_manifests(prod: Rendered, redis_url: str, tmp_path: Path):
    client = redis_sync.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    ingest, ingest_port, ingest_deployment = start(prod, "wan22-ingest", tmp_path, redis_url, "WAN22_HTTP_PORT")
    notifier, notifier_port, notifier_deployment = start(
        prod, "wan22-notifier", tmp_path, redis_url, "WAN22_METRICS_PORT"
    )
    try:
        ingest_container = ingest_deployment["spec"]["template"]["spec"]["containers"][0]
        for path in probe_paths(ingest_container) | {"/metrics"}:
            wait_ok(f"http://127.0.0.1:{ingest_port}{path}", ingest)
        notifier_container = notifier_deployment["spec"]["template"]["spec"]["containers"][0]
        for path in probe_paths(notifier_container):
            assert "wan22_" in wait_ok(f"http://127.0.0.1:{notifier_port}{path}", notifier).text
        assert port_number(notifier_container, "metrics") == 9101  # what the settings default to

        body = docs_curl_body()
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        response = httpx.post(f"http://127.0.0.1:{ingest_port}/generate", json=body, headers=headers, timeout=10)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "task_started" and response.json()["task_id"]

        keys = Keys(prefix=prod.configmap(_env_configmap(prod))["WAN22_PREFIX"])
        fields = docs_go_fields()
        client.xadd(keys.requests, fields)
        deadline = time.monotonic() + 20
        while not client.exists(keys.task(fields["task_id"])) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.xlen(keys.jobs(body["task"])) == 1
        assert client.xlen(keys.jobs(fields["task"])) == 1, "the Go example was not routed to its job stream"
    finally:
        for proc, deployment in ((ingest, ingest_deployment), (notifier, notifier_deployment)):
            stop(proc, deployment)
        client.close()


def _env_configmap(rendered: Rendered) -> str:
    (name,) = [c["metadata"]["name"] for c in rendered.of_kind("ConfigMap") if "WAN22_PREFIX" in c["data"]]
    return name
