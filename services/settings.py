"""Typed settings per service, from `WAN22_*` environment variables and CLI flags mirroring them.

A bad value stops the service at start with one line naming the variable (`SettingsError`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import msgspec

from services import redisurl
from services.consumer.policy import ConsumerSettings

ENV_PREFIX = "WAN22_"
S = TypeVar("S", bound=msgspec.Struct)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class CommonSettings(msgspec.Struct, kw_only=True, frozen=True):
    redis_url: str = "redis://localhost:6379/0"
    prefix: str = "wan22"
    storage: str = "./outputs"
    models: str = ""  # TOML models configuration; empty = built-in presets only
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    lease_ms: int = 30_000
    metrics_port: int = 0  # 0 = no metrics server (ingest serves /metrics on its HTTP port)

    def __post_init__(self) -> None:
        try:
            redisurl.check(self.redis_url)
        except redisurl.RedisUrlError as exc:
            raise SettingsError(f"{ENV_PREFIX}REDIS_URL: {exc}") from None
        if not self.prefix or any(c in self.prefix for c in " :*"):
            raise SettingsError(f"{ENV_PREFIX}PREFIX: must be non-empty without spaces, ':' or '*'")
        if self.lease_ms < 100:
            raise SettingsError(f"{ENV_PREFIX}LEASE_MS: must be at least 100")

    def consumer(self, **overrides: Any) -> ConsumerSettings:
        return ConsumerSettings(lease_ms=self.lease_ms, **overrides)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load(cls: type[S], env: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """Settings of type `cls`: explicit overrides (CLI flags) > environment > defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        override = overrides.get(field.name)
        if override is not None:
            values[field.name] = _parse_env(override, field.type) if isinstance(override, str) else override
        elif env_name(field.name) in env:
            values[field.name] = _parse_env(env[env_name(field.name)], field.type)
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


def _parse_env(raw: str, annotation: Any) -> Any:
    """Lists and tuples come comma-separated; everything else as the string msgspec converts."""
    text = str(annotation)
    if text.startswith(("list", "tuple")) or "list[" in text or "tuple[" in text:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _explain(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    if " - at `$." in message:
        reason, _, path = message.partition(" - at `$.")
        field = path.rstrip("`").split(".")[0].split("[")[0]
        return f"{env_name(field)}: {reason}"
    return message


def add_arguments(
    parser: argparse.ArgumentParser, cls: type[msgspec.Struct], helps: Mapping[str, str] | None = None
) -> None:
    """One `--flag` per field (`--redis-url` for WAN22_REDIS_URL); unset flags fall back to env.
    A list field's flag repeats; its variable is comma-separated."""
    for field in msgspec.structs.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        text = f"{helps[field.name]} " if helps and field.name in helps else ""
        repeat = "append" if _parse_env("", field.type) == [] else "store"
        text += f"(env {env_name(field.name)})"
        parser.add_argument(flag, dest=field.name, default=None, action=repeat, help=text)


def from_args(cls: type[S], args: argparse.Namespace, env: Mapping[str, str] | None = None) -> S:
    overrides = {f.name: getattr(args, f.name, None) for f in msgspec.structs.fields(cls)}
    return load(cls, env, **overrides)
