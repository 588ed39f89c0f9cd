"""One exception hierarchy, mapped to HTTP statuses and CLI exit codes."""

from __future__ import annotations


class RetrospecError(Exception):
    """Base of every error RetroSpec raises on purpose; the message is shown to the user."""

    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class ConfigError(RetrospecError):
    """A setting or config file is wrong."""

    exit_code = 2


class UsageError(RetrospecError):
    """The command line asked for something impossible."""

    exit_code = 2


class NotFound(RetrospecError):
    """A site, issue, session or user does not exist."""

    http_status = 404


class Conflict(RetrospecError):
    """The thing already exists (a site name, a user, a config file)."""

    http_status = 409


class BadRequest(RetrospecError):
    """Malformed input: JSON, field types, ids."""

    http_status = 400


class InvalidKey(RetrospecError):
    """Missing or unknown ingest key."""

    http_status = 401


class Unauthorized(RetrospecError):
    """A JSON API request without a valid token (missing, unknown or revoked)."""

    http_status = 401


class Forbidden(RetrospecError):
    """The origin or user may not do this."""

    http_status = 403


class PayloadTooLarge(RetrospecError):
    """A body over the compressed or decompressed cap."""

    http_status = 413


class UnsupportedMediaType(RetrospecError):
    """A content type or encoding the ingest endpoint does not take."""

    http_status = 415


class RateLimited(RetrospecError):
    """A site sent more than its rate allows."""

    http_status = 429


class InsufficientStorage(RetrospecError):
    """Free disk is below the configured floor."""

    http_status = 507


class InvalidBlobKey(RetrospecError):
    """A blob key that is not derived from validated ids."""


class StorageFailed(RetrospecError):
    """The blob store refused a write (I/O error, permissions): nothing was stored."""


class VideoUnavailable(RetrospecError):
    """A clip cannot be rendered here: the video extra, ffmpeg or Chromium is missing or failed."""
