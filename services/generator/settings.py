"""Generator settings (`WAN22_*`): which task this gang serves and how it runs."""

from __future__ import annotations

from typing import Literal

from services.settings import CommonSettings, SettingsError


class GeneratorSettings(CommonSettings, kw_only=True, frozen=True):
    task: str = ""
    world_size: int = 0  # 0 = the models configuration's value for the task
    device: Literal["auto", "cuda", "cpu"] = "auto"
    metrics_port: int = 9100  # /metrics, /healthz, /readyz (200 once the gang is ready)
    metrics_host: str = "0.0.0.0"
    grace_s: float = 60.0  # on SIGTERM, how long the running job may finish before it is handed back
    job_timeout_s: float = 3600.0  # a job running longer is treated as a hung gang
    # Names this generator's Ray placement group, so a restart (same pod) finds and removes the old
    # one; unique among live generators of a task. Empty: unique per process (nothing to find).
    generator_id: str = ""
    # Process group and model load, once placed; waiting for Ray to find room has no deadline.
    gang_start_timeout_s: float = 1800.0
    collective_timeout_s: float = 600.0  # torch.distributed timeout: a dead peer cannot hang a rank
    progress_maxlen: int = 100_000  # the progress stream is capped (approximately) at this length
    progress: bool = True  # per-step progress entries (off only to measure what they cost)
    input_root: str = ""
    max_image_bytes: int = 20 * 1024 * 1024
    webhook_allow_networks: list[str] = []  # networks an https:// image may come from anyway
    s3_endpoint_url: str = ""
    s3_presign_s: int = 0  # > 0: events carry presigned GET URLs valid this long
    ray_num_cpus: int = 0  # local Ray only: CPUs to offer (0 = Ray's default)
    backoff_base_s: float = 2.0
    # 2: the next job claims the gang and denoises while the last one encodes and uploads; 1: one job
    # at a time from claim to ack. Each extra one is an entry this gang holds before it can start it.
    jobs_in_flight: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.world_size < 0:
            raise SettingsError("WAN22_WORLD_SIZE: must be at least 1 (0 = from the models configuration)")
        if self.jobs_in_flight < 1:
            raise SettingsError("WAN22_JOBS_IN_FLIGHT: must be at least 1")
        if self.grace_s < 0 or self.job_timeout_s <= 0:
            raise SettingsError("WAN22_GRACE_S / WAN22_JOB_TIMEOUT_S: must be positive")
