"""Prometheus metrics of all services (names prefixed `wan22_`), in the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMER_ACKED = Counter("wan22_consumer_acked_total", "Entries acked after success", ["stream", "group"])
CONSUMER_RETRIES = Counter("wan22_consumer_retries_total", "Handler failures retried", ["stream", "group"])
CONSUMER_RECLAIMED = Counter(
    "wan22_consumer_reclaimed_total", "Entries reclaimed from dead consumers", ["stream", "group"]
)
CONSUMER_DEAD = Counter("wan22_dead_lettered_total", "Entries dead-lettered", ["stream", "group", "reason"])
CONSUMER_HANDLER_SECONDS = Histogram(
    "wan22_handler_seconds",
    "Handler run time",
    ["stream", "group"],
    buckets=(0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60, 300, 1800),
)
REQUESTS = Counter("wan22_requests_total", "Requests by outcome and reason", ["door", "outcome", "reason"])
QUEUE_LAG = Gauge("wan22_queue_lag", "Consumer-group lag per task queue", ["task"])
JOBS = Counter("wan22_jobs_total", "Jobs by outcome", ["task", "outcome"])
JOB_SECONDS = Histogram(
    "wan22_job_seconds", "Job run time", ["task"], buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600)
)
STEP_SECONDS = Histogram(
    "wan22_step_seconds", "Denoising step time", ["task"], buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60)
)
GANG_BUSY_SECONDS = Counter(
    "wan22_gang_busy_seconds", "Time the gang spent generating (rank 0: text encoding to decoded frames)", ["task"]
)
GANG_HANDOVER_SECONDS = Histogram(
    "wan22_gang_handover_seconds",
    "From one job's decoded frames to the start of the next job that was already queued (no rank works)",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
MODEL_LOAD_SECONDS = Gauge("wan22_model_load_seconds", "Time to load the resident model", ["task"])
GANG_WARMUP_SECONDS = Gauge(
    "wan22_gang_warmup_seconds", "The warm-up job at each `warmup` shape, before the gang was ready", ["task", "shape"]
)
GANG_WAITING = Gauge(
    "wan22_gang_waiting_for_capacity",
    "1 while the gang's placement group waits for Ray to find room (the Ray autoscaler sees the same demand)",
    ["task"],
)
GANG_REBUILDS = Counter("wan22_gang_rebuilds_total", "Gangs torn down and rebuilt", ["task"])
WEBHOOK_DELIVERIES = Counter("wan22_webhook_deliveries_total", "Webhook attempts by outcome", ["outcome"])
WEBHOOK_SECONDS = Histogram(
    "wan22_webhook_seconds", "Webhook delivery latency", buckets=(0.005, 0.02, 0.1, 0.5, 1, 5, 15)
)
WEBHOOK_SCHEDULED = Gauge("wan22_webhook_scheduled", "Webhook deliveries waiting in the durable schedule")
WEBHOOK_DEAD = Counter("wan22_webhook_dead_lettered_total", "Webhook deliveries dead-lettered", ["reason"])
