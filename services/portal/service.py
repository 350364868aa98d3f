"""Portal logic between the HTTP handlers and the platform's services (TAP, SIA, SODA, WebDAV),
which it calls over HTTP with the user's token, like any other client."""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlparse

import httpx

from sciplat.services.common.auth import AuthenticatedUser
from sciplat.services.common.errors import NotFoundError, UsageError
from sciplat.services.portal import plots
from sciplat.services.portal.images import ImageInfo, ImageStore
from sciplat.services.portal.results import Filter, ResultCache, ResultInfo, to_parquet
from sciplat.services.portal.tapclient import JobStatus, TapClient, dali_error
from sciplat.services.portal.workspace import WorkspaceClient, clean_path

__all__ = ["PortalService", "job_id_of", "readable_name"]

MAX_FETCH_BYTES = 2 * 2**30
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OBJECT_NAME = re.compile(r"^[A-Za-z0-9_.:+-]{1,100}$")
#: A UWS job URL of a TAP service: ``.../tap/async/<id>`` (or one of the job's sub-resources).
_JOB_URL = re.compile(r"/tap/async/([A-Za-z0-9_-]{1,64})(?:/[^?#]*)?$")


def readable_name(url: str, default: str = "file") -> str:
    """A short readable name for the file at *url*, URL-decoded: its ``ID`` parameter (DataLink,
    SODA: the dataset's IVOA id) or the last part of its path."""
    parsed = urlparse(url)
    ids = [v for k, v in parse_qsl(parsed.query) if k.upper() == "ID" and v]
    name = ids[0] if ids else unquote(parsed.path.rstrip("/").rsplit("/", 1)[-1])
    return name[-100:] or default


def job_id_of(ref: str) -> str:
    """The TAP job id in *ref*: a job id, or a job URL (``.../tap/async/<id>[/...]``)."""
    ref = ref.strip()
    if _JOB_ID.match(ref):
        return ref
    parsed = urlparse(ref)
    found = _JOB_URL.search(parsed.path) if parsed.scheme in ("http", "https") else None
    if found is None:
        raise UsageError(
            f"{ref[:200]!r} is neither a TAP job id nor a TAP job URL (.../tap/async/<id>)"
        )
    return found[1]


@dataclass
class PortalService:
    """Everything the portal does for one process; methods take the calling user."""

    api_url: str  # .../services/api (internal address)
    public_api_url: str  # what notebooks and links use
    hub_url: str  # public hub root, for lab links
    results: ResultCache
    images: ImageStore
    http: httpx.AsyncClient
    work_dir: Path

    def tap(self, user: AuthenticatedUser) -> TapClient:
        return TapClient(f"{self.api_url}/tap", user.token, self.http)

    def _internal(self, url: str) -> str:
        """Rewrite a public platform URL to the internal address (same paths)."""
        if url.startswith(self.public_api_url):
            return self.api_url + url[len(self.public_api_url) :]
        return url

    def _is_platform(self, url: str) -> bool:
        return url.startswith(self.public_api_url) or url.startswith(self.api_url)

    def _tmp(self, suffix: str = "") -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.work_dir, suffix=suffix)
        import os

        os.close(fd)
        return Path(name)

    # queries -----------------------------------------------------------------------------------
    async def submit(self, user: AuthenticatedUser, query: str, maxrec: int | None) -> JobStatus:
        if not query.strip():
            raise UsageError("The query is empty")
        return await self.tap(user).submit(query, maxrec=maxrec)

    async def resolve(self, user: AuthenticatedUser, name: str) -> dict[str, Any]:
        """Where an object named in our catalogs is: a number is a ``dp1.Object`` objectId
        (then a ``dp1.DiaObject`` diaObjectId), other names an ObsCore ``obs_id``. Asked over TAP
        as the user, so their data rights apply."""
        import io

        import pyarrow.parquet as pq

        name = name.strip()
        if not _OBJECT_NAME.match(name):
            raise UsageError(f"Bad object name {name[:100]!r} (an object id or an obs_id)")
        if name.isdigit():
            number = int(name)
            candidates = [
                (
                    "dp1.Object",
                    f"SELECT coord_ra, coord_dec FROM dp1.Object WHERE objectId = {number}",
                ),
                (
                    "dp1.DiaObject",
                    f"SELECT ra, dec FROM dp1.DiaObject WHERE diaObjectId = {number}",
                ),
            ]
        else:
            candidates = [
                ("ivoa.ObsCore", f"SELECT s_ra, s_dec FROM ivoa.ObsCore WHERE obs_id = '{name}'")
            ]
        tap = self.tap(user)
        for table, query in candidates:
            try:
                found = pq.read_table(io.BytesIO(await tap.sync(query, maxrec=1)))
            except UsageError:  # a catalog without this table
                continue
            if found.num_rows and found.column(0)[0].is_valid:
                ra, dec = found.column(0)[0].as_py(), found.column(1)[0].as_py()
                return {"name": name, "ra": ra, "dec": dec, "table": table}
        where = (
            "dp1.Object objectId or dp1.DiaObject diaObjectId"
            if name.isdigit()
            else "ObsCore obs_id"
        )
        raise NotFoundError(f"No object {name!r} in our catalogs ({where})")

    async def job_status(self, user: AuthenticatedUser, ref: str) -> JobStatus:
        """The status of the user's TAP job named by *ref* (an id or a job URL, as in the
        portal's deep link ``?job=``); another user's job is refused like a missing one."""
        job_id = job_id_of(ref)
        try:
            return await self.tap(user).status(job_id)
        except NotFoundError as exc:
            raise NotFoundError(
                f"Job {job_id} is not one of your TAP jobs: it belongs to another user, or it "
                "was deleted"
            ) from exc

    async def job_result(self, user: AuthenticatedUser, job_id: str) -> ResultInfo:
        """The job's result in the cache (fetched from TAP once, as Parquet)."""
        cached = self.results.find_job(user.name, job_id)
        if cached is not None:
            return cached
        tap = self.tap(user)
        status = await tap.status(job_id)
        if status.phase == "ERROR":
            raise UsageError(f"The query failed: {status.error}")
        if status.phase == "ABORTED":
            raise UsageError("The query was cancelled")
        if status.phase != "COMPLETED" or not status.result_url:
            raise UsageError(f"The query is not finished (phase {status.phase})")
        path = self._tmp(".download")
        try:
            await tap.download(self._internal(status.result_url), path)
            parquet = self._tmp(".parquet")
            to_parquet(path, parquet)
        finally:
            path.unlink(missing_ok=True)
        return self.results.add(
            user.name,
            parquet,
            title=f"Job {job_id}",
            source="tap",
            job_id=job_id,
            query=status.query,
        )

    # plots -----------------------------------------------------------------------------------
    def bokeh_plot(
        self,
        user: AuthenticatedUser,
        result_id: str,
        *,
        kind: str,
        x: str,
        y: str | None,
        by: str | None = None,
        bins: int = 50,
        width: int = 640,
        height: int = 380,
        filters: list[Filter] = (),
        x_range: list[float] | None = None,
        y_range: list[float] | None = None,
    ) -> dict[str, Any]:
        """A Bokeh plot (JSON item and facts) of a result's columns or column differences."""
        from sciplat.services.portal import bokehplots

        if kind not in bokehplots.KINDS:
            raise UsageError(f"Unknown plot {kind!r}; use one of {', '.join(bokehplots.KINDS)}")
        spec = bokehplots.PlotSpec(
            xlabel=x, ylabel=y or "count", width=width, height=height, invert_y=kind == "cmd"
        )
        if kind == "histogram":
            table = self.results.columns(user.name, result_id, plots.axis_columns(x), filters)
            return bokehplots.histogram_item(plots.evaluate(table, x), spec, bins)
        if not y:
            raise UsageError(f"A {kind} plot needs x and y")
        names = plots.axis_columns(x) + plots.axis_columns(y)
        columns = {c["name"] for c in self.results.info(user.name, result_id).columns}
        if kind == "lightcurve" and by is None and "band" in columns:
            by = "band"
        if by:
            names.append(by)
        table = self.results.columns(user.name, result_id, list(dict.fromkeys(names)), filters)
        xs, ys = plots.evaluate(table, x), plots.evaluate(table, y)
        if kind == "lightcurve":
            bands = [str(b) for b in table.column(by).to_pylist()] if by else None
            return bokehplots.lightcurve_item(xs, ys, bands, spec)
        return bokehplots.scatter_item(xs, ys, spec, kind=kind, x_range=x_range, y_range=y_range)

    # files from URLs and uploads -----------------------------------------------------------------
    async def fetch(self, user: AuthenticatedUser, url: str, suffix: str = "") -> Path:
        """Download *url* (the user's token goes only to this platform's services)."""
        if urlparse(url).scheme not in ("http", "https"):
            raise UsageError(f"Only http(s) URLs can be opened, not {url!r}")
        headers = {"Authorization": f"Bearer {user.token}"} if self._is_platform(url) else {}
        path = self._tmp(suffix)
        size = 0
        try:
            async with self.http.stream(
                "GET", self._internal(url), headers=headers, follow_redirects=True
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise UsageError(
                        f"{url} answered HTTP {response.status_code}: {dali_error(response)}"
                    )
                with open(path, "wb") as out:
                    async for chunk in response.aiter_bytes(1 << 20):
                        size += len(chunk)
                        if size > MAX_FETCH_BYTES:
                            raise UsageError(f"{url} is larger than 2 GiB")
                        out.write(chunk)
        except httpx.HTTPError as exc:
            path.unlink(missing_ok=True)
            raise UsageError(f"Could not fetch {url}: {exc}") from exc
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def table_from_file(self, user: AuthenticatedUser, path: Path, title: str) -> ResultInfo:
        parquet = self._tmp(".parquet")
        try:
            to_parquet(path, parquet)
        finally:
            path.unlink(missing_ok=True)
        return self.results.add(user.name, parquet, title=title, source="upload")

    def image_from_file(
        self, user: AuthenticatedUser, path: Path, title: str, hdu: int | None = None
    ) -> ImageInfo:
        try:
            return self.images.add(user.name, path, title, hdu)
        finally:
            path.unlink(missing_ok=True)

    async def open_image_url(self, user: AuthenticatedUser, url: str, title: str) -> ImageInfo:
        """An image from a URL; a DataLink document is followed to its ``#this`` link."""
        path = await self.fetch(user, url, ".fits")
        head = path.read_bytes()[:2048]
        if b"<VOTABLE" in head or b"<?xml" in head:
            link = _datalink_this(path)
            path.unlink(missing_ok=True)
            if link is None:
                raise UsageError("The DataLink document has no #this link to an image")
            path = await self.fetch(user, link, ".fits")
        return self.image_from_file(user, path, title)

    # images ----------------------------------------------------------------------------------
    async def sia_search(
        self,
        user: AuthenticatedUser,
        ra: float,
        dec: float,
        radius: float,
        band: str | None,
        time_range: tuple[float, float] | None,
    ) -> ResultInfo:
        params: list[tuple[str, str]] = [("POS", f"CIRCLE {ra} {dec} {radius}")]
        if band:
            params.append(("BAND", _band(band)))
        if time_range:
            params.append(("TIME", f"{time_range[0]} {time_range[1]}"))
        response = await self.http.get(
            f"{self.api_url}/sia/query",
            params=params,
            headers={"Authorization": f"Bearer {user.token}"},
        )
        if response.status_code != 200:
            raise UsageError(f"The image search failed: {dali_error(response)}")
        path = self._tmp(".xml")
        path.write_bytes(response.content)
        return self.table_from_file(user, path, f"Images at {ra:.4f} {dec:+.4f}")

    async def cutout(
        self,
        user: AuthenticatedUser,
        dataset_id: str,
        ra: float,
        dec: float,
        radius: float,
        of: str | None = None,
    ) -> ImageInfo:
        """A SODA cutout of *dataset_id*; *of* names the image in the title (its id if None)."""
        if not 0 < radius <= 1:
            raise UsageError("The cutout radius must be from 0 to 1 degree")
        url = (
            f"{self.public_api_url}/soda/sync?ID={quote(dataset_id, safe='')}"
            f"&CIRCLE={ra}+{dec}+{radius}"
        )
        path = await self.fetch(user, url, ".fits")
        title = f"Cutout {ra:.4f} {dec:+.4f} of {of or dataset_id}"
        return self.image_from_file(user, path, title)

    # workspace and notebooks -----------------------------------------------------------------
    def workspace(self, user: AuthenticatedUser) -> WorkspaceClient:
        return WorkspaceClient(self.api_url, self.public_api_url, user.name, user.token, self.http)

    async def _webdav_put(self, user: AuthenticatedUser, rel: str, data: bytes) -> str:
        return await self.workspace(user).put(rel, data)

    async def open_workspace_file(self, user: AuthenticatedUser, rel: str) -> dict[str, Any]:
        """A workspace file in the portal: a FITS image in the image viewer, any table astropy
        reads (VOTable, Parquet, CSV, ECSV, FITS table) as a result."""
        rel = clean_path(rel, allow_root=False)
        path = await self.fetch(user, self.workspace(user).url(rel, public=True))
        name = rel.rsplit("/", 1)[-1]
        if path.read_bytes()[:6] == b"SIMPLE":
            try:
                return {"kind": "image", "image": self.images.add(user.name, path, name).__dict__}
            except UsageError:
                pass  # no 2-D image: a FITS table, perhaps
        return {"kind": "table", "result": self.table_from_file(user, path, name).__dict__}

    async def save_to_workspace(
        self, user: AuthenticatedUser, result_id: str, fmt: str, name: str, folder: str = "portal"
    ) -> dict[str, str]:
        """Write a result (whole) as VOTable, CSV or Parquet to ``~/<folder>/<name>``."""
        if not _SAFE_NAME.match(name):
            raise UsageError(f"Bad file name {name!r} (letters, digits, . _ -)")
        folder = clean_path(folder)
        path = self._tmp("." + fmt)
        try:
            self.results.export(user.name, result_id, fmt, path)
            ext = {"votable": "xml", "csv": "csv", "parquet": "parquet"}[fmt]
            file = name if name.endswith("." + ext) else f"{name}.{ext}"
            rel = f"{folder}/{file}" if folder else file
            url = await self._webdav_put(user, rel, path.read_bytes())
        finally:
            path.unlink(missing_ok=True)
        return {"path": f"~/{rel}", "url": url}

    async def open_in_notebook(self, user: AuthenticatedUser, job_id: str) -> dict[str, str]:
        """Write ``~/portal/query-<job>.ipynb`` that fetches the job's result, via WebDAV."""
        from sciplat.services.portal.notebook import query_notebook

        status = await self.tap(user).status(job_id)
        rel = f"portal/query-{job_id}.ipynb"
        await self._webdav_put(user, rel, query_notebook(job_id, status.query).encode())
        return {
            "path": f"~/{rel}",
            "lab_url": f"{self.hub_url}/user/{quote(user.name)}/lab/tree/{rel}",
        }


#: Rubin filters' wavelength ranges (m), so an image search may name a band.
BANDS = {
    "u": (3.2e-7, 4.0e-7),
    "g": (4.0e-7, 5.52e-7),
    "r": (5.52e-7, 6.91e-7),
    "i": (6.91e-7, 8.18e-7),
    "z": (8.18e-7, 9.22e-7),
    "y": (9.22e-7, 1.06e-6),
}


def _band(value: str) -> str:
    """SIA's BAND (metres) from a band name (``g``) or one or two wavelengths in metres."""
    value = value.strip()
    if value.lower() in BANDS:
        lo, hi = BANDS[value.lower()]
        return f"{(lo + hi) / 2} {(lo + hi) / 2}"
    try:
        numbers = [float(v) for v in value.split()]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or not all(0 < n < 1 for n in numbers):
        raise UsageError(
            f"Bad band {value!r}: a band name ({', '.join(BANDS)}) or wavelengths in metres"
        )
    return " ".join(str(n) for n in numbers)


def _datalink_this(path: Path) -> str | None:
    from astropy.io.votable import parse_single_table

    try:
        table = parse_single_table(str(path)).to_table()
    except Exception:
        return None
    if "semantics" not in table.colnames or "access_url" not in table.colnames:
        return None
    for row in table:
        if str(row["semantics"]) == "#this" and row["access_url"]:
            return str(row["access_url"])
    return None


def now() -> float:
    return time.time()
