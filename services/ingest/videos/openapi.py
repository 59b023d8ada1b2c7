"""The `/v1/videos` part of the OpenAPI document."""

from __future__ import annotations

from typing import Any

import msgspec

from services.ingest.videos.create import VideoCreate

_REF = "#/components/schemas/{name}"
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "description": "invalid_request_error, authentication_error, ..."},
                "param": {"type": ["string", "null"], "description": "the request field at fault"},
                "code": {"type": ["string", "null"], "description": "machine-readable reason"},
            },
        }
    },
}
_VIDEO = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "video"},
        "status": {"enum": ["queued", "in_progress", "completed", "failed"]},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100, "description": "from per-step progress"},
        "created_at": {"type": "integer"},
        "completed_at": {"type": ["integer", "null"]},
        "expires_at": {"type": ["integer", "null"], "description": "when the task's record is dropped"},
        "model": {"type": "string"},
        "prompt": {"type": "string"},
        "seconds": {"type": "string"},
        "size": {"type": "string", "description": "WIDTHxHEIGHT (of the video as made, once completed)"},
        "error": {
            "type": ["object", "null"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "description": "code `cancelled` for a cancelled or deleted task",
        },
    },
}
_LIST = {
    "type": "object",
    "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": {"$ref": _REF.format(name="Video")}},
        "first_id": {"type": ["string", "null"]},
        "last_id": {"type": ["string", "null"]},
        "has_more": {"type": "boolean"},
    },
}
_DELETED = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "object": {"const": "video.deleted"}, "deleted": {"const": True}},
}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF.format(name=name)}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json("OpenAIError", "error") for code in codes}


def videos_components() -> dict[str, Any]:
    _, components = msgspec.json.schema_components([VideoCreate], ref_template=_REF)
    return components | {"Video": _VIDEO, "VideoList": _LIST, "VideoDeleted": _DELETED, "OpenAIError": _ERROR}


def videos_paths(auth: list[dict[str, list[str]]]) -> dict[str, Any]:
    video_id = [{"name": "video_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    create_body = {"$ref": _REF.format(name="VideoCreate")}
    return {
        "/v1/videos": {
            "post": {
                "summary": "Queue a video (OpenAI Videos API); multipart as the openai SDK sends it, or JSON",
                "security": auth,
                "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {"schema": create_body},
                        "application/json": {"schema": create_body},
                    },
                },
                "responses": {"200": _json("Video", "queued"), **_errors(400, 401, 403, 413, 415, 429, 503)},
            },
            "get": {
                "summary": "Videos, newest first (order=asc for oldest), paged with after and limit (<= 100)",
                "security": auth,
                "parameters": [
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                    {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
                ],
                "responses": {"200": _json("VideoList", "a page"), **_errors(400, 401, 403, 503)},
            },
        },
        "/v1/videos/{video_id}": {
            "get": {
                "summary": "The video; `openai-poll-after-ms` says when to look again",
                "security": auth,
                "parameters": video_id,
                "responses": {"200": _json("Video", "the video"), **_errors(401, 403, 404, 503)},
            },
            "delete": {
                "summary": "Cancel it if queued or running (at the next step), remove its files, unlist it",
                "security": auth,
                "parameters": video_id,
                "responses": {"200": _json("VideoDeleted", "deleted"), **_errors(401, 403, 404, 503)},
            },
        },
        "/v1/videos/{video_id}/content": {
            "get": {
                "summary": "The mp4 (variant=video), its poster (thumbnail) or a grid of frames (spritesheet)",
                "security": auth,
                "parameters": [
                    *video_id,
                    {"name": "variant", "in": "query", "schema": {"enum": ["video", "thumbnail", "spritesheet"]}},
                    {"name": "Range", "in": "header", "schema": {"type": "string"}, "description": "bytes=a-b"},
                ],
                "responses": {
                    "200": {"description": "the file", "content": {"video/mp4": {}, "image/jpeg": {}}},
                    "206": {"description": "the range asked for"},
                    **_errors(400, 401, 403, 404, 409, 416, 503),
                },
            }
        },
    }
