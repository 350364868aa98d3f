"""TAP from a lab or a script: a :class:`pyvo.dal.TAPService` that sends the user's token.

Inside a sciplat lab the service URL comes from the discovery document and the token from the
lab's environment::

    import sciplat
    tap = sciplat.get_tap_service()
    objects = tap.search("SELECT TOP 10 * FROM dp1.Object").to_table()

Outside a lab, give the platform URL and a token made on the hub's token page::

    tap = sciplat.get_tap_service("https://dac.example.org", token="...")

The result of any async job (a portal query, a job from the query history, another tool's) comes
back as an astropy Table with :func:`get_query`::

    table = sciplat.get_query("abc123")   # job id or job URL
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sciplat.client import Discovery, discovery

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["QueryError", "get_query", "get_query_history", "get_tap_service"]


def get_tap_service(base_url: str | None = None, *, token: str | None = None) -> Any:
    """A ``pyvo.dal.TAPService`` for the platform's TAP service, authenticated as the user."""
    import pyvo

    doc = discovery(base_url, token=token)
    return pyvo.dal.TAPService(doc.url("tap"), session=doc.requests_session())


def get_query(
    job: str,
    base_url: str | None = None,
    *,
    token: str | None = None,
    doc: Discovery | None = None,
    timeout: float = 600.0,
) -> Table:
    """The result of an async TAP query (by job id or job URL) as an ``astropy.table.Table``.

    Works for any async job the user owns: a notebook's ``tap.submit_job(...)``, a portal
    query, a job from the query history. A job still running is waited for (up to *timeout*
    seconds); a failed, cancelled or unknown job raises :class:`QueryError` saying why. The
    result is read whatever format the job asked for (VOTable, Parquet, CSV, FITS).
    """
    doc = doc or discovery(base_url, token=token)
    url = job if "://" in job else f"{doc.url('tap')}/async/{job}"
    deadline = time.monotonic() + timeout
    with doc.http_client(timeout=max(60.0, timeout)) as http:
        phase, message, result_url = _job_state(http, url)
        while phase in ("PENDING", "QUEUED", "EXECUTING") and time.monotonic() < deadline:
            time.sleep(0.5)  # some services answer WAIT at once
            wait = max(1, min(30, int(deadline - time.monotonic())))
            phase, message, result_url = _job_state(http, url, wait=wait)
        if phase != "COMPLETED":
            detail = f": {message}" if message else ""
            raise QueryError(f"TAP job {job} is {phase}{detail}")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "result"
            with http.stream("GET", result_url or f"{url}/results/result") as response:
                if response.status_code != 200:
                    response.read()
                    raise QueryError(
                        f"The result of TAP job {job} cannot be read "
                        f"(HTTP {response.status_code}: {response.text[:200]})"
                    )
                with open(path, "wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
            return _read_table(path)


class QueryError(RuntimeError):
    """A TAP job that is unknown, failed, cancelled, still running or has no readable result."""


_UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
_XLINK = "{http://www.w3.org/1999/xlink}href"


def _job_state(http: Any, url: str, *, wait: int | None = None) -> tuple[str, str, str | None]:
    """The job's phase, error message and result URL (UWS job document)."""
    import xml.etree.ElementTree as ET

    params = {"WAIT": str(wait)} if wait else None
    response = http.get(url, params=params)
    if response.status_code == 404:
        raise QueryError(f"No TAP job {url.rsplit('/', 1)[-1]!r} of yours at {url}")
    if response.status_code != 200:
        raise QueryError(f"The TAP service answered HTTP {response.status_code} for {url}")
    root = ET.fromstring(response.content)
    phase = root.findtext(f"{_UWS}phase") or "UNKNOWN"
    message = (root.findtext(f"{_UWS}errorSummary/{_UWS}message") or "").strip()
    result = root.find(f"{_UWS}results/{_UWS}result")
    return phase, message, result.get(_XLINK) if result is not None else None


def _read_table(path: Path) -> Table:
    from astropy.table import Table

    head = path.read_bytes()[:512]
    if head[:4] == b"PAR1":
        return Table.read(path, format="parquet")
    if head[:6] == b"SIMPLE":
        return Table.read(path, format="fits")
    if b"<VOTABLE" in head or head.lstrip().startswith(b"<?xml"):
        return Table.read(path, format="votable")
    return Table.read(path, format="ascii")


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
