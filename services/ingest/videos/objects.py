"""A task as OpenAI's `video` object: the same task underneath, read through this API's names."""

from __future__ import annotations

from typing import Any

from services.contracts import TaskState
from services.ingest.videos.create import seconds_of
from services.models_config import ModelsConfig

# Task status → video status. A task between attempts has started, so it reads in progress.
VIDEO_STATUS = {
    "queued": "queued",
    "running": "in_progress",
    "retrying": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "failed",
    "rejected": "failed",
}


def video_object(state: TaskState, models: ModelsConfig, retention_s: int) -> dict[str, Any]:
    status = VIDEO_STATUS[state.status]
    created = int(state.created_at)
    return {
        "id": state.task_id,
        "object": "video",
        "status": status,
        "progress": 100 if status == "completed" else min(99, int(state.progress)),
        "created_at": created,
        "completed_at": int(state.updated_at) if status == "completed" else None,
        "expires_at": created + retention_s if created else None,
        "model": state.task,
        "prompt": state.prompt,
        "seconds": _seconds(state, models),
        "size": _size(state),
        "error": _error(state),
        "remixed_from_video_id": None,
    }


def _size(state: TaskState) -> str:
    if state.width and state.height:  # the video as made: an image job's follows its image
        return f"{state.width}x{state.height}"
    return state.requested_size.replace("*", "x")


def _seconds(state: TaskState, models: ModelsConfig) -> str:
    if state.frame_num and state.fps:
        return seconds_of(state.frame_num, state.fps)
    served = models.get(state.task)
    return seconds_of(state.requested_frames, served.preset.fps) if served and state.requested_frames else "0"


def _error(state: TaskState) -> dict[str, str] | None:
    if state.status == "cancelled":
        return {"code": "cancelled", "message": state.error or "cancelled on request"}
    if state.status == "rejected":
        return {"code": "invalid_request", "message": state.error}
    if state.status == "failed":
        code = "expired" if state.error.startswith("expired") else "generation_failed"
        return {"code": code, "message": state.error}
    return None


def poll_after_ms(state: TaskState) -> int:
    """How soon a poller should look again: sooner near the start, less often deep in a queue."""
    if state.status == "queued" and state.queue and state.queue.start_in_s:
        return int(min(10_000, max(500, state.queue.start_in_s * 500)))
    return 1_000 if state.status == "queued" else 500
