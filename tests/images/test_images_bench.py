"""``sciplat bench images`` end to end (with ``--vs-dachs`` where DaCHS is installed), the
ratios it reports, and the cone search's HEALPix ranges (computed without astropy Quantities,
checked against astropy-healpix's high-level API)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from sciplat.services.images.bench import CONE_CLIENTS, cone_ratios, run_bench
from sciplat.services.scs.cone import ConeCatalog

# DaCHS (Debian gavodachs2-server) is installed by hand on the benchmark machine, not by
# scripts/setup.sh; bench images --vs-dachs needs it and root (PostgreSQL cluster, apt).
HAVE_DACHS = shutil.which("dachs") is not None and os.geteuid() == 0


@pytest.mark.integration
@pytest.mark.root
@pytest.mark.skipif(not HAVE_DACHS, reason="GAVO DaCHS (gavodachs2-server) is not installed")
def test_bench_images_vs_dachs_end_to_end(image_dataset: Path) -> None:
    messages: list[str] = []
    report = run_bench(
        dataset=image_dataset, seconds=0.3, repeats=3, vs_dachs=True, say=messages.append
    )
    # repeats=3 latency samples; the 1000x1000 cutouts take at least 5.
    samples = {"sia_query": 3, "soda_cutout_100x100": 3, "soda_cutout_1000x1000": 5}
    for name, count in samples.items():
        assert report[name]["n"] == count, (name, report[name])
    assert isinstance(report["hips_tiles"], list) and report["hips_tiles"][0]["requests"] > 0
    dachs = report["dachs"]
    # DaCHS found the same objects as we do (so the comparison is fair) ...
    assert dachs["rows_checked"] == 5
    # ... and both answered at every client count, with ratios per count.
    for side in (report["cone_search"], dachs["cone_search"]):
        assert [row["clients"] for row in side] == list(CONE_CLIENTS)
        assert all(row["requests"] > 0 and row["p50_ms"] > 0 for row in side)
    assert set(report["cone_search_vs_dachs"]) == {str(n) for n in CONE_CLIENTS}
    assert {"sia", "soda"} <= set(dachs["not_measured"])
    assert "DaCHS cone search" in messages


def test_cone_ratios_per_client_count() -> None:
    ours = [{"clients": 1, "req_per_s": 40.0, "p50_ms": 10.0}, {"clients": 4, "req_per_s": 60.0}]
    dachs = [
        {"clients": 1, "req_per_s": 20.0, "p50_ms": 30.0},
        {"clients": 4, "req_per_s": 0.0, "p50_ms": 1.0},
    ]
    # 4 clients: DaCHS answered nothing and ours has no p50: no ratio rather than a crash.
    assert cone_ratios(ours, dachs) == {"1": {"throughput": 2.0, "p50_latency": 3.0}}


def _reference_ranges(ra: float, dec: float, radius: float, column_order: int) -> list[int]:
    """The order-29 pixels the cone's coarse pixels cover, with astropy-healpix's Quantity API
    (the implementation before it was made cheaper)."""
    from astropy import units as u
    from astropy.coordinates import Latitude, Longitude
    from astropy_healpix import HEALPix, nside_to_level, pixel_resolution_to_nside

    nside = pixel_resolution_to_nside(max(radius / 4, 1e-5) * u.deg, round="down")
    order = min(column_order, int(nside_to_level(max(nside, 1))))
    hp = HEALPix(nside=2**order, order="nested")
    pixels = hp.cone_search_lonlat(
        Longitude(ra * u.deg),
        Latitude(dec * u.deg),
        radius=(radius + hp.pixel_resolution.to_value(u.deg)) * u.deg,
    )
    shift = 2 * (column_order - order)
    return sorted((int(p) << shift, ((int(p) + 1) << shift) - 1) for p in np.unique(pixels))


def test_healpix_ranges_match_astropy_healpix() -> None:
    catalog = ConeCatalog(Path("unused.duckdb"))
    catalog.healpix = ("_healpix_29", 29)
    rng = random.Random(7)
    for _ in range(300):
        ra, dec, radius = rng.uniform(0, 360), rng.uniform(-90, 90), 10 ** rng.uniform(-5, 1)
        ranges = catalog._healpix_ranges(ra, dec, radius)
        # Same coverage: merge the reference's adjacent pixels the way the catalog does.
        merged: list[tuple[int, int]] = []
        for lo, hi in _reference_ranges(ra, dec, radius, 29):
            if merged and lo == merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        assert ranges == merged, (ra, dec, radius)
