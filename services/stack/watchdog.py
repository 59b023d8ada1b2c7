"""Nothing `wan22 up` started outlives it, even when it is SIGKILLed.

`up` starts this module as a separate process (its own session, so a signal to `up`'s process
group does not reach it) with a pipe on its stdin whose write end only `up` holds. Everything `up`
starts (Redis, the Ray head, each service) leads a session of its own; `up` writes `+SID` for each
and `-SID` once it has stopped one. When the pipe reaches end-of-file, `up` is gone, however it
died: the watchdog sends SIGTERM to every process of the sessions still registered, then SIGKILL
to those still alive after a grace.

PR_SET_PDEATHSIG is not enough: it fires when the spawning *thread* exits (Redis and Ray are
started from worker threads), and Ray's own daemons are grandchildren it does not reach.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

GRACE_S = 5.0


class Watchdog:
    """`up`'s side: start the watchdog, register and unregister sessions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "services.stack.watchdog"],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )

    def watch(self, sid: int) -> None:
        self._send(f"+{sid}\n")

    def unwatch(self, sid: int) -> None:
        self._send(f"-{sid}\n")

    def close(self) -> None:
        """Normal shutdown: whatever is still registered is stopped, then the watchdog exits."""
        with self._lock, contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        self._proc.wait()

    def _send(self, line: str) -> None:
        with self._lock, contextlib.suppress(OSError):  # a dead watchdog must not stop `up`
            assert self._proc.stdin is not None
            self._proc.stdin.write(line.encode())
            self._proc.stdin.flush()


def _watched_until_eof(stream: object) -> set[int]:
    sessions: set[int] = set()
    for raw in stream:  # type: ignore[attr-defined]
        line = raw.strip()
        if line[:1] in (b"+", b"-") and line[1:].isdigit() and int(line[1:]) > 1:
            (sessions.add if line[:1] == b"+" else sessions.discard)(int(line[1:]))
    return sessions


def _session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
    return int(stat.rsplit(")", 1)[1].split()[3])


def members(sessions: set[int]) -> set[int]:
    """Every live process in these sessions. Ray's workers put themselves in process groups of
    their own but stay in the session of `ray start`."""
    pids = {int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()}
    return {pid for pid in pids if _session_of(pid) in sessions} | (sessions & pids)


def _signal_all(pids: set[int], signum: int) -> set[int]:
    """Signal each process; those that still exist."""
    alive = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
            alive.add(pid)
    return alive


def stop_sessions(sessions: set[int], grace_s: float = GRACE_S) -> None:
    alive = _signal_all(members(sessions), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = _signal_all(alive | members(sessions), 0)
    _signal_all(alive | members(sessions), signal.SIGKILL)


def main() -> None:
    # Only end-of-file on stdin ends the watch: a Ctrl-C meant for `up` must not stop it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop_sessions(_watched_until_eof(sys.stdin.buffer))


if __name__ == "__main__":
    main()
