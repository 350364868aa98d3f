"""The one exception hierarchy of the lab's server extension.

Every error a user can cause (or meet when a service is down) is a :class:`LabError` with an
HTTP status and a short machine code; the handlers render it as the REST contract's JSON
``{"error": code, "message": text}``. Messages say what to do.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "LabError",
    "NotFound",
    "ServiceUnreachable",
    "Unprocessable",
    "UnsupportedType",
]


class LabError(Exception):
    """Base class: ``status`` (HTTP), ``code`` (contract error code), ``message``, extras."""

    status: int = 400
    code: str = "bad-request"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra

    def renamed(self, code: str, *, status: int | None = None) -> LabError:
        """This error under another contract code (and status); returns itself."""
        self.code = code
        if status is not None:
            self.status = status
        return self

    def as_json(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class BadRequest(LabError):
    """Malformed input, or a path outside the lab's root (400)."""


class Forbidden(LabError):
    """A platform service refused the lab's token (403)."""

    status = 403
    code = "forbidden"


class NotFound(LabError):
    status = 404
    code = "not-found"


class Conflict(LabError):
    status = 409
    code = "exists"


class UnsupportedType(LabError):
    status = 415
    code = "unsupported-type"


class Unprocessable(LabError):
    """Well-formed input that fails validation (a bad sidecar, bad parameters) (422)."""

    status = 422
    code = "invalid"


class ServiceUnreachable(LabError):
    """A platform service (TAP, notebooks, portal, hub) cannot be reached or failed (503/502)."""

    status = 503
    code = "service-unreachable"

    def __init__(self, message: str, *, code: str, status: int = 503, **extra: Any) -> None:
        super().__init__(message, code=code, **extra)
        self.status = status
