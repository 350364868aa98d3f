"""``sciplat bench portal [--json]``: result paging and datashader scatter at a million rows,
and (with ``--url``/``--token``, against a running platform) query submit to first rows."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click

__all__ = ["register"]


def _bench_local(rows: int) -> dict[str, float]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sciplat.services.portal import plots
    from sciplat.services.portal.results import Filter, ResultCache

    rng = np.random.default_rng(1)
    out: dict[str, float] = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.parquet"
        table = pa.table(
            {
                "objectId": np.arange(rows),
                "ra": rng.uniform(0, 360, rows),
                "dec": rng.uniform(-90, 90, rows),
                "g": rng.normal(22, 1, rows),
                "r": rng.normal(21.5, 1, rows),
            }
        )
        pq.write_table(table, path)
        cache = ResultCache(Path(tmp) / "cache")
        info = cache.add("bench", path, title="bench", source="upload")
        t = time.perf_counter()
        cache.page("bench", info.id, offset=0, limit=100)
        out["first_page_s"] = time.perf_counter() - t
        t = time.perf_counter()
        cache.page("bench", info.id, offset=500_000, limit=100)
        out["page_s"] = time.perf_counter() - t
        t = time.perf_counter()
        cache.page("bench", info.id, limit=100, sort="g", descending=True)
        out["sorted_page_cold_s"] = time.perf_counter() - t  # includes loading into memory
        t = time.perf_counter()
        cache.page("bench", info.id, limit=100, sort="r")
        out["sorted_page_s"] = time.perf_counter() - t
        t = time.perf_counter()
        cache.page("bench", info.id, limit=100, filters=[Filter("dec", "between", [0, 10])])
        out["filtered_page_s"] = time.perf_counter() - t
        t = time.perf_counter()
        cols = cache.columns("bench", info.id, ["g", "r"])
        plots.raster(
            plots.evaluate(cols, "g - r"), plots.evaluate(cols, "r"), width=600, height=400
        )
        out["scatter_1m_cold_s"] = time.perf_counter() - t  # includes numba compiling
        t = time.perf_counter()
        plots.raster(plots.evaluate(cols, "g"), plots.evaluate(cols, "r"), width=600, height=400)
        out["scatter_1m_s"] = time.perf_counter() - t
        cache.close()
    return out


def _bench_remote(url: str, token: str, query: str, maxrec: int) -> dict[str, float]:
    import httpx

    base = f"{url.rstrip('/')}/services/portal"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=600) as http:
        t = time.perf_counter()
        job = http.post(f"{base}/api/query", json={"query": query, "maxrec": maxrec}).json()
        while job["phase"] in ("PENDING", "QUEUED", "EXECUTING"):
            job = http.get(f"{base}/api/jobs/{job['job_id']}", params={"wait": 1}).json()
        info = http.post(f"{base}/api/jobs/{job['job_id']}/load").json()
        http.post(f"{base}/api/results/{info['id']}/page", json={"limit": 100}).raise_for_status()
        return {"submit_to_first_rows_s": time.perf_counter() - t, "result_rows": info["rows"]}


def register(cli: click.Group) -> None:
    from sciplat.cli import group

    @group("bench").command("portal")
    @click.option("--rows", default=1_000_000, show_default=True)
    @click.option("--url", default=None, help="a running platform (for submit-to-first-rows)")
    @click.option("--token", envvar="SCIPLAT_TOKEN", default=None)
    @click.option("--query", default="SELECT * FROM dp1.Object", show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    def bench_portal(rows: int, url, token, query: str, as_json: bool) -> None:
        """Portal result paging, 1M-point datashader scatter, submit-to-first-rows."""
        result = _bench_local(rows)
        if url and token:
            result.update(_bench_remote(url, token, query, rows))
        if as_json:
            click.echo(json.dumps(result))
        else:
            for key, value in result.items():
                shown = f"{value:.4f}" if isinstance(value, float) else str(value)
                click.echo(f"{key:24} {shown}")
