"""The lab's server extension errors: the API service's one hierarchy
(:class:`~sciplat.services.common.errors.ServiceError`) with the lab's REST contract codes.

Every error a user can cause (or meet when a service is down) is a :class:`LabError` with an
HTTP status and a short machine code; the handlers render it as the REST contract's JSON
``{"error": code, "message": text}``. Messages say what to do.
"""

from __future__ import annotations

from typing import Any

from sciplat.services.common.errors import ServiceError

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


class LabError(ServiceError, status=400, code="bad-request"):
    """Base class: ``status`` (HTTP), ``code`` (contract error code), ``message``, extras."""

    def __init__(
        self, message: str, *, code: str | None = None, status: int | None = None, **extra: Any
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.extra = extra

    @property
    def status(self) -> int:
        return self.status_code

    @property
    def code(self) -> str:
        return self.error_code

    def renamed(self, code: str, *, status: int | None = None) -> LabError:
        """This error under another contract code (and status); returns itself."""
        self.error_code = code
        if status is not None:
            self.status_code = status
        return self

    def as_json(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class BadRequest(LabError):
    """Malformed input, or a path outside the lab's root (400)."""


class Forbidden(LabError, status=403, code="forbidden"):
    """A platform service refused the lab's token (403)."""


class NotFound(LabError, status=404, code="not-found"):
    """The file, tutorial or job does not exist (404)."""


class Conflict(LabError, status=409, code="exists"):
    """The target exists and the caller did not ask to replace it (409)."""


class UnsupportedType(LabError, status=415, code="unsupported-type"):
    """A file of a type the action cannot take (415)."""


class Unprocessable(LabError, status=422, code="invalid"):
    """Well-formed input that fails validation (a bad sidecar, bad parameters) (422)."""


class ServiceUnreachable(LabError, status=503, code="service-unreachable"):
    """A platform service (TAP, notebooks, portal, hub) cannot be reached or failed (503/502);
    *code* names it (``tap-unreachable``, ...)."""

    def __init__(self, message: str, *, code: str, status: int = 503, **extra: Any) -> None:
        super().__init__(message, code=code, status=status, **extra)
