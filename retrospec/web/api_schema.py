"""The OpenAPI 3.1 document of /api/v1, written out by hand to say exactly what the routes do.

Objects are closed (additionalProperties: false) so a key added to a document without adding it
here fails the API fuzz test (tests/test_api.py runs schemathesis against this document).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from retrospec import __version__

MAX_ID = 2**63 - 1


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema["type"]
    return {**schema, "type": [kind, "null"] if isinstance(kind, str) else [*kind, "null"]}


STR = {"type": "string"}
INT = {"type": "integer"}
COUNT = {"type": "integer", "minimum": 0}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
ISSUE_STATUS = {
    "type": "string",
    "enum": ["candidate", "open", "resolved", "ignored", "merged"],
}
KIND = {"type": "string", "enum": ["error", "network", "console"]}
LIST_STATUS = {"type": "string", "enum": ["open", "resolved", "ignored", "candidate", "all"]}
STEP_KIND = {"type": "string", "enum": ["click", "rage_click", "navigation", "input"]}
HISTORY_ACTION = {
    "type": "string",
    "enum": ["promoted", "resolved", "ignored", "reopened", "regressed"],
}
REPLAY_STATUS = {
    "type": "string",
    "enum": ["none", "pending", "ready", "no_snapshot", "error", "expired"],
}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": STR}),
    "Site": _obj({"id": STR, "name": STR}),
    "Counts": _obj({"failures": COUNT, "sessions": COUNT, "users": COUNT}),
    "IssueRow": _obj(
        {
            "id": INT,
            "site": _ref("Site"),
            "kind": KIND,
            "status": ISSUE_STATUS,
            "regression": BOOL,
            "title": STR,
            "culprit": _nullable(STR),
            "counts": _ref("Counts"),
            "first_seen": TIME,
            "last_seen": TIME,
            "url": {"type": "string", "format": "uri"},
        }
    ),
    "IssueList": _obj(
        {
            "schema_version": {"const": 1},
            "status": {
                "type": "string",
                "enum": ["open", "resolved", "ignored", "candidate", "all"],
            },
            "site": _nullable(STR),
            "total": COUNT,
            "issues": {"type": "array", "items": _ref("IssueRow")},
            "next_cursor": _nullable(STR),
        }
    ),
    "Frame": _obj(
        {
            "function": _nullable(STR),
            "path": _nullable(STR),
            "raw_file": _nullable(STR),
            "line": _nullable(INT),
            "column": _nullable(INT),
            "in_app": _nullable(BOOL),
            "mapped": BOOL,
            "context_line": _nullable(STR),
            "pre_context": {"type": "array", "items": STR},
            "post_context": {"type": "array", "items": STR},
        }
    ),
    "TopValue": _obj({"value": STR, "count": COUNT}),
    "Issue": _obj(
        {
            "schema_version": {"const": 1},
            "id": INT,
            "site": _ref("Site"),
            "kind": KIND,
            "status": ISSUE_STATUS,
            "regression": BOOL,
            "title": STR,
            "message": _nullable(STR),
            "culprit": _nullable(STR),
            "counts": _ref("Counts"),
            "first_seen": TIME,
            "last_seen": TIME,
            "stack": _nullable(STR),
            "frames": {"type": "array", "items": _ref("Frame")},
            "releases": _nullable(
                _obj(
                    {
                        "first": _nullable(STR),
                        "last": _nullable(STR),
                        "resolved_in": _nullable(STR),
                        "sample": _nullable(STR),
                        "sample_has_source_maps": _nullable(BOOL),
                    }
                )
            ),
            "top": _obj(
                {
                    facet: {"type": "array", "items": _ref("TopValue")}
                    for facet in ("browser", "os", "url", "release")
                }
            ),
            "representative": _nullable(
                _obj(
                    {
                        "session_id": STR,
                        "failure_id": INT,
                        "offset_ms": _nullable(INT),
                        "ts": TIME,
                        "replay_status": REPLAY_STATUS,
                        "expired": BOOL,
                        "context_ms": INT,
                        "replay_url": _nullable(STR),
                    }
                )
            ),
            "steps": {
                "type": "array",
                "items": _obj(
                    {
                        "kind": {
                            "type": "string",
                            "enum": ["click", "rage_click", "navigation", "input"],
                        },
                        "label": STR,
                        "offset_ms": INT,
                        "seconds_before": {"type": "number"},
                    }
                ),
            },
            "last_step_agreement": _nullable(
                _obj({"label": STR, "matching_sessions": COUNT, "sessions_considered": COUNT})
            ),
            "confidence": _obj(
                {
                    "label": {"type": "string", "enum": ["high", "medium", "low"]},
                    "reasons": {"type": "array", "items": STR},
                }
            ),
            "sessions": {
                "type": "array",
                "items": _obj(
                    {
                        "session_id": STR,
                        "user": _nullable(STR),
                        "browser": _nullable(STR),
                        "os": _nullable(STR),
                        "failures": COUNT,
                        "offset_ms": _nullable(INT),
                        "last_seen": TIME,
                        "replay_status": REPLAY_STATUS,
                        "expired": BOOL,
                        "replay_url": _nullable(STR),
                    }
                ),
            },
            "history": {
                "type": "array",
                "items": _obj(
                    {
                        "at": TIME,
                        "action": {
                            "type": "string",
                            "enum": [
                                "promoted",
                                "resolved",
                                "ignored",
                                "reopened",
                                "regressed",
                                "merged",
                                "merged_into",
                                "unmerged",
                                "unmerged_from",
                            ],
                        },
                        "actor": _nullable(STR),
                        "release": _nullable(STR),
                        "detail": _nullable(STR),
                    }
                ),
            },
            "merged_into": _nullable(INT),
            "merged": {"type": "array", "items": _obj({"id": INT, "title": STR})},
            "grouping_version": INT,
            "daily": _obj(
                {
                    "start": {"type": "string", "format": "date"},
                    "counts": {"type": "array", "items": COUNT, "minItems": 14, "maxItems": 14},
                }
            ),
        }
    ),
    "Session": _obj(
        {
            "id": STR,
            "site": _ref("Site"),
            "started_at": TIME,
            "last_seen": TIME,
            "user": _obj({"id": _nullable(STR), "email": _nullable(STR), "name": _nullable(STR)}),
            "user_key": _nullable(STR),
            "browser": _nullable(STR),
            "os": _nullable(STR),
            "entry_url": _nullable(STR),
            "last_url": _nullable(STR),
            "release": _nullable(STR),
            "environment": _nullable(STR),
            "failures": COUNT,
            "replay": _obj(
                {
                    "status": REPLAY_STATUS,
                    "reason": _nullable(STR),
                    "expired": BOOL,
                    "duration_ms": _nullable(INT),
                    "active_ms": _nullable(INT),
                    "pages": {"type": "array", "items": STR},
                    "clicks": _nullable(INT),
                    "rage_clicks": _nullable(INT),
                    "url": _nullable(STR),
                }
            ),
        }
    ),
    "SessionList": _obj(
        {
            "schema_version": {"const": 1},
            "site": _nullable(STR),
            "with_failures": BOOL,
            "total": COUNT,
            "sessions": {"type": "array", "items": _ref("Session")},
            "next_cursor": _nullable(STR),
        }
    ),
    "Release": _obj(
        {
            "release": STR,
            "site": _ref("Site"),
            "first_seen": TIME,
            "last_seen": TIME,
            "sessions": COUNT,
            "failures": COUNT,
            "new_issues": COUNT,
            "regressions": COUNT,
            "has_maps": BOOL,
        }
    ),
    "ReleaseList": _obj(
        {
            "schema_version": {"const": 1},
            "site": _nullable(STR),
            "total": COUNT,
            "releases": {"type": "array", "items": _ref("Release")},
            "next_cursor": _nullable(STR),
        }
    ),
}


def _response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


ERRORS = {
    "400": _response("A parameter is malformed (the error says which).", "Error"),
    "401": _response("No token, or an unknown or revoked one.", "Error"),
}
NOT_FOUND = {"404": _response("No such site or issue.", "Error")}
SITE = {
    "name": "site",
    "in": "query",
    "required": False,
    "description": "Only this site (name or id).",
    "schema": {"type": "string"},
}
LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "Page size.",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
}
CURSOR = {
    "name": "cursor",
    "in": "query",
    "required": False,
    "description": "The previous page's next_cursor (opaque).",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$", "maxLength": 400},
}
ISSUE_ID = {
    "name": "issue_id",
    "in": "path",
    "required": True,
    "description": "Issue id.",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}


def _action(verb: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{verb}Issue",
            "summary": summary,
            "description": "Needs a write token. Answers the issue's list row.",
            "parameters": [ISSUE_ID],
            "responses": {
                "200": _response("The issue after the change.", "IssueRow"),
                **ERRORS,
                "403": _response("The token is read-only.", "Error"),
                **NOT_FOUND,
                "409": _response("The issue's status does not allow this.", "Error"),
            },
        }
    }


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document (server URL relative, so it holds behind any proxy)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "RetroSpec API",
            "version": __version__,
            "description": "Issues, sessions and releases of a RetroSpec server. Send a token "
            "from `retrospec tokens create NAME [--scope read|write]` as "
            "`Authorization: Bearer <token>`. Lists page with `next_cursor`.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": {
            "/issues": {
                "get": {
                    "operationId": "listIssues",
                    "summary": "Issues, most recently seen first (`issues list --json`).",
                    "parameters": [
                        SITE,
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "description": "all = every issue except candidates.",
                            "schema": {**LIST_STATUS, "default": "open"},
                        },
                        LIMIT,
                        CURSOR,
                    ],
                    "responses": {
                        "200": _response("One page of issues.", "IssueList"),
                        **ERRORS,
                        **NOT_FOUND,
                    },
                }
            },
            "/issues/{issue_id}": {
                "get": {
                    "operationId": "getIssue",
                    "summary": "One issue with its evidence (`issues show --json`).",
                    "parameters": [ISSUE_ID],
                    "responses": {
                        "200": _response("The issue.", "Issue"),
                        **ERRORS,
                        **NOT_FOUND,
                    },
                }
            },
            "/issues/{issue_id}/resolve": _action("resolve", "Resolve an issue."),
            "/issues/{issue_id}/ignore": _action("ignore", "Ignore an issue."),
            "/issues/{issue_id}/reopen": _action("reopen", "Reopen an issue."),
            "/sessions": {
                "get": {
                    "operationId": "listSessions",
                    "summary": "Sessions, most recently active first (`sessions list --json`).",
                    "parameters": [
                        SITE,
                        {
                            "name": "with_failures",
                            "in": "query",
                            "required": False,
                            "description": "Only sessions that hit a failure.",
                            "schema": {"type": "boolean", "default": False},
                        },
                        LIMIT,
                        CURSOR,
                    ],
                    "responses": {
                        "200": _response("One page of sessions.", "SessionList"),
                        **ERRORS,
                        **NOT_FOUND,
                    },
                }
            },
            "/releases": {
                "get": {
                    "operationId": "listReleases",
                    "summary": "Releases per site, most recently seen first.",
                    "parameters": [SITE, LIMIT, CURSOR],
                    "responses": {
                        "200": _response("One page of releases.", "ReleaseList"),
                        **ERRORS,
                        **NOT_FOUND,
                    },
                }
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
