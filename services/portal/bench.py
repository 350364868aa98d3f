"""``sciplat bench portal``: the portal over the platform's real TAP service at a million rows.

By default it builds an N-row ``dp1.Object`` catalog (DuckDB, the TAP benchmark's synthetic
catalog), serves the TAP-only API service in its own process and the portal app in this one
(uvicorn on loopback; tokens checked by a stand-in verifier, as in ``sciplat bench tap``), and
drives the portal's JSON API over HTTP like its page does:

- submit ``SELECT * FROM dp1.Object`` (MAXREC N) to the first 100 rows shown: the TAP async
  job, the portal fetching its Parquet result and the first page;
- a page of 100 rows of the N-row result at random offsets, sorted and filtered;
- the N-point scatter of (coord_ra, coord_dec) rendered by datashader into a Bokeh item.

With ``--url``/``--token`` the same measurements run against a running platform's portal.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from sciplat.config import CatalogConfig, Settings

__all__ = ["GOALS", "measure", "run_benchmark"]

#: The issue's goals (seconds).
GOALS = {"page_100_s": 0.2, "scatter_1m_s": 2.0}
_ACTIVE = ("PENDING", "QUEUED", "EXECUTING")


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median_s": round(statistics.median(ordered), 4),
        "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 4),
        "max_s": round(ordered[-1], 4),
        "n": len(ordered),
    }


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.url}: HTTP {response.status_code} {response.text}")
    return response.json()


def measure(
    http: httpx.Client,
    base: str,
    query: str,
    maxrec: int,
    *,
    pages: int = 20,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Time the portal at *base* (``.../services/portal``) with the client *http*."""
    out: dict[str, Any] = {"query": query}
    progress("query submit -> first rows")
    t0 = time.perf_counter()
    job = _ok(http.post(f"{base}/api/query", json={"query": query, "maxrec": maxrec}))
    while job["phase"] in _ACTIVE:
        job = _ok(http.get(f"{base}/api/jobs/{job['job_id']}", params={"wait": 1}))
    if job["phase"] != "COMPLETED":
        raise RuntimeError(f"the query ended {job['phase']}: {job.get('error')}")
    t_done = time.perf_counter()
    info = _ok(http.post(f"{base}/api/jobs/{job['job_id']}/load"))
    t_loaded = time.perf_counter()
    first = _ok(http.post(f"{base}/api/results/{info['id']}/page", json={"limit": 100}))
    t_first = time.perf_counter()
    rows = info["rows"]
    if len(first["rows"]) != min(100, rows):
        raise RuntimeError(f"the first page has {len(first['rows'])} rows")
    out["result_rows"] = rows
    out["submit_to_first_rows"] = {
        "total_s": round(t_first - t0, 3),
        "query_s": round(t_done - t0, 3),
        "fetch_result_s": round(t_loaded - t_done, 3),
        "first_page_s": round(t_first - t_loaded, 3),
    }
    page_url = f"{base}/api/results/{info['id']}/page"

    def page(**body: Any) -> float:
        seconds, got = _timed(lambda: _ok(http.post(page_url, json={"limit": 100, **body})))
        if not got["rows"] and got["total"]:
            raise RuntimeError(f"an empty page from {body}")
        return seconds

    progress(f"pages of 100 rows of {rows:,}")
    rng = random.Random(7)
    out["page_100"] = _summary(
        [page(offset=rng.randrange(max(1, rows - 100))) for _ in range(pages)]
    )
    out["page_100_sorted_first_s"] = round(page(sort="g_psfFlux", descending=True), 4)
    out["page_100_sorted"] = _summary(
        [page(sort="coord_dec", offset=rng.randrange(max(1, rows - 100))) for _ in range(5)]
    )
    band = [{"column": "coord_dec", "op": "between", "value": [0, 10]}]
    out["page_100_filtered"] = _summary([page(filters=band) for _ in range(5)])

    progress(f"scatter of {rows:,} points (datashader)")
    plot_url = f"{base}/api/results/{info['id']}/bokeh"
    body = {"kind": "scatter", "x": "coord_ra", "y": "coord_dec", "width": 640, "height": 380}
    scatters = []
    for _ in range(4):
        seconds, plot = _timed(lambda: _ok(http.post(plot_url, json=body)))
        if plot["n"] != rows or (rows > 20_000 and plot["renderer"] != "raster"):
            raise RuntimeError(f"the scatter drew {plot['n']} points as {plot['renderer']}")
        scatters.append(seconds)
    # the first one includes importing HoloViews and compiling datashader's numba kernels
    out["scatter_first_s"] = round(scatters[0], 3)
    out["scatter"] = _summary(scatters[1:])
    out["scatter_renderer"] = plot["renderer"]
    out["goals"] = {
        "page_100_s": GOALS["page_100_s"],
        "page_100_met": out["page_100"]["p95_s"] < GOALS["page_100_s"],
        "scatter_1m_s": GOALS["scatter_1m_s"],
        "scatter_1m_met": rows < 1_000_000 or out["scatter"]["median_s"] < GOALS["scatter_1m_s"],
    }
    return out


@contextlib.contextmanager
def serve_portal(settings: Settings, api_url: str, token: str) -> Iterator[str]:
    """The portal app on a free loopback port (a thread), accepting *token*; yields its base
    URL."""
    from sciplat.services.common.auth import StaticTokenVerifier
    from sciplat.services.portal.app import create_app
    from sciplat.services.portal.auth import PORTAL_SCOPE
    from sciplat.services.tap.bench import serve_app

    prefix = "/services/portal"
    app = create_app(
        settings, prefix=prefix, hub_api_url="http://127.0.0.1:9/hub/api", api_url=api_url
    )
    with serve_app(app) as root:
        scopes = {PORTAL_SCOPE, "custom:tap:read"}  # the verifier is set up by the lifespan:
        app.state.portal.verifier = StaticTokenVerifier(token, "bench", scopes, ("staff",))
        yield f"{root}{prefix}"


def run_benchmark(
    rows: int = 1_000_000,
    *,
    url: str | None = None,
    token: str | None = None,
    query: str = "SELECT * FROM dp1.Object",
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure a running platform's portal (*url*, *token*) or a private one over a synthetic
    *rows*-row catalog; returns the JSON-able report."""
    if url:
        base = f"{url.rstrip('/')}/services/portal"
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=600) as http:
            report = measure(http, base, query, rows, progress=progress)
        report["data"] = f"the running platform at {url}"
        return report

    from sciplat.services.tap.bench import BENCH_TOKEN, serve_tap_process
    from sciplat.services.tap.sample import build_sample_catalog

    with tempfile.TemporaryDirectory(prefix="sciplat-bench-portal-") as tmp:
        root = Path(tmp)
        progress(f"building a {rows:,}-row catalog")
        build_seconds, _ = _timed(
            lambda: build_sample_catalog(
                root / "data" / "dataset", objects=rows, sources_per_object=0
            )
        )
        catalog = CatalogConfig(max_rows=rows + 1, default_maxrec=rows)
        settings = Settings(data_dir=root / "data", catalog=catalog)
        progress("starting the TAP service and the portal")
        with serve_tap_process(settings) as tap_url:
            api_url = tap_url.rsplit("/", 1)[0]
            with (
                serve_portal(settings, api_url, BENCH_TOKEN) as base,
                httpx.Client(
                    headers={"Authorization": f"Bearer {BENCH_TOKEN}"}, timeout=600
                ) as http,
            ):
                report = measure(http, base, query, rows, progress=progress)
    report["data"] = (
        f"synthetic dp1.Object of {rows:,} rows (sciplat.services.tap.sample), TAP service "
        "process + portal on loopback"
    )
    report["build_seconds"] = round(build_seconds, 1)
    return report
