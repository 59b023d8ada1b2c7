"""Every Redis key, stream and group name. Nothing else in the project spells a key."""

from __future__ import annotations

import msgspec

PROGRESS_STREAM = "wan22-progress-stream"  # name kept from the first version, unprefixed

INGEST_GROUP = "ingest"
GENERATOR_GROUP = "generator"
NOTIFIER_GROUP = "notifier"

# Job priorities, highest first. `normal` keeps the original stream name, so producers and
# generators that predate priorities keep working through a rolling deploy.
PRIORITIES = ("high", "normal", "low")
DEFAULT_PRIORITY = "normal"


class Keys(msgspec.Struct, frozen=True):
    """Key names under one prefix (`WAN22_PREFIX`, default `wan22`)."""

    prefix: str = "wan22"

    @property
    def requests(self) -> str:
        return f"{self.prefix}:requests"

    def jobs(self, task: str, priority: str = DEFAULT_PRIORITY) -> str:
        """The job stream of a task at one priority: `wan22:jobs:<task>` (normal), `...:high`, `...:low`."""
        base = f"{self.prefix}:jobs:{task}"
        return base if priority == DEFAULT_PRIORITY else f"{base}:{priority}"

    def task_of(self, stream: str) -> str:
        """The task of a job stream of any priority."""
        task = stream.removeprefix(self.jobs(""))
        for priority in PRIORITIES:
            if priority != DEFAULT_PRIORITY and task.endswith(f":{priority}"):
                return task.removesuffix(f":{priority}")
        return task

    def job_streams(self, task: str) -> list[str]:
        """Every job stream of a task, highest priority first."""
        return [self.jobs(task, priority) for priority in PRIORITIES]

    @property
    def deadlines(self) -> str:
        """Sorted set of queued tasks with a deadline (score: the deadline, epoch seconds)."""
        return f"{self.prefix}:deadlines"

    @property
    def tasks_by_created(self) -> str:
        """Sorted set of every accepted task (score: created_at, epoch seconds), trimmed to the
        tasks' retention; `GET /v1/videos` pages through it."""
        return f"{self.prefix}:tasks:by-created"

    def run_times(self, task: str) -> str:
        """Recent run times of a task's jobs (seconds, newest first), for queue estimates."""
        return f"{self.prefix}:runtimes:{task}"

    @property
    def jobs_pattern(self) -> str:
        return f"{self.prefix}:jobs:*"

    @property
    def progress(self) -> str:
        return PROGRESS_STREAM if self.prefix == "wan22" else f"{self.prefix}-progress-stream"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}:dlq"

    def task(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    def cancel(self, task_id: str) -> str:
        return f"{self.prefix}:cancel:{task_id}"

    def preview(self, task_id: str) -> str:
        """The latest preview of a running task (a base64 JPEG), with a TTL."""
        return f"{self.prefix}:preview:{task_id}"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    def answered(self, request_id: str) -> str:
        """Set when a request entry got its answer, so a redelivery does not answer it again."""
        return f"{self.prefix}:answered:{request_id}"

    def attempts(self, stream: str, entry_id: str) -> str:
        """Error history of one entry across deliveries (survives a consumer crash)."""
        return f"{self.prefix}:attempts:{stream}:{entry_id}"

    def dead_lettered(self, stream: str, entry_id: str) -> str:
        """Set when an entry is dead-lettered, so a second delivery of it (its lease ran out while
        the first was still failing) does not write a second dead letter."""
        return f"{self.prefix}:dead:{stream}:{entry_id}"

    def gang(self, consumer: str) -> str:
        """A generator's gang as operators see it: state, members (rank → node:pid); services.gangs."""
        return f"{self.prefix}:gang:{consumer}"

    @property
    def gangs_pattern(self) -> str:
        return f"{self.prefix}:gang:*"

    def placement_group(self, task: str, generator: str) -> str:
        """Not a Redis key: the name of a generator's Ray placement group (in Ray namespace `wan22`)."""
        return f"{self.prefix}:placement:{task}:{generator}"

    @property
    def webhooks(self) -> str:
        return f"{self.prefix}:webhooks"

    @property
    def webhook_schedule(self) -> str:
        return f"{self.prefix}:webhooks:schedule"

    def webhook_delivery(self, delivery_id: str) -> str:
        return f"{self.prefix}:webhooks:delivery:{delivery_id}"

    @property
    def webhook_dlq(self) -> str:
        return f"{self.prefix}:webhooks:dlq"

    @property
    def webhook_secret(self) -> str:
        """The generated signing secret for tasks' own webhook_url (when none is configured)."""
        return f"{self.prefix}:webhooks:secret"

    def all_streams(self, tasks: list[str]) -> list[str]:
        jobs = [stream for task in tasks for stream in self.job_streams(task)]
        return [self.requests, *jobs, self.events, self.progress, self.dlq, self.webhook_dlq]
