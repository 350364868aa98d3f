"""The portal's client of the platform's TAP service, as the user (their token), over HTTP.

Portal queries are ordinary TAP async jobs owned by the user, so a notebook's
``sciplat.get_query(job_id)`` (or pyvo) sees the very same job and result.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import httpx

from sciplat.services.common.errors import NotFoundError, ServiceError, UsageError

__all__ = ["JobStatus", "TapClient", "dali_error", "error_position", "parse_tables"]

_UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
_POSITION = re.compile(r"line (\d+), column (\d+)")


def error_position(message: str) -> dict[str, int] | None:
    """``{"line": .., "column": ..}`` named in a TAP error message, if any."""
    found = _POSITION.search(message or "")
    return {"line": int(found[1]), "column": int(found[2])} if found else None


@dataclass
class JobStatus:
    """A UWS job as :func:`parse_job` reads it (times are the job document's ISO strings)."""

    job_id: str
    phase: str
    query: str
    error: str | None
    result_url: str | None
    created: str | None
    started: str | None
    ended: str | None

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["position"] = error_position(self.error) if self.error else None
        return out


def _text(element: ET.Element | None) -> str | None:
    return element.text if element is not None else None


def parse_job(xml: bytes) -> JobStatus:
    root = ET.fromstring(xml)
    params = {p.get("id", "").lower(): p.text or "" for p in root.iter(f"{_UWS}parameter")}
    result = None
    for r in root.iter(f"{_UWS}result"):
        result = r.get("{http://www.w3.org/1999/xlink}href")
        break
    error = None
    summary = root.find(f"{_UWS}errorSummary")
    if summary is not None:
        error = _text(summary.find(f"{_UWS}message"))
    return JobStatus(
        job_id=_text(root.find(f"{_UWS}jobId")) or "",
        phase=_text(root.find(f"{_UWS}phase")) or "UNKNOWN",
        query=params.get("query", ""),
        error=error,
        result_url=result,
        created=_text(root.find(f"{_UWS}creationTime")),
        started=_text(root.find(f"{_UWS}startTime")),
        ended=_text(root.find(f"{_UWS}endTime")),
    )


def parse_tables(xml: bytes) -> list[dict[str, Any]]:
    """VOSI tables -> ``[{schema, tables: [{name, description, columns: [...]}]}]``."""
    root = ET.fromstring(xml)
    schemas = []
    for schema in root.iter("schema"):
        tables = []
        for table in schema.findall("table"):
            columns = [
                {
                    "name": _text(col.find("name")),
                    "datatype": _text(col.find("dataType")),
                    "unit": _text(col.find("unit")),
                    "ucd": _text(col.find("ucd")),
                    "description": _text(col.find("description")),
                }
                for col in table.findall("column")
            ]
            tables.append(
                {
                    "name": _text(table.find("name")),
                    "description": _text(table.find("description")),
                    "columns": columns,
                }
            )
        schemas.append({"schema": _text(schema.find("name")), "tables": tables})
    return schemas


def dali_error(response: httpx.Response) -> str:
    """The message of a DALI error document (or the body's start)."""
    text = response.text
    found = re.search(r'<INFO[^>]*name="QUERY_STATUS"[^>]*>(.*?)</INFO>', text, re.S)
    if found:
        return found[1].strip()
    return text.strip()[:500] or f"HTTP {response.status_code}"


@dataclass
class TapClient:
    """TAP over HTTP with one user's token."""

    base_url: str  # .../services/api/tap
    token: str
    http: httpx.AsyncClient
    _headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self._headers = {"Authorization": f"Bearer {self.token}"}

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(
                method, f"{self.base_url}{path}", headers=self._headers, **kwargs
            )
        except httpx.HTTPError as exc:
            raise ServiceError(f"The TAP service could not be reached: {exc}") from exc
        if response.status_code == 404:
            raise NotFoundError(dali_error(response))
        if response.status_code in (401, 403):
            err = UsageError(dali_error(response))
            err.status_code = response.status_code
            raise err
        if response.status_code >= 400:
            raise UsageError(dali_error(response))
        return response

    async def submit(self, query: str, *, maxrec: int | None = None) -> JobStatus:
        data = {
            "REQUEST": "doQuery",
            "LANG": "ADQL",
            "QUERY": query,
            "RESPONSEFORMAT": "parquet",
            "PHASE": "RUN",
        }
        if maxrec is not None:
            data["MAXREC"] = str(maxrec)
        response = await self._request("POST", "/async", data=data, follow_redirects=True)
        return parse_job(response.content)

    async def status(self, job_id: str, *, wait: float | None = None) -> JobStatus:
        params = {"WAIT": str(wait)} if wait else None
        response = await self._request("GET", f"/async/{job_id}", params=params)
        return parse_job(response.content)

    async def abort(self, job_id: str) -> JobStatus:
        await self._request(
            "POST", f"/async/{job_id}/phase", data={"PHASE": "ABORT"}, follow_redirects=True
        )
        return await self.status(job_id)

    async def download(self, url: str, path: Any) -> int:
        """Stream a result file to *path*; returns its size."""
        size = 0
        async with self.http.stream("GET", url, headers=self._headers) as response:
            if response.status_code != 200:
                await response.aread()
                raise UsageError(f"Could not read the job's result: {dali_error(response)}")
            with open(path, "wb") as out:
                async for chunk in response.aiter_bytes(1 << 20):
                    out.write(chunk)
                    size += len(chunk)
        return size

    async def tables(self) -> list[dict[str, Any]]:
        return parse_tables((await self._request("GET", "/tables")).content)

    async def history(self, limit: int = 50) -> list[dict[str, Any]]:
        response = await self._request("GET", "/history", params={"limit": str(limit)})
        return response.json()["queries"]

    async def sync(self, query: str, *, maxrec: int = 100_000) -> bytes:
        """A small synchronous query, as Parquet bytes."""
        response = await self._request(
            "POST",
            "/sync",
            data={
                "REQUEST": "doQuery",
                "LANG": "ADQL",
                "QUERY": query,
                "RESPONSEFORMAT": "parquet",
                "MAXREC": str(maxrec),
            },
        )
        return response.content
