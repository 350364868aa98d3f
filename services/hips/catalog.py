"""A HiPS catalogue (progressive catalogue, HiPS 1.0 §4.4) of the Object table.

Objects are ranked brightest first (``r_psfMag``, else ``g_psfMag``) and handed out order by
order: each tile of order *k* holds up to ``per_tile`` objects not already shown at a lower
order, so zooming in reveals fainter ones; the deepest order takes everything left. Tiles are
tab-separated text (``NorderK/DirD/NpixN.tsv``: a header line, then rows).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sciplat.services.hips.build import replace_directory, write_properties

__all__ = ["build_hips_catalog"]

COLUMNS = (
    "objectId",
    "coord_ra",
    "coord_dec",
    "g_psfMag",
    "r_psfMag",
    "i_psfMag",
    "refExtendedness",
)
RANK = ("r_psfMag", "g_psfMag", "i_psfMag")


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def build_hips_catalog(
    dataset_root: Path,
    *,
    name: str = "object",
    min_order: int = 3,
    max_order: int = 11,
    per_tile: int = 50,
) -> Path:
    """Write ``<dataset_root>/hips/<name>``; returns it."""
    from astropy import units as u
    from astropy.coordinates import Latitude, Longitude
    from astropy_healpix import HEALPix

    from sciplat.services.images.catalogdb import connect_catalog

    dataset_root = Path(dataset_root)
    con = connect_catalog(dataset_root / "catalog" / "catalog.duckdb")
    try:
        present = {d[0] for d in con.execute("SELECT * FROM dp1.Object LIMIT 0").description}
        columns = [c for c in COLUMNS if c in present]
        rank = next((c for c in RANK if c in present), None)
        order_by = f'"{rank}" ASC NULLS LAST' if rank else "objectId"
        select = ", ".join(f'"{c}"' for c in columns)
        rows = con.execute(f"SELECT {select} FROM dp1.Object ORDER BY {order_by}").fetchall()
    finally:
        con.close()
    if not rows:
        raise ValueError("dp1.Object is empty")
    ra = np.array([r[columns.index("coord_ra")] for r in rows], dtype=float)
    dec = np.array([r[columns.index("coord_dec")] for r in rows], dtype=float)
    out = dataset_root / "hips" / name
    tmp = out.parent / f".{name}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    header = "\t".join(columns) + "\n"
    remaining = np.arange(len(rows))
    deepest = min_order
    for order in range(min_order, max_order + 1):
        if remaining.size == 0:
            break
        deepest = order
        hp = HEALPix(nside=2**order, order="nested")
        pixels = hp.lonlat_to_healpix(
            Longitude(ra[remaining] * u.deg), Latitude(dec[remaining] * u.deg)
        )
        keep = np.zeros(remaining.size, dtype=bool)
        last = order == max_order
        for pixel in np.unique(pixels):
            members = np.flatnonzero(pixels == pixel)  # already brightest first
            chosen = members if last else members[:per_tile]
            keep[chosen] = True
            folder = tmp / f"Norder{order}" / f"Dir{int(pixel) // 10000 * 10000}"
            folder.mkdir(parents=True, exist_ok=True)
            lines = ["\t".join(map(_text, rows[i])) + "\n" for i in remaining[chosen]]
            (folder / f"Npix{int(pixel)}.tsv").write_text(header + "".join(lines))
        remaining = remaining[~keep]
    write_properties(
        tmp,
        {
            "creator_did": f"ivo://sciplat/P/dp/{name}",
            "obs_title": "sciplat DP Object catalogue",
            "dataproduct_type": "catalog",
            "hips_version": "1.4",
            "hips_release_date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
            "hips_status": "private master unclonable",
            "hips_builder": "sciplat",
            "hips_frame": "equatorial",
            "hips_order": deepest,
            "hips_order_min": min_order,
            "hips_tile_format": "tsv",
            "hips_cat_nrows": len(rows),
            "hips_initial_ra": float(np.median(ra)),
            "hips_initial_dec": float(np.median(dec)),
            "hips_initial_fov": float(
                max(np.ptp(ra) * np.cos(np.radians(np.median(dec))), np.ptp(dec), 0.1)
            ),
        },
    )
    replace_directory(tmp, out)
    return out
