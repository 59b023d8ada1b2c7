"""The OpenAPI document of the HTTP API, with component schemas generated from the contracts."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from services.contracts import GenerateRequest, TaskState
from services.ingest.videos.openapi import videos_components, videos_paths

_REF = "#/components/schemas/{name}"
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong"},
        "field": {"type": ["string", "null"], "description": "the request field at fault"},
        "reason": {"type": "string", "description": "machine-readable code (invalid, too_large, queue_full, ...)"},
    },
}
_ACCEPTED = {
    "type": "object",
    "properties": {
        "status": {"const": "task_started"},
        "task_id": {"type": "string"},
        "request_id": {"type": "string"},
        "duplicate": {"type": "boolean"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "malformed JSON",
        401: "missing token",
        403: "token refused",
        404: "no such task",
        409: "already terminal",
        413: "body too large",
        422: "invalid field",
        429: "queue full",
        503: "Redis unavailable",
    }
    return {str(code): _json(_ref("Error"), text[code]) for code in codes}


@cache
def openapi_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components([GenerateRequest, TaskState], ref_template=_REF)
    components |= {"Error": _ERROR, "TaskStarted": _ACCEPTED} | videos_components()
    return {
        "openapi": "3.1.0",
        "info": {"title": "wan22-serve", "version": "1", "description": "Wan2.2 video generation as a service"},
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": _paths(),
    }


def _paths() -> dict[str, Any]:
    task_id = [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    auth: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "/generate": {
            "post": {
                "summary": "Queue a video generation task; answers at once with its id",
                "security": auth,
                "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("GenerateRequest")}},
                },
                "responses": {
                    "202": _json(_ref("TaskStarted"), "queued"),
                    "200": _json(_ref("TaskStarted"), "an idempotent repeat of an earlier request"),
                    **_errors(400, 401, 403, 413, 422, 429, 503),
                },
            }
        },
        "/tasks/{task_id}": {
            "get": {
                "summary": "The task's state, progress, result URLs and error",
                "security": auth,
                "parameters": task_id,
                "responses": {"200": _json(_ref("TaskState"), "the task"), **_errors(401, 403, 404, 503)},
            },
            "delete": {
                "summary": "Cancel: a queued task at once, a running one at its next step",
                "security": auth,
                "parameters": task_id,
                "responses": {
                    "200": {"description": "cancelled"},
                    "202": {"description": "cancelling"},
                    **_errors(401, 403, 404, 409, 503),
                },
            },
        },
        "/tasks/{task_id}/events": {
            "get": {
                "summary": "Server-Sent Events: `state`, then `progress` and lifecycle events until terminal",
                "security": auth,
                "parameters": task_id,
                "responses": {
                    "200": {"description": "event stream", "content": {"text/event-stream": {}}},
                    **_errors(401, 403, 404, 503),
                },
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness (Redis reachable)",
                "responses": {"200": {"description": "ready"}, **_errors(503)},
            }
        },
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "metrics"}}}},
        **videos_paths(auth),
    }
