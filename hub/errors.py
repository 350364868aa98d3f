"""The hub's one exception hierarchy: errors a user sees on the spawn page and in the REST API."""

from __future__ import annotations

from html import escape

from jupyterhub.spawner import SpawnException

__all__ = ["LabStartError", "OptionsError", "SciplatSpawnError"]


class SciplatSpawnError(SpawnException):
    """A refused or failed spawn, with a message safe to show the user.

    JupyterHub shows ``jupyterhub_message`` on the spawn page, in progress events and in REST API
    error bodies, and logs ``log_message``.
    """

    def __init__(
        self, message: str, *, reason: str, status_code: int = 400, log_message: str = ""
    ) -> None:
        super().__init__(
            message,
            reason=reason,
            status_code=status_code,
            log_message=log_message or message,
            message_html=_pre(message),
        )

    @property
    def jupyterhub_message(self) -> str:
        return self.message

    @property
    def jupyterhub_html_message(self) -> str:
        return self.message_html


class OptionsError(SciplatSpawnError):
    """A submitted option (image, size, ...) is unknown or not allowed: HTTP 400, no spawn."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="invalid-options", status_code=400)


class LabStartError(SciplatSpawnError):
    """The lab process failed to start; the message carries the tail of its log."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        full = f"{message}\n\nLast lines of the lab's log:\n{log_tail}" if log_tail else message
        super().__init__(full, reason="lab-failed", status_code=502)


def _pre(message: str) -> str:
    head, _, tail = message.partition("\n")
    html = escape(head)
    if tail:
        html += f"<pre style='white-space: pre-wrap'>{escape(tail.strip())}</pre>"
    return html
