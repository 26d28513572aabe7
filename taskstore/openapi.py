"""The REST API's OpenAPI 3 description, served at ``openapi.json`` beside the API.

Built per request: the server URL is wherever the project mounted ``taskstore.urls``, and the
submit body names the tasks this project lets clients submit (``TASKSTORE_SUBMITTABLE_TASKS``).
docs/protocol.md, "REST", says the same in prose; tests/test_openapi.py runs schemathesis
against a real server with it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from taskstore import api, conf, states
from taskstore.operations import actions, statistics, views
from taskstore.rest import methods

OPENAPI_VERSION = "3.0.3"

Schema = dict[str, Any]


def ref(kind: str, name: str) -> Schema:
    """A reference to ``components/<kind>/<name>``."""
    return {"$ref": f"#/components/{kind}/{name}"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (OpenAPI 3.0 spells it ``nullable``)."""
    return {**schema, "nullable": True}


def json_body(schema: Schema, description: str) -> Schema:
    """A response whose body is JSON of ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_answer(description: str) -> Schema:
    """A response whose body is ``{"error": "…"}``."""
    return json_body(ref("schemas", "Error"), description)


TIMESTAMP = nullable({"type": "string", "format": "date-time"})
# Task, group and queue ids: Celery's are UUIDs. The server takes any printable text without
# whitespace; clients keep to printable ASCII.
ID: Schema = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"}
EMPTY: Schema = {"type": "string", "maxLength": 0, "description": "Empty: the default."}
ANY_JSON: Schema = {"description": "Any JSON value.", "nullable": True}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What went wrong, for people."}},
        "additionalProperties": False,
    },
    "Task": {
        "type": "object",
        "description": (
            "The task document (docs/protocol.md). traceback, args and kwargs are shown to "
            "staff only. An id nothing has recorded yet shows as PENDING, version 0."
        ),
        "required": [
            "task_id",
            "task_name",
            "state",
            "version",
            "retries",
            "result",
            "result_truncated",
            "progress",
            "error",
            "group_id",
            "parent_id",
            "worker",
            "date_created",
            "date_started",
            "date_done",
        ],
        "properties": {
            "task_id": {"type": "string"},
            "task_name": {"type": "string"},
            "state": {"type": "string", "description": "A Celery state, or a custom one."},
            "version": {"type": "integer", "minimum": 0},
            "retries": {"type": "integer", "minimum": 0},
            "result": ANY_JSON,
            "result_truncated": {"type": "boolean"},
            "progress": ANY_JSON,
            "error": nullable(
                {
                    "type": "object",
                    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                }
            ),
            "group_id": nullable({"type": "string"}),
            "parent_id": nullable({"type": "string"}),
            "worker": nullable({"type": "string"}),
            "date_created": TIMESTAMP,
            "date_started": TIMESTAMP,
            "date_done": TIMESTAMP,
            "traceback": nullable({"type": "string", "description": "Staff only."}),
            "args": nullable({"type": "array", "items": {}, "description": "Staff only."}),
            "kwargs": nullable({"type": "object", "description": "Staff only."}),
        },
        "additionalProperties": False,
    },
    "Group": {
        "type": "object",
        "description": "The group document (docs/protocol.md).",
        "required": ["group_id", "version", "total", "counts", "completed", "state", "results"],
        "properties": {
            "group_id": {"type": "string"},
            "version": {"type": "integer", "minimum": 0},
            "total": {"type": "integer", "minimum": 0},
            "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            "completed": {"type": "integer", "minimum": 0},
            "state": {
                "type": "string",
                "enum": [states.PENDING, states.STARTED, states.SUCCESS, states.FAILURE],
            },
            "results": nullable({"type": "array", "items": {}}),
        },
        "additionalProperties": False,
    },
    "Submission": {
        "type": "object",
        "required": ["task"],
        "properties": {
            "task": {"type": "string", "description": "One of TASKSTORE_SUBMITTABLE_TASKS."},
            "args": nullable({"type": "array", "items": {}, "description": "Absent or null: none."}),
            "kwargs": nullable({"type": "object", "description": "Absent or null: none."}),
        },
        "additionalProperties": False,
    },
    "Submitted": {
        "type": "object",
        "required": ["task_id", "token"],
        "properties": {
            "task_id": {"type": "string"},
            "token": {"type": "string", "description": "Opens this task to whoever holds it."},
        },
        "additionalProperties": False,
    },
    "Worker": {
        "type": "object",
        "required": ["hostname", "status", "version"],
        "properties": {
            "hostname": {"type": "string"},
            "status": {"type": "string", "enum": ["online", "lost", "offline"]},
            "version": {"type": "integer", "minimum": 0},
            "pid": nullable({"type": "integer"}),
            "pool": {"type": "string"},
            "concurrency": nullable({"type": "integer"}),
            "queues": {"type": "array", "items": {"type": "string"}},
            "software": {"type": "object"},
            "running": {"type": "integer", "minimum": 0},
            "processed": {"type": "integer", "minimum": 0},
            "succeeded": {"type": "integer", "minimum": 0},
            "failed": {"type": "integer", "minimum": 0},
            "started": TIMESTAMP,
            "last_heartbeat": TIMESTAMP,
            "stopped": TIMESTAMP,
        },
    },
    "Queue": {
        "type": "object",
        "required": ["queue", "depth", "broker", "version", "date_updated"],
        "properties": {
            "queue": {"type": "string"},
            "depth": nullable(
                {"type": "integer", "minimum": 0, "description": "null: the broker cannot tell."}
            ),
            "broker": {"type": "string"},
            "version": {"type": "integer", "minimum": 0},
            "date_updated": TIMESTAMP,
        },
    },
    "TaskStatistics": {
        "type": "object",
        "required": ["task_name", "count", "failed", "failure_rate", "retries"],
        "properties": {
            "task_name": {"type": "string"},
            "count": {"type": "integer", "minimum": 0},
            "failed": {"type": "integer", "minimum": 0},
            "failure_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "retries": {"type": "integer", "minimum": 0},
            **{
                name: nullable({"type": "number", "description": "Seconds."})
                for name in ("runtime_p50", "runtime_p95", "wait_p50", "wait_p95")
            },
        },
    },
    "Action": {
        "type": "object",
        "required": ["id", "action", "target", "user", "ok", "detail", "created"],
        "properties": {
            "id": {"type": "integer"},
            "action": {"type": "string"},
            "target": {"type": "string"},
            "user": {"type": "string"},
            "ok": {"type": "boolean"},
            "detail": {"type": "object"},
            "created": TIMESTAMP,
        },
    },
    "ActionRequest": {
        "description": "A task action names the task; purge names the queue.",
        "oneOf": [
            {
                "type": "object",
                "required": ["action", "task_id"],
                "properties": {
                    "action": {"type": "string", "enum": list(actions.TASK_ACTIONS)},
                    "task_id": ID,
                    "queue": {"description": "Not read for a task action."},
                    "type": {"description": "Not read."},
                },
                "additionalProperties": False,
            },
            {
                "type": "object",
                "required": ["action", "queue"],
                "properties": {
                    "action": {"type": "string", "enum": list(actions.QUEUE_ACTIONS)},
                    "queue": ID,
                    "task_id": {"description": "Not read for purge."},
                    "type": {"description": "Not read."},
                },
                "additionalProperties": False,
            },
        ],
    },
}

RESPONSES: dict[str, Schema] = {
    "BadRequest": error_answer("A query parameter or the body is not what the API reads."),
    "Forbidden": error_answer(
        "Not allowed: staff only, or log in first, or the CSRF check failed: a session "
        "(logged-in) caller's POST sends the csrftoken cookie's value in an X-CSRFToken header."
    ),
    "NotFound": error_answer("No such id, or you may not see it: the two answers are the same."),
    "MethodNotAllowed": {
        **error_answer("Another method than the ones this path answers."),
        "headers": {"Allow": {"description": "The methods it answers.", "schema": {"type": "string"}}},
    },
    "Unavailable": error_answer("The broker could not be reached; try again shortly."),
}

PARAMETERS: dict[str, Schema] = {
    "token": {
        "name": "token",
        "in": "query",
        "required": False,
        "description": "A token for this id: it opens the id to whoever holds it.",
        "schema": {"type": "string"},
    },
    "task_id": {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}},
    "group_id": {"name": "group_id", "in": "path", "required": True, "schema": {"type": "string"}},
}


def operation(summary: str, answers: dict[str, Schema], **more: Any) -> Schema:
    """An operation answering ``answers`` (status: response) plus the 405 of every path."""
    responses = {**answers, "405": ref("responses", "MethodNotAllowed")}
    return {"summary": summary, "responses": responses, **more}


def list_of(key: str, schema: str) -> Schema:
    """``{key: [schema, ...]}``."""
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": ref("schemas", schema)}},
        "additionalProperties": False,
    }


def limit_parameter(most: int, default: int) -> Schema:
    """A list's ``limit``: how many to show, from the view's own bounds."""
    return whole_number_parameter(
        "limit", 1, f"How many, 1 or more (at most {most} are shown); default {default}."
    )


def whole_number_parameter(name: str, minimum: int, description: str) -> Schema:
    """An optional query parameter holding a whole number (empty: the default)."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"anyOf": [{"type": "integer", "minimum": minimum}, EMPTY]},
    }


STAFF_ONLY = {"403": ref("responses", "Forbidden")}


def paths() -> dict[str, Schema]:
    """Every path of taskstore.urls, relative to where it is mounted."""
    task_params = [ref("parameters", "task_id"), ref("parameters", "token")]
    return {
        "/tasks/": {
            "get": operation(
                "The tasks you may see, newest first (none for anonymous callers).",
                {
                    "200": json_body(list_of("tasks", "Task"), "The tasks."),
                    "400": ref("responses", "BadRequest"),
                },
                operationId="listTasks",
                parameters=[
                    limit_parameter(api.MAX_LIST_LIMIT, api.DEFAULT_LIST_LIMIT),
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "description": "Only tasks in this state.",
                        # A NUL cannot be stored, so it is refused (400), never looked up.
                        "schema": {"type": "string", "pattern": "^[^\\x00]*$"},
                    },
                ],
            ),
            "post": operation(
                "Submit a task; it belongs to the caller.",
                {
                    "202": json_body(ref("schemas", "Submitted"), "Sent to the broker."),
                    "400": ref("responses", "BadRequest"),
                    "403": ref("responses", "Forbidden"),
                    "503": ref("responses", "Unavailable"),
                },
                operationId="submitTask",
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": submission_schema()}},
                },
            ),
        },
        "/tasks/{task_id}/": {
            "get": operation(
                "The task document.",
                {"200": json_body(ref("schemas", "Task"), "The task."), "404": ref("responses", "NotFound")},
                operationId="getTask",
                parameters=task_params,
            )
        },
        "/tasks/{task_id}/events/": {
            "get": operation(
                "The task's recorded versions above since, ascending.",
                {
                    "200": json_body(list_of("events", "Task"), "The versions."),
                    "400": ref("responses", "BadRequest"),
                    "404": ref("responses", "NotFound"),
                },
                operationId="getTaskEvents",
                parameters=[*task_params, whole_number_parameter("since", 0, "A version; default 0.")],
            )
        },
        "/groups/{group_id}/": {
            "get": operation(
                "The group document.",
                {
                    "200": json_body(ref("schemas", "Group"), "The group."),
                    "404": ref("responses", "NotFound"),
                },
                operationId="getGroup",
                parameters=[ref("parameters", "group_id"), ref("parameters", "token")],
            )
        },
        "/ops/workers/": {
            "get": operation(
                "Every known worker (staff only).",
                {"200": json_body(list_of("workers", "Worker"), "The workers."), **STAFF_ONLY},
                operationId="listWorkers",
            )
        },
        "/ops/queues/": {
            "get": operation(
                "Every watched queue's depth (staff only).",
                {"200": json_body(list_of("queues", "Queue"), "The queues."), **STAFF_ONLY},
                operationId="listQueues",
            )
        },
        "/ops/stats/": {
            "get": operation(
                "Statistics per task name over a window (staff only).",
                {
                    "200": json_body(
                        {
                            "type": "object",
                            "required": ["window", "tasks"],
                            "properties": {
                                "window": {"type": "string", "enum": list(statistics.WINDOWS)},
                                "tasks": {"type": "array", "items": ref("schemas", "TaskStatistics")},
                            },
                            "additionalProperties": False,
                        },
                        "The statistics.",
                    ),
                    "400": ref("responses", "BadRequest"),
                    **STAFF_ONLY,
                },
                operationId="taskStatistics",
                parameters=[
                    {
                        "name": "window",
                        "in": "query",
                        "required": False,
                        "description": f"Default (or empty): {statistics.DEFAULT_WINDOW}.",
                        "schema": {"type": "string", "enum": [*statistics.WINDOWS, ""]},
                    }
                ],
            )
        },
        "/ops/actions/": {
            "get": operation(
                "The latest control actions, newest first (staff only).",
                {
                    "200": json_body(list_of("actions", "Action"), "The actions."),
                    "400": ref("responses", "BadRequest"),
                    **STAFF_ONLY,
                },
                operationId="listActions",
                parameters=[limit_parameter(views.MAX_ACTIONS, views.DEFAULT_ACTIONS)],
            ),
            "post": operation(
                "Revoke, terminate or re-run a task, or purge a queue (staff only).",
                {
                    "200": json_body(ref("schemas", "Action"), "Done: the recorded action."),
                    "400": ref("responses", "BadRequest"),
                    **STAFF_ONLY,
                    "409": error_answer("The action does not apply now."),
                    "503": ref("responses", "Unavailable"),
                },
                operationId="takeAction",
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": ref("schemas", "ActionRequest")}},
                },
            ),
        },
        "/openapi.json": {
            "get": operation(
                "This description.",
                {"200": json_body({"type": "object"}, "The OpenAPI document.")},
                operationId="openapi",
            )
        },
    }


def submission_schema() -> Schema:
    """The submit body, its ``task`` one of the tasks this project lets clients submit."""
    allowed = list(conf.submittable_tasks())
    schema = ref("schemas", "Submission")
    if not allowed:
        return schema
    return {"allOf": [schema, {"properties": {"task": {"enum": allowed}}}]}


def document(base_path: str) -> Schema:
    """The OpenAPI document of the API mounted at ``base_path`` (``/api`` in the example)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "taskstore",
            "version": "1",
            "description": (
                "Celery task states, as recorded by taskstore. Session cookies authenticate; a "
                'token opens one id to whoever holds it. Errors are {"error": "…"}; an id you may '
                "not see answers exactly as an id nobody recorded. See docs/protocol.md."
            ),
        },
        "servers": [{"url": base_path}],
        "paths": paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "parameters": PARAMETERS,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME},
            },
        },
        # Anonymous callers are welcome too: they see what their tokens open.
        "security": [{}, {"session": []}],
    }


@csrf_exempt  # read-only: every other method is a JSON 405
@methods("GET")
def openapi_view(request: HttpRequest) -> JsonResponse:
    """``GET <mount>/openapi.json``: the OpenAPI document of this API, as mounted here."""
    base_path = reverse("taskstore:openapi").removesuffix("/openapi.json")
    return JsonResponse(document(base_path))
