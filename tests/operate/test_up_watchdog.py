"""`wan22 up` killed with SIGKILL leaves nothing running: not Redis, not the Ray head and its
workers, not the services (its watchdog stops them)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.stack.redis_server import free_port
from services.stack.watchdog import members
from tests.services_proc import ROOT

pytestmark = pytest.mark.slow


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == pid:
                found.add(int(entry.name))
    return found


def _names(pids: set[int]) -> dict[int, str]:
    """Command lines of the live processes among `pids` (a zombie's is empty)."""
    names = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return {pid: name[:80] for pid, name in names.items() if name}


def _wait_for(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_of_up_stops_everything_it_started(tmp_path: Path):
    env = os.environ | {
        "WAN22_STATE_DIR": str(tmp_path / "state"),
        "WAN22_STORAGE": str(tmp_path / "outputs"),
        "WAN22_HTTP_PORT": str(free_port()),
        "RAY_AUTH_MODE": "disabled",
    }
    for name in ("WAN22_REDIS_URL", "WAN22_MODELS", "RAY_ADDRESS"):
        env.pop(name, None)
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "up"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:

        def started() -> dict[int, str]:
            names = _names(members(_children_of(up.pid)))
            return names if any("ray::RankWorker" in n for n in names.values()) else {}

        # Redis, the Ray head with a rank worker of the demo gang, ingest, notifier, generator.
        running = _wait_for(started, 300, "the demo gang's rank worker")
        assert any("redis-server" in n for n in running.values())
        assert any(n.endswith("services.cli.main ingest ") for n in running.values())
        os.kill(up.pid, signal.SIGKILL)
        up.wait(10)
        _wait_for(lambda: not _names(set(running)), 60, f"these processes to stop: {running}")
    finally:
        if up.poll() is None:
            up.kill()
