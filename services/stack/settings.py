"""Settings of `wan22 up` and `wan22 demo`: like every service's, each one is a `WAN22_*`
environment variable and a flag (flags win)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.stack.defaults import STATE_DIR

Port = Annotated[int, Meta(ge=0, le=65535)]
Positive = Annotated[int, Meta(ge=1, le=1024)]


class StackSettings(msgspec.Struct, kw_only=True, frozen=True):
    state_dir: str = str(STATE_DIR)
    http_port: Port = 0  # 0: 8000 for `up`, a free port for `demo`
    storage: str = "./outputs"
    fsync: Literal["everysec", "always"] = "everysec"
    world_size: Positive = 1
    replicas: Positive = 1


class UpSettings(StackSettings, kw_only=True, frozen=True):
    task: list[str] = []


class DemoSettings(StackSettings, kw_only=True, frozen=True):
    prompt: Annotated[str, Meta(min_length=1, max_length=8000)] = "a red fox running through fresh snow, cinematic"


HELP = {
    "state_dir": "embedded Redis data, the demo model and its models configuration",
    "http_port": "ingest's port (up: 8000 when unset or 0; demo: a free one)",
    "storage": "videos directory or s3://bucket/prefix",
    "fsync": "embedded Redis appendfsync: everysec or always (always: no acknowledged write lost on a crash)",
    "world_size": "ranks of the demo task's gang",
    "replicas": "generators (gangs) per task",
    "task": "only these tasks' generators (repeatable flag; comma-separated variable)",
    "prompt": "the demo's prompt",
}
