"""A private redis-server on a free port: `wan22 up`'s embedded default, and the tests' real Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Starts `redis-server` with its data in a temporary directory; `restart()` keeps the data
    (AOF), which the chaos tests use."""

    def __init__(
        self,
        *,
        appendonly: bool = False,
        fsync: str = "everysec",
        port: int | None = None,
        data_dir: Path | None = None,
        on_spawn: Callable[[int], None] | None = None,
    ) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = port or free_port()
        self.may_move = port is None  # a port we chose may be taken before the server binds it
        self.keep_data = data_dir is not None
        self.dir = data_dir or Path(tempfile.mkdtemp(prefix="wan22-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.appendonly, self.fsync = appendonly, fsync
        self.proc: subprocess.Popen[bytes] | None = None
        self.on_spawn = on_spawn  # told the session id of every redis-server started

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start and wait for PONG. Until the first start succeeds, a port of our choosing that
        something else took in the meantime is replaced by another free one."""
        for _ in range(3):
            self._spawn()
            if self._wait_ready():
                self.may_move = False  # clients now hold this URL; a restart keeps it
                return self
            if not self.may_move:
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server could not listen on port {self.port} (taken?)")

    def _spawn(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.fsync,
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if self.on_spawn:
            self.on_spawn(self.proc.pid)

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        """True on our server's PONG; False when it exited (its port is in use)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if not self.keep_data:
            shutil.rmtree(self.dir, ignore_errors=True)
