"""The Queries menu: the user's TAP query history, and a notebook that fetches one result.

The history is the TAP service's ``/history`` (kept per user by the service), read with the
lab's token. Only asynchronous jobs are listed: they keep their result, so each can be opened
as a notebook (``sciplat.get_query(job_id)``) or in the portal, whose deep link
``<portal>/?job=<job id>`` opens that job's result.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sciplat.labextension.errors import BadRequest, LabError, NotFound
from sciplat.labextension.paths import relative_to_root, write_new_file
from sciplat.labextension.platform import PlatformClient
from sciplat.labextension.portalsend import portal_url

__all__ = ["JOB_ID", "portal_job_url", "query_history", "query_notebook", "write_query_notebook"]

#: What a UWS job id of the TAP service looks like (also keeps the notebook's code safe).
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PHASES = {"OK": "COMPLETED", "OVERFLOW": "COMPLETED", "ERROR": "ERROR"}
QUERIES_DIR = "queries"


def _iso(ts: Any) -> str | None:
    try:
        return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError):
        return None


def portal_job_url(portal: str, job_id: str) -> str:
    """The portal's deep link that opens TAP job *job_id*'s result."""
    return f"{portal.rstrip('/')}/?job={quote(job_id, safe='')}"


def history_items(entries: list[dict[str, Any]], portal_url: str | None) -> list[dict[str, Any]]:
    """Contract items from the TAP service's history entries (async jobs still there only)."""
    items = []
    for entry in entries:
        job_id = entry.get("job_id")
        if not job_id or entry.get("job_deleted"):  # a deleted job can open nowhere
            continue
        job_url = entry.get("job_url")
        status = str(entry.get("status", ""))
        items.append(
            {
                "job_id": job_id,
                "query": entry.get("query", ""),
                "phase": _PHASES.get(status, status),
                "created": _iso(entry.get("time")),
                "rows": entry.get("rows"),
                "message": entry.get("message"),
                "result_url": f"{job_url}/results/result" if job_url else None,
                "portal_url": portal_job_url(portal_url, job_id) if portal_url else None,
            }
        )
    return items


async def query_history(platform: PlatformClient, limit: int = 50) -> dict[str, Any]:
    """The contract's ``queries`` answer (may be empty)."""
    tap = platform.url("tap")
    response = await platform.request("tap", "GET", f"{tap}/history", params={"limit": limit})
    if response.status_code != 200:
        raise platform.unreachable("tap", f"history answered HTTP {response.status_code}", 502)
    try:
        entries = response.json()["queries"]
    except (ValueError, KeyError, TypeError) as exc:
        raise platform.unreachable("tap", "history answered something else than JSON", 502) from exc
    try:
        portal = portal_url(platform)["url"]
    except LabError:  # a lab without a portal still lists its queries
        portal = None
    return {"queries": history_items(entries, portal)}


def query_notebook(job_id: str, query: str = "") -> dict[str, Any]:
    """An nbformat 4 notebook that fetches TAP job *job_id*'s result as an astropy Table."""
    if not JOB_ID.match(job_id):
        raise BadRequest(f"{job_id!r} is not a TAP job id.")
    intro = f"# TAP query {job_id}\n\nThe result of an earlier query, as an astropy Table."
    if query:
        intro += "\n\n```sql\n" + query.strip() + "\n```"

    cells: list[dict[str, Any]] = []

    def cell(kind: str, source: str) -> dict[str, Any]:
        c: dict[str, Any] = {"cell_type": kind, "id": f"{kind}-{len(cells)}", "metadata": {},
                             "source": source}  # fmt: skip
        if kind == "code":
            c.update(outputs=[], execution_count=None)
        return c

    cells.append(cell("markdown", intro))
    cells.append(cell("code", f"import sciplat\n\ntable = sciplat.get_query({job_id!r})\ntable"))
    cells.append(cell("markdown", "Send it to the portal: `sciplat.portal.show_table(table)`."))
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "lsst", "display_name": "LSST (sciplat)", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": cells,
    }


async def write_query_notebook(
    platform: PlatformClient, lab_root: Path, job_id: object
) -> dict[str, str]:
    """Check that *job_id* is the user's TAP job, then write ``queries/<job_id>.ipynb`` (with
    a suffix when that exists); returns ``{"path": <lab path>}``."""
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise BadRequest("Give the TAP job's 'job_id' as the Queries menu lists it.")
    tap = platform.url("tap")
    response = await platform.request("tap", "GET", f"{tap}/async/{job_id}")
    if response.status_code == 404:
        raise NotFound(f"You have no TAP job {job_id!r} (it may have expired).")
    if response.status_code != 200:
        raise platform.unreachable("tap", f"the job answered HTTP {response.status_code}", 502)
    query = _job_query(response.content)
    notebook = json.dumps(query_notebook(job_id, query), indent=1) + "\n"
    root = Path(lab_root)
    path = write_new_file(root / QUERIES_DIR, job_id, ".ipynb", notebook)
    return {"path": relative_to_root(root, path)}


def _job_query(xml: bytes) -> str:
    """The QUERY parameter of a UWS job document ('' if absent)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return ""
    for element in root.iter("{http://www.ivoa.net/xml/UWS/v1.0}parameter"):
        if element.get("id", "").lower() == "query":
            return element.text or ""
    return ""
