"""The Go package clients/go/wan22: generated from docs/schema/ and services/keys.py, kept current,
and tested with `go test` (Debian's golang-go, GOPATH mode, Debian's redigo for the live test)
against samples the Python contracts write and against a live redis-server and ingest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import anyio
import msgspec
import pytest

from services import gogen
from services.contracts import (
    Accepted,
    Cancelled,
    Completed,
    Failed,
    Job,
    Progress,
    Rejected,
    Retrying,
    Started,
    encode,
    event_entry,
    now,
)
from services.keys import Keys
from services.schema import render as render_schemas
from services.tasks import TaskStore

GO_DIR = gogen.ROOT / "clients" / "go"
REDIGO = Path("/usr/share/gocode")  # Debian's golang-github-gomodule-redigo-dev
KEYS = Keys()


def test_generated_go_is_current(tmp_path: Path):
    committed = gogen.GO_FILE.read_text()
    assert committed == gogen.render(), "run `wan22 schema --go`"
    for name, text in render_schemas().items():  # from the schemas the code writes, too
        (tmp_path / name).write_text(text)
    assert gogen.render(tmp_path) == committed


def test_go_names_follow_the_contracts():
    text = gogen.GO_FILE.read_text()
    for needle in ("DeadlineS      *float64", "Priority       *string", "func (e *Failed) EventType() string"):
        assert needle in text, needle


async def _samples(redis, path: Path) -> None:
    task_id = "go-sample"
    events = [
        Accepted(task_id=task_id, request_id="1-0", task="demo"),
        Rejected(task_id=task_id, request_id="2-0", error="bad", field="priority"),
        Started(task_id=task_id, attempt=2, worker="gen-1"),
        Retrying(task_id=task_id, attempt=1, max_attempts=3, error="RuntimeError: x", delay_s=0.5),
        Completed(task_id=task_id, video_url="s3://b/v.mp4", poster_url="s3://b/p.jpg", duration_s=12.5),
        Failed(task_id=task_id, error="expired", attempts=0, error_type="expired"),
        Cancelled(task_id=task_id, reason="cancelled at step 3"),
    ]
    job = Job(
        task_id=task_id, task="demo", prompt="p", image="s3://b/i.png", width=64, height=64, frame_num=5,
        sample_steps=4, sample_shift=5.0, guide_scale=(4.0, 5.0), seed=2**62, fps=24, webhook_url="https://e/h",
        metadata={"user": "u1"}, priority="high", deadline_at=now() + 60, request_id="1-0", created_at=now(),
    )  # fmt: skip
    await TaskStore(redis, KEYS).accept(job, None, 60)
    progress = Progress(task_id=task_id, step=2, total=4, percent=50.0, expert="high_noise", elapsed_s=1.5, ts=now())
    samples = {
        "events": [{k: v.decode() if isinstance(v, bytes) else v for k, v in event_entry(e).items()} for e in events],
        "job": encode(job).decode(),
        "progress": encode(progress).decode(),
        "task_hash": await redis.hgetall(KEYS.task(task_id)),
        "task_id": task_id,
    }
    path.write_text(json.dumps(samples))
    await redis.flushall()  # the live test starts from an empty Redis


def _go(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


async def test_go_package_against_samples_and_a_live_stack(redis, redis_url, ingest_url, tmp_path: Path):
    go = shutil.which("go")
    if go is None or not (REDIGO / "src/github.com/gomodule/redigo/redis").is_dir():
        pytest.skip("needs golang-go and golang-github-gomodule-redigo-dev (make test installs them)")
    gopath = tmp_path / "gopath"
    for package in ("wan22", "livetest"):
        shutil.copytree(GO_DIR / package, gopath / "src/wan22serve/clients/go" / package)
    await _samples(redis, tmp_path / "samples.json")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "GOCACHE": os.environ.get("GOCACHE", str(Path.home() / ".cache/go-build")),
        "GO111MODULE": "off",
        "GOPATH": f"{gopath}:{REDIGO}",
        "GOFLAGS": "",
        "WAN22_REDIS_URL": redis_url,
        "WAN22_INGEST_URL": ingest_url,
        "WAN22_GO_SAMPLES": str(tmp_path / "samples.json"),
    }
    packages = ["wan22serve/clients/go/wan22", "wan22serve/clients/go/livetest"]
    unformatted = await anyio.to_thread.run_sync(lambda: _go(["gofmt", "-l", str(GO_DIR)], env))
    assert unformatted.returncode == 0 and unformatted.stdout == "", unformatted.stdout + unformatted.stderr
    vet = await anyio.to_thread.run_sync(lambda: _go([go, "vet", *packages], env))
    assert vet.returncode == 0, vet.stderr
    tested = await anyio.to_thread.run_sync(lambda: _go([go, "test", "-count=1", "-v", *packages], env))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "--- SKIP" not in tested.stdout, tested.stdout
    for name in ("TestKeys", "TestFlatAndPayloadFields", "TestPythonSamplesDecode", "TestRequestsThroughALiveIngest"):
        assert f"--- PASS: {name}" in tested.stdout, name
    assert msgspec.json.decode((tmp_path / "samples.json").read_bytes())["task_hash"]["priority"] == "high"
