"""Errors of the identity layer."""

from __future__ import annotations

__all__ = ["IdentityConfigError", "IdentityError", "SignupError"]


class IdentityError(Exception):
    """Base of the identity layer's errors; ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IdentityConfigError(IdentityError, ValueError):
    """``sciplat.yaml`` asks for an identity setup that cannot work (raised at hub start)."""


class SignupError(IdentityError):
    """A refused sign-up; ``status_code`` is the HTTP answer (400 invalid, 409 taken)."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code
