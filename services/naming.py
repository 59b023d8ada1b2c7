"""Consumer names: unique per process, readable in `wan22 groups`."""

from __future__ import annotations

import os
import secrets
import socket


def consumer_name(role: str) -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
