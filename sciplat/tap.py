"""TAP from a lab or a script: a :class:`pyvo.dal.TAPService` that sends the user's token.

Inside a sciplat lab the service URL comes from the discovery document and the token from the
lab's environment::

    import sciplat
    tap = sciplat.get_tap_service()
    objects = tap.search("SELECT TOP 10 * FROM dp1.Object").to_table()

Outside a lab, give the platform URL and a token made on the hub's token page::

    tap = sciplat.get_tap_service("https://dac.example.org", token="...")

A job URL (from the query history, or another tool) can be reopened with :func:`get_query`.
"""

from __future__ import annotations

from typing import Any

from sciplat.client import discovery

__all__ = ["get_query", "get_query_history", "get_tap_service"]


def get_tap_service(base_url: str | None = None, *, token: str | None = None) -> Any:
    """A ``pyvo.dal.TAPService`` for the platform's TAP service, authenticated as the user."""
    import pyvo

    doc = discovery(base_url, token=token)
    return pyvo.dal.TAPService(doc.url("tap"), session=doc.requests_session())


def get_query(job: str, base_url: str | None = None, *, token: str | None = None) -> Any:
    """An existing async query (``pyvo.dal.AsyncTAPJob``), by job id or job URL."""
    import pyvo

    doc = discovery(base_url, token=token)
    url = job if "://" in job else f"{doc.url('tap')}/async/{job}"
    return pyvo.dal.AsyncTAPJob(url, session=doc.requests_session())


def get_query_history(
    limit: int = 20, base_url: str | None = None, *, token: str | None = None
) -> list[dict[str, Any]]:
    """The user's most recent TAP queries (newest first) with status, rows, duration and, for
    async queries, the job URL."""
    doc = discovery(base_url, token=token)
    with doc.http_client(timeout=30) as client:
        response = client.get(f"{doc.url('tap')}/history", params={"limit": limit})
        response.raise_for_status()
        return response.json()["queries"]
