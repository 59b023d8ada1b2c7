"""The reliable Redis Streams consumer shared by every service."""

from services.consumer.consumer import BatchHandler, Handler, Hooks, StreamConsumer, ensure_group
from services.consumer.deadletter import dead_letter, get_dead, list_dead, purge, replay
from services.consumer.entry import Entry
from services.consumer.errors import LeavePending, Permanent, Undecodable
from services.consumer.policy import ConsumerSettings, backoff_delay
from services.consumer.trim import safe_trim_point, trim_stream

__all__ = [
    "BatchHandler",
    "ConsumerSettings",
    "Entry",
    "Handler",
    "Hooks",
    "LeavePending",
    "Permanent",
    "StreamConsumer",
    "Undecodable",
    "backoff_delay",
    "dead_letter",
    "ensure_group",
    "get_dead",
    "list_dead",
    "purge",
    "replay",
    "safe_trim_point",
    "trim_stream",
]
