"""One exception hierarchy for the API service.

Handlers and services raise these; :func:`sciplat.services.app.create_app` installs one handler
that renders them in the protocol's own form (a DALI error VOTable under the IVOA services, JSON
elsewhere). Messages are for users: they name the bad value, never internal detail. The lab's
server extension builds its own errors on the same base (``sciplat.labextension.errors``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "ServiceError",
    "ServiceUnavailableError",
    "UsageError",
]


class ServiceError(Exception):
    """Base class: an error a user caused or may see, with its HTTP status and error code.

    A subclass sets both in its class line (``class UsageError(ServiceError, status=400,
    code="UsageError")``); one instance may override them with ``code=`` / ``status=``.
    """

    status_code: int = 500
    #: DALI/UWS-style error code prefix ("UsageError", "AuthorizationError", ...).
    error_code: str = "Error"

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None, **kw: Any):
        super().__init_subclass__(**kw)
        if status is not None:
            cls.status_code = status
        if code is not None:
            cls.error_code = code

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        if code is not None:
            self.error_code = code
        if status is not None:
            self.status_code = status

    def __str__(self) -> str:
        return self.message


class UsageError(ServiceError, status=400, code="UsageError"):
    """The request is malformed or asks for something impossible (HTTP 400)."""


class AuthenticationError(ServiceError, status=401, code="AuthenticationError"):
    """No credentials, or credentials the hub does not accept (HTTP 401)."""


class PermissionDeniedError(ServiceError, status=403, code="AuthorizationError"):
    """Authenticated, but the token lacks the scope or the resource is someone else's (403)."""


class NotFoundError(ServiceError, status=404, code="NotFoundError"):
    """The named resource does not exist or is not the caller's (404)."""


class QuotaExceededError(ServiceError, status=429, code="QuotaExceeded"):
    """A per-user limit was reached (HTTP 429)."""


class ServiceUnavailableError(ServiceError, status=503, code="ServiceUnavailable"):
    """The service cannot answer now (its database is missing or down) (HTTP 503)."""
