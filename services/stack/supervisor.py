"""Child processes of `wan22 up`: prefixed logs, restart with backoff when one dies, clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.abc
import structlog

log = structlog.get_logger("wan22.up")


class Sessions(Protocol):
    """Told of the session of every child started and ended (the watchdog of `wan22 up`)."""

    def watch(self, sid: int) -> None: ...
    def unwatch(self, sid: int) -> None: ...


COLORS = ("36", "35", "33", "32", "34", "31")


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    color: str = "36"
    process: anyio.abc.Process | None = None
    restarts: int = 0

    @property
    def prefix(self) -> bytes:
        tag = f"{self.name:<10}|"
        return (f"\x1b[{self.color}m{tag}\x1b[0m " if sys.stdout.isatty() else f"{tag} ").encode()


class Supervisor:
    def __init__(self, children: list[Child], grace_s: float = 30.0, sessions: Sessions | None = None) -> None:
        self.children, self.grace_s, self.sessions = children, grace_s, sessions
        for index, child in enumerate(children):
            child.color = COLORS[index % len(COLORS)]
        self._stopping = anyio.Event()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            for child in self.children:
                tg.start_soon(self._keep_running, child)

    def stop(self) -> None:
        self._stopping.set()

    async def _keep_running(self, child: Child) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            code = await self._run_once(child)
            if self._stopping.is_set():
                return
            if time.monotonic() - started > 60:
                backoff = 1.0  # it ran fine for a while: this is a fresh failure
            child.restarts += 1
            log.warning("up.child_exited", child=child.name, code=code, restart_in_s=backoff, restarts=child.restarts)
            with anyio.move_on_after(backoff):
                await self._stopping.wait()
            backoff = min(backoff * 2, 30.0)

    async def _run_once(self, child: Child) -> int | None:
        env = os.environ | child.env | {"PYTHONUNBUFFERED": "1"}
        process = await anyio.open_process(
            child.args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        child.process = process
        if self.sessions:
            self.sessions.watch(process.pid)  # a session of its own, whose id is its pid
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump, child, process)
            tg.start_soon(self._stop_on_request, process)
            code = await process.wait()
            tg.cancel_scope.cancel()
        if self.sessions:
            self.sessions.unwatch(process.pid)
        return code

    async def _pump(self, child: Child, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        buffer = b""
        async for chunk in process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                sys.stdout.buffer.write(child.prefix + line + b"\n")
            sys.stdout.flush()

    async def _stop_on_request(self, process: anyio.abc.Process) -> None:
        await self._stopping.wait()
        with anyio.CancelScope(shield=True):
            _signal(process, signal.SIGTERM)
            with anyio.move_on_after(self.grace_s):
                await process.wait()
                return
            _signal(process, signal.SIGKILL)


def _signal(process: anyio.abc.Process, signum: int) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)  # the child and anything it started
