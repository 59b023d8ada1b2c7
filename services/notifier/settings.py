"""Notifier settings (`WAN22_WEBHOOK_*`), validated at start."""

from __future__ import annotations

from services.egress import Network, parse_networks
from services.notifier.signing import parse_secret
from services.notifier.store import DONE_TTL_S
from services.settings import CommonSettings, SettingsError, env_name

DEFAULT_SCHEDULE = "0,5,300,1800,7200,18000,36000,36000"
MIN_RECORD_TTL_S = 300  # far longer than an event stays pending between fan-out and ack


class NotifierSettings(CommonSettings, kw_only=True, frozen=True):
    webhook_schedule: str = DEFAULT_SCHEDULE  # seconds before each attempt, comma-separated
    webhook_allow_networks: list[str] = []  # CIDRs of internal receivers that may be called
    webhook_timeout_s: float = 15.0  # an attempt succeeds on a 2xx within this time
    webhook_concurrency: int = 100  # attempts in flight in one notifier
    webhook_per_endpoint: int = 8  # attempts in flight to one scheme://host:port
    webhook_jitter: float = 0.1  # retry delays vary by ± this fraction
    webhook_secret: str = ""  # whsec_ secret(s) for tasks' own webhook_url; empty = per-deployment
    webhook_record_ttl_s: int = DONE_TTL_S  # finished delivery records (task page); = task TTL
    metrics_port: int = 9101

    def __post_init__(self) -> None:
        super().__post_init__()
        _parse_schedule(self.webhook_schedule)
        try:
            parse_networks(self.webhook_allow_networks)
        except ValueError as exc:
            raise SettingsError(f"{env_name('webhook_allow_networks')}: {exc}") from None
        _require(self.webhook_timeout_s > 0, "webhook_timeout_s", "must be positive")
        _require(self.webhook_concurrency >= 1, "webhook_concurrency", "must be at least 1")
        _require(self.webhook_per_endpoint >= 1, "webhook_per_endpoint", "must be at least 1")
        _require(0 <= self.webhook_jitter < 1, "webhook_jitter", "must be in [0, 1)")
        _require(
            self.webhook_record_ttl_s >= MIN_RECORD_TTL_S,
            "webhook_record_ttl_s",
            f"must be at least {MIN_RECORD_TTL_S} (a redelivered event must still find its deliveries)",
        )
        for secret in self.secrets:
            try:
                parse_secret(secret)
            except ValueError as exc:
                raise SettingsError(f"{env_name('webhook_secret')}: {exc}") from None

    @property
    def schedule(self) -> tuple[float, ...]:
        return _parse_schedule(self.webhook_schedule)

    @property
    def allow_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.webhook_allow_networks)

    @property
    def secrets(self) -> list[str]:
        return [s.strip() for s in self.webhook_secret.split(",") if s.strip()]


def _parse_schedule(text: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        delays = ()
    if not delays or any(not 0 <= d < 10 * 365 * 86400 for d in delays):
        raise SettingsError(
            f"{env_name('webhook_schedule')}: expected non-negative seconds, comma-separated (got {text!r})"
        )
    return delays


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise SettingsError(f"{env_name(field)}: {message}")
