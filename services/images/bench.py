"""``sciplat bench images``: SIA latency, cone-search throughput, SODA cutout latency, HiPS tiles.

By default it serves the image plugins of the API service from a data preview on this machine
(``--dataset``, default the configured one) in a separate uvicorn process, with a static bench
token in place of the hub (whose answers the service caches, so steady-state cost is the same);
``--url``/``--token`` measure a running platform instead. Clients are threads of this process
using one HTTP keep-alive connection each.
"""

from __future__ import annotations

import os
import random
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["run_bench", "serve_for_bench"]

Say = Callable[[str], None]


def serve_for_bench(dataset: Path, state: Path, port: int, token: str) -> None:
    """Serve sia/datalink/soda/scs/hips for *dataset* on 127.0.0.1:*port* (blocking)."""
    import uvicorn
    from fastapi import APIRouter

    from sciplat.config import Settings
    from sciplat.services.app import create_app
    from sciplat.services.common.auth import StaticTokenVerifier
    from sciplat.services.hips import plugin as hips
    from sciplat.services.images import datalink, sia, soda
    from sciplat.services.plugin import ServicePlugin
    from sciplat.services.scs import plugin as scs

    state.mkdir(parents=True, exist_ok=True)
    link = state / "dataset"
    if not link.exists():
        link.symlink_to(dataset.resolve())
    settings = Settings(data_dir=state)

    async def static_auth(context: Any) -> None:
        scopes = {"custom:image:read", "custom:tap:read"}
        context.verifier = StaticTokenVerifier(token, "bench", scopes)

    auth = ServicePlugin(name="bench-auth", router_factory=APIRouter, startup=static_auth)
    app = create_app(
        settings,
        prefix="/services/api",
        public_url=f"http://127.0.0.1:{port}/services/api",
        plugins=[auth, sia.plugin, datalink.plugin, soda.plugin, scs, hips],
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def _local_server(dataset: Path, say: Say) -> Iterator[tuple[str, str]]:
    import tempfile

    from sciplat.services.tap.bench import wait_until_up

    with tempfile.TemporaryDirectory(prefix="sciplat-bench-images-") as tmp:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        token = secrets.token_hex(16)
        code = (
            "import sys; from pathlib import Path; "
            "from sciplat.services.images.bench import serve_for_bench; "
            "serve_for_bench(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])"
        )
        process = subprocess.Popen(
            [sys.executable, "-P", "-c", code, str(dataset), tmp, str(port), token],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            say(f"starting the image services on {url}")
            wait_until_up(
                f"{url}/services/api/health", timeout=120, alive=lambda: process.poll() is None
            )
            yield url, token
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(pick(0.95) * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def _timed(client: httpx.Client, url: str, params: Any = None) -> float:
    start = time.perf_counter()
    response = client.get(url, params=params)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return elapsed


def _throughput(
    make_client: Callable[[], httpx.Client],
    request: Callable[[httpx.Client, random.Random], float],
    clients: int,
    seconds: float,
) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with make_client() as client:
            while True:  # every client answers at least once, however short the run
                try:
                    elapsed = request(client, rng)
                except Exception as exc:  # reported after the run
                    errors.append(exc)
                    return
                with lock:
                    latencies.append(elapsed)
                if time.monotonic() >= stop:
                    break

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - start
    if errors:
        raise RuntimeError(f"requests failed: {errors[0]}")
    return {
        "clients": clients,
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / wall, 1),
        **_percentiles(latencies),
    }


CONE_CLIENTS = (1, 4, 8)
CONE_RADIUS = 0.01  # degrees


def cone_throughput(
    make_client: Callable[[], httpx.Client],
    url: str,
    objects: list[tuple[float, float]],
    seconds: float,
) -> list[dict[str, float]]:
    """Cone searches (``VERB=2``, ``SR`` 0.01 deg around random objects) at 1, 4 and 8 clients
    against the SCS endpoint *url* (ours or DaCHS': same parameters, same positions)."""

    def cone(client: httpx.Client, r: random.Random) -> float:
        ra, dec = r.choice(objects)
        params = {"RA": ra, "DEC": dec, "SR": CONE_RADIUS, "VERB": 2}
        return _timed(client, url, params)

    return [_throughput(make_client, cone, n, seconds) for n in CONE_CLIENTS]


def _dataset_facts(dataset: Path) -> dict[str, Any]:
    """Positions to query: image centres and DIDs, object positions, HiPS tiles."""
    from sciplat.services.images.catalogdb import connect_catalog

    con = connect_catalog(dataset / "catalog" / "catalog.duckdb")
    try:
        images = con.execute(
            "SELECT obs_publisher_did, s_ra, s_dec, s_xel1 FROM ivoa.obscore WHERE calib_level = 2"
        ).fetchall()
        objects = con.execute(
            "SELECT coord_ra, coord_dec FROM dp1.Object USING SAMPLE 2000"
        ).fetchall()
    finally:
        con.close()
    tiles = []
    hips = dataset / "hips"
    if hips.is_dir():
        for survey in sorted(p for p in hips.iterdir() if (p / "properties").exists()):
            for tile in survey.glob("Norder*/Dir*/Npix*.png"):
                tiles.append(
                    f"{survey.name}/{tile.parent.parent.name}/{tile.parent.name}/{tile.name}"
                )
    return {"images": images, "objects": objects, "tiles": tiles}


def run_bench(
    *,
    dataset: Path | None = None,
    url: str | None = None,
    token: str | None = None,
    seconds: float = 5.0,
    repeats: int = 30,
    vs_dachs: bool = False,
    say: Say = lambda message: None,
) -> dict[str, Any]:
    """Run every measurement; returns the JSON-able report. *vs_dachs*: also measure GAVO
    DaCHS' cone search over the same Object rows in the same run, and the ratios."""
    if dataset is None:
        from sciplat.config import load_settings

        dataset = load_settings(os.environ.get("SCIPLAT_CONFIG")).dataset_dir
    facts = _dataset_facts(dataset)
    if not facts["images"]:
        raise RuntimeError(f"{dataset} has no images in ivoa.ObsCore")
    if url is None:
        with _local_server(dataset, say) as (local_url, local_token):
            report = _measure(local_url, local_token, facts, seconds, repeats, say)
    elif not token:
        raise RuntimeError("--url needs --token (a hub token with custom:image:read)")
    else:
        report = _measure(url.rstrip("/"), token, facts, seconds, repeats, say)
    if vs_dachs:
        report["dachs"] = _measure_dachs(dataset, facts, seconds, say)
        report["cone_search_vs_dachs"] = cone_ratios(
            report["cone_search"], report["dachs"]["cone_search"]
        )
    return report


def _measure_dachs(
    dataset: Path, facts: dict[str, Any], seconds: float, say: Say
) -> dict[str, Any]:
    """DaCHS' SCS over the same Object rows (see ``sciplat.services.images.dachs``)."""
    from sciplat.services.images.dachs import dachs_cone_server

    with dachs_cone_server(dataset / "catalog" / "catalog.duckdb", say) as cone_url:

        def make_client() -> httpx.Client:
            return httpx.Client(timeout=120)

        with make_client() as client:  # warm up (DaCHS loads the RD on first use)
            checked = _same_rows(client, cone_url, dataset, facts["objects"][:5])
        say("DaCHS cone search")
        load = [round(x, 2) for x in os.getloadavg()]
        return {
            "service": cone_url,
            "rows_checked": checked,
            "load_average_before": load,
            "cone_search": cone_throughput(make_client, cone_url, facts["objects"], seconds),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "not_measured": {
                "sia": "DaCHS' SIAv2 (//siap2) serves its own products table: it would have to "
                "import our FITS files as DaCHS products (docs/images.md)",
                "soda": "DaCHS' SODA runs on its datalink core over its own FITS products",
            },
        }


def _same_rows(
    client: httpx.Client, cone_url: str, dataset: Path, positions: list[tuple[float, float]]
) -> int:
    """Check that DaCHS finds the same objects as our cone search (a fair comparison) for
    *positions*; returns how many cones were compared."""
    import io

    from astropy.io.votable import parse_single_table

    from sciplat.services.scs.cone import ConeCatalog

    catalog = ConeCatalog(dataset / "catalog" / "catalog.duckdb")
    try:
        for ra, dec in positions:
            response = client.get(cone_url, params={"RA": ra, "DEC": dec, "SR": CONE_RADIUS})
            response.raise_for_status()
            table = parse_single_table(io.BytesIO(response.content)).to_table()
            theirs = sorted(str(value) for value in table[catalog.id_column])
            ours = catalog.search(ra, dec, CONE_RADIUS, 1, 100000)
            index = [field.name for field in ours.fields].index(catalog.id_column)
            mine = sorted(str(row[index]) for row in ours.rows)
            if theirs != mine:
                raise RuntimeError(
                    f"DaCHS and sciplat disagree on the cone ({ra}, {dec}, {CONE_RADIUS}): "
                    f"{len(theirs)} vs {len(mine)} objects"
                )
    finally:
        catalog.close()
    return len(positions)


def cone_ratios(ours: list[dict[str, Any]], dachs: list[dict[str, Any]]) -> dict[str, Any]:
    """Our throughput / DaCHS' (above 1: we serve more) and DaCHS' p50 / ours, per client
    count."""
    theirs = {row["clients"]: row for row in dachs}
    ratios: dict[str, Any] = {}
    for row in ours:
        other = theirs.get(row["clients"])
        if not other or not other["req_per_s"] or not row.get("p50_ms"):
            continue
        ratios[str(row["clients"])] = {
            "throughput": round(row["req_per_s"] / other["req_per_s"], 2),
            "p50_latency": round(other["p50_ms"] / row["p50_ms"], 2),
        }
    return ratios


def _measure(
    root: str, token: str, facts: dict[str, Any], seconds: float, repeats: int, say: Say
) -> dict[str, Any]:
    api = f"{root}/services/api"
    headers = {"Authorization": f"Bearer {token}"}

    def make_client() -> httpx.Client:
        return httpx.Client(headers=headers, timeout=120)

    rng = random.Random(42)
    images = facts["images"]
    report: dict[str, Any] = {
        "service": api,
        "images": len(images),
        "objects_sampled": len(facts["objects"]),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    with make_client() as client:
        # Warm up: Butler, ObsCore, catalog connection, file cache.
        did, ra, dec, _ = images[0]
        client.get(f"{api}/sia/query", params={"POS": f"CIRCLE {ra} {dec} 0.05"})
        client.get(f"{api}/soda/sync", params={"ID": did, "CIRCLE": f"{ra} {dec} 0.003"})
        client.get(f"{api}/scs/cone", params={"RA": ra, "DEC": dec, "SR": 0.01})

        say("SIA queries")
        sia = []
        for _ in range(repeats):
            _, ra, dec, _ = rng.choice(images)
            sia.append(_timed(client, f"{api}/sia/query", {"POS": f"CIRCLE {ra} {dec} 0.05"}))
        report["sia_query"] = _percentiles(sia)

        say("SODA cutouts")
        # First touch of each file (open + header parsing), then the steady state.
        cold = []
        for did, ra, dec, _ in images:
            params = {"ID": did, "CIRCLE": f"{ra} {dec} {50 * 0.2 / 3600}"}
            cold.append(_timed(client, f"{api}/soda/sync", params))
        report["soda_cutout_100x100_first_touch"] = _percentiles(cold)
        for size in (100, 1000):
            samples = []
            for _ in range(repeats if size == 100 else max(5, repeats // 3)):
                did, ra, dec, _ = rng.choice(images)
                radius = size / 2 * 0.2 / 3600
                params = {"ID": did, "CIRCLE": f"{ra} {dec} {radius}"}
                samples.append(_timed(client, f"{api}/soda/sync", params))
            report[f"soda_cutout_{size}x{size}"] = _percentiles(samples)

    say("cone search")
    report["cone_search"] = cone_throughput(
        make_client, f"{api}/scs/cone", facts["objects"], seconds
    )

    tiles = facts["tiles"]
    if tiles:
        say("HiPS tiles")

        def tile(client: httpx.Client, r: random.Random) -> float:
            return _timed(client, f"{api}/hips/{r.choice(tiles)}")

        report["hips_tiles"] = [_throughput(make_client, tile, n, seconds) for n in (1, 4)]
    else:
        report["hips_tiles"] = "no HiPS built (sciplat admin build-hips)"
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return report
