"""A JSON schema of Slack's incoming-webhook payload (text + Block Kit blocks), from Slack's
published reference: the block types an incoming webhook takes and their documented limits."""

from __future__ import annotations

from typing import Any


def _text(kinds: list[str], max_length: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "text"],
        "properties": {
            "type": {"enum": kinds},
            "text": {"type": "string", "minLength": 1, "maxLength": max_length},
            "emoji": {"type": "boolean"},
            "verbatim": {"type": "boolean"},
        },
        "additionalProperties": False,
    }


TEXT = _text(["plain_text", "mrkdwn"], 3000)
BLOCK_ID = {"type": "string", "maxLength": 255}
BUTTON = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {
        "type": {"const": "button"},
        "text": _text(["plain_text"], 75),
        "url": {"type": "string", "maxLength": 3000, "pattern": "^https?://"},
        "action_id": {"type": "string", "maxLength": 255},
        "value": {"type": "string", "maxLength": 2000},
        "style": {"enum": ["primary", "danger"]},
    },
    "additionalProperties": False,
}
IMAGE_ELEMENT = {
    "type": "object",
    "required": ["type", "image_url", "alt_text"],
    "properties": {
        "type": {"const": "image"},
        "image_url": {"type": "string", "maxLength": 3000},
        "alt_text": {"type": "string", "maxLength": 2000},
    },
    "additionalProperties": False,
}
SECTION = {
    "type": "object",
    "required": ["type"],
    "anyOf": [{"required": ["text"]}, {"required": ["fields"]}],
    "properties": {
        "type": {"const": "section"},
        "text": TEXT,
        "fields": {"type": "array", "minItems": 1, "maxItems": 10,
                   "items": _text(["plain_text", "mrkdwn"], 2000)},
        "block_id": BLOCK_ID,
        "accessory": {"anyOf": [BUTTON, IMAGE_ELEMENT]},
    },
    "additionalProperties": False,
}  # fmt: skip
HEADER = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "header"}, "text": _text(["plain_text"], 150),
                   "block_id": BLOCK_ID},
    "additionalProperties": False,
}  # fmt: skip
CONTEXT = {
    "type": "object",
    "required": ["type", "elements"],
    "properties": {
        "type": {"const": "context"},
        "elements": {"type": "array", "minItems": 1, "maxItems": 10,
                     "items": {"anyOf": [TEXT, IMAGE_ELEMENT]}},
        "block_id": BLOCK_ID,
    },
    "additionalProperties": False,
}  # fmt: skip
ACTIONS = {
    "type": "object",
    "required": ["type", "elements"],
    "properties": {
        "type": {"const": "actions"},
        "elements": {"type": "array", "minItems": 1, "maxItems": 25, "items": BUTTON},
        "block_id": BLOCK_ID,
    },
    "additionalProperties": False,
}  # fmt: skip
DIVIDER = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"const": "divider"}, "block_id": BLOCK_ID},
    "additionalProperties": False,
}
INCOMING_WEBHOOK = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "anyOf": [{"required": ["text"]}, {"required": ["blocks"]}],
    "properties": {
        # The notification and fallback text; Slack truncates past 40,000 characters.
        "text": {"type": "string", "minLength": 1, "maxLength": 40000},
        "blocks": {"type": "array", "minItems": 1, "maxItems": 50,
                   "items": {"oneOf": [SECTION, HEADER, CONTEXT, ACTIONS, DIVIDER]}},
        "mrkdwn": {"type": "boolean"},
        "unfurl_links": {"type": "boolean"},
        "unfurl_media": {"type": "boolean"},
        "thread_ts": {"type": "string"},
    },
    "additionalProperties": False,
}  # fmt: skip


def validate(payload: Any) -> None:
    """Raise jsonschema.ValidationError unless payload is a valid incoming-webhook body."""
    import jsonschema

    jsonschema.validate(payload, INCOMING_WEBHOOK)
