"""``sciplat bench mydb``: upload rate, create-from-query time and join latency.

Runs the API service (TAP + MyDB) in a thread on a free loopback port over a sample catalog,
with a benchmark-only token check (no hub), on DuckDB and/or a private PostgreSQL.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sciplat.config import CatalogConfig, MyDBConfig, Settings

__all__ = ["run_benchmark"]

_TOKEN = "mydb-bench-token"
_USER = "bench"


@contextlib.contextmanager
def _serve(settings: Settings) -> Iterator[str]:
    """The API service with TAP and MyDB; yields its base URL. Only the bench token works."""
    from sciplat.services.app import create_app, load_plugins
    from sciplat.services.common.auth import StaticTokenVerifier
    from sciplat.services.tap.bench import bound_socket, serve_app

    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/services/api"
    app = create_app(
        settings,
        prefix="/services/api",
        public_url=base,
        hub_api_url="http://127.0.0.1:9/hub/api",
        plugins=load_plugins(["sciplat.services.tap:plugin", "sciplat.services.mydb:plugin"]),
    )
    with serve_app(app, sock):
        scopes = {"custom:tap:read", "custom:mydb:write"}
        app.state.context.verifier = StaticTokenVerifier(_TOKEN, _USER, scopes, ("users",))
        yield base


def _parquet(path: Path, rows: int, objects: int) -> None:
    rng = np.random.default_rng(7)
    table = pa.table(
        {
            "objectId": rng.integers(1, objects + 1, rows, dtype=np.int64),
            "ra": rng.uniform(0, 360, rows),
            "dec": rng.uniform(-90, 90, rows),
            "mag": rng.uniform(15, 25, rows).astype(np.float32),
            "flag": rng.integers(0, 2, rows).astype(bool),
        }
    )
    pq.write_table(table, path)


def _measure(settings: Settings, upload: Path, rows: int, progress: Callable[[str], None]) -> dict:
    import pyvo
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {_TOKEN}"
    headers = {"Authorization": f"Bearer {_TOKEN}"}
    result: dict = {}
    with _serve(settings) as base, httpx.Client(headers=headers, timeout=600) as client:
        mydb, tap_url = f"{base}/mydb", f"{base}/tap"
        progress(f"upload of {rows} rows ({upload.stat().st_size / 2**20:.1f} MiB Parquet)")
        started = time.perf_counter()
        with open(upload, "rb") as body:
            response = client.put(f"{mydb}/tables/upload", content=body)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        result["upload"] = {
            "rows": rows,
            "seconds": round(elapsed, 3),
            "rows_per_s": round(rows / elapsed),
            "stored_bytes": response.json()["bytes"],
        }

        tap = pyvo.dal.TAPService(tap_url, session=session)
        query = (
            "SELECT objectId, coord_ra, coord_dec, r_psfFlux FROM dp1.Object WHERE r_psfFlux > 4000"
        )
        progress("create from query (async job with DEST_TABLE)")
        started = time.perf_counter()
        job = pyvo.dal.AsyncTAPJob.create(tap_url, query, session=session, dest_table="bright")
        job.run().wait(timeout=600)
        job.raise_if_error()
        elapsed = time.perf_counter() - started
        stored = client.get(f"{mydb}/tables/bright").json()["rows"]
        result["create_from_query"] = {
            "rows": stored,
            "seconds": round(elapsed, 3),
            "rows_per_s": round(stored / elapsed),
        }
        progress("create from a finished job's result")
        started = time.perf_counter()
        made = client.post(f"{mydb}/tables/from_job/from-job", params={"job": job.job_id})
        made.raise_for_status()
        result["create_from_job"] = {
            "rows": made.json()["rows"],
            "seconds": round(time.perf_counter() - started, 3),
        }

        joins = {
            "count_join": "SELECT COUNT(*) AS n FROM user_bench.upload AS u "
            "JOIN dp1.Object AS o ON o.objectId = u.objectid",
            "filtered_join_top100": "SELECT TOP 100 u.ra, u.mag, o.r_psfFlux FROM "
            "user_bench.upload AS u JOIN dp1.Object AS o ON o.objectId = u.objectid "
            "WHERE u.mag < 16 ORDER BY u.mag",
        }
        result["join_latency_ms"] = {}
        for label, adql in joins.items():
            progress(f"join latency: {label}")
            times = []
            for _ in range(5):
                started = time.perf_counter()
                tap.search(adql).to_table()
                times.append((time.perf_counter() - started) * 1000)
            result["join_latency_ms"][label] = {
                "median": round(statistics.median(times), 1),
                "min": round(min(times), 1),
            }
    return result


def run_benchmark(
    rows: int = 1_000_000,
    *,
    objects: int = 200_000,
    backends: tuple[str, ...] = ("duckdb",),
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Measure each backend; returns the report (figures per backend)."""
    from sciplat.services.tap.sample import build_sample_catalog

    report: dict = {"rows": rows, "objects": objects, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="sciplat-bench-mydb-") as scratch:
        root = Path(scratch)
        progress(f"sample catalog with {objects} objects")
        catalog_path = build_sample_catalog(root / "duckdb" / "dataset", objects=objects)
        upload = root / "upload.parquet"
        _parquet(upload, rows, objects)
        for backend in backends:
            progress(f"backend {backend}")
            if backend == "duckdb":
                settings = Settings(data_dir=root / "duckdb")
                report["backends"][backend] = _measure(settings, upload, rows, progress)
                continue
            import duckdb

            from sciplat.services.tap.pgcluster import load_catalog, start_postgres

            cluster = start_postgres(Path(tempfile.mkdtemp(prefix="sciplat-bench-mydb-pg-")))
            try:
                load_catalog(
                    cluster,
                    duckdb.connect(str(catalog_path), read_only=True),
                    q3c={"dp1.object": ("coord_ra", "coord_dec")},
                )
                settings = Settings(
                    data_dir=root / "postgres",
                    catalog=CatalogConfig(backend="postgres", url=cluster.reader_url),
                    mydb=MyDBConfig(writer_url=cluster.admin_url),
                )
                report["backends"][backend] = _measure(settings, upload, rows, progress)
            finally:
                cluster.stop()
    return report
