"""Ingest settings (`WAN22_*`)."""

from __future__ import annotations

from pathlib import Path

from services.settings import CommonSettings, SettingsError


class IngestSettings(CommonSettings, kw_only=True, frozen=True):
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    api_tokens: list[str] = []  # bearer tokens; empty = no auth
    api_tokens_file: str = ""  # one token per line (a mounted Secret)
    input_root: str = ""  # local images may only come from inside this directory
    max_body_bytes: int = 16 * 1024 * 1024
    max_image_bytes: int = 10 * 1024 * 1024  # decoded `data:` URL images
    max_prompt_chars: int = 4000
    max_queue_lag: int = 1000  # per task; beyond it new requests get 429 / queue_full
    idempotency_ttl_s: int = 24 * 3600
    task_ttl_s: int = 7 * 24 * 3600
    webhook_allow_networks: list[str] = []
    stream_concurrency: int = 64
    s3_endpoint_url: str = ""  # the S3 endpoint of `storage`, for /v1/videos content (empty = AWS)
    videos_default_model: str = ""  # /v1/videos without `model` (empty = `model` is required)
    # WAIT for this many replicas after each accept before answering (0 = off), for up to the timeout.
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.http_port < 65536:
            raise SettingsError("WAN22_HTTP_PORT: must be between 1 and 65535")
        if self.api_tokens_file and not Path(self.api_tokens_file).is_file():
            raise SettingsError(f"WAN22_API_TOKENS_FILE: {self.api_tokens_file} is not a readable file")
        if self.videos_default_model and "*" in self.videos_default_model:
            raise SettingsError("WAN22_VIDEOS_DEFAULT_MODEL: must name one served task")
        if self.input_root and not Path(self.input_root).is_absolute():
            raise SettingsError("WAN22_INPUT_ROOT: must be an absolute path")
        if self.redis_wait_replicas < 0:
            raise SettingsError("WAN22_REDIS_WAIT_REPLICAS: must be 0 (off) or more")
        if self.redis_wait_timeout_ms < 1:  # WAIT 0 would block an accept for as long as a replica is away
            raise SettingsError("WAN22_REDIS_WAIT_TIMEOUT_MS: must be at least 1")

    def tokens(self) -> frozenset[str]:
        tokens = set(self.api_tokens)
        if self.api_tokens_file:
            tokens |= {line.strip() for line in Path(self.api_tokens_file).read_text().splitlines() if line.strip()}
        return frozenset(tokens)
