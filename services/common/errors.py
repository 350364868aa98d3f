"""One exception hierarchy for the API service.

Handlers and services raise these; :func:`sciplat.services.app.create_app` installs one handler
that renders them in the protocol's own form (a DALI error VOTable under the IVOA services, JSON
elsewhere). Messages are for users: they name the bad value, never internal detail.
"""

from __future__ import annotations

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
    """Base class: an error a user caused or may see, with its HTTP status."""

    status_code: int = 500
    #: DALI/UWS-style error code prefix ("UsageError", "AuthorizationError", ...).
    error_code: str = "Error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class UsageError(ServiceError):
    """The request is malformed or asks for something impossible (HTTP 400)."""

    status_code = 400
    error_code = "UsageError"


class AuthenticationError(ServiceError):
    """No credentials, or credentials the hub does not accept (HTTP 401)."""

    status_code = 401
    error_code = "AuthenticationError"


class PermissionDeniedError(ServiceError):
    """Authenticated, but the token lacks the scope or the resource is someone else's (403)."""

    status_code = 403
    error_code = "AuthorizationError"


class NotFoundError(ServiceError):
    """The named resource does not exist or is not the caller's (404)."""

    status_code = 404
    error_code = "NotFoundError"


class QuotaExceededError(ServiceError):
    """A per-user limit was reached (HTTP 429)."""

    status_code = 429
    error_code = "QuotaExceeded"


class ServiceUnavailableError(ServiceError):
    """The service cannot answer now (its database is missing or down) (HTTP 503)."""

    status_code = 503
    error_code = "ServiceUnavailable"
