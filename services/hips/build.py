"""Build HiPS 1.0 tile sets of the data preview: one per band, FITS and PNG tiles, Allsky.

The images of a band (coadds when the repo has them, else the visit images) are binned,
mosaicked onto one TAN grid (``reproject_and_coadd``) and cut into HiPS tiles with reproject's
``reproject_to_hips``. FITS tiles are then turned into PNG tiles with one stretch for the whole
survey (asinh between robust percentiles) and a colour map; ``Norder3/Allsky.{fits,png}`` are
put together from the order-3 tiles, and ``properties`` lists both formats. Each survey is built
in a temporary directory and renamed into ``<dataset>/hips/<band>``, so a reader never sees a
half-built survey.
"""

from __future__ import annotations

import logging
import math
import shutil
import warnings
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import block_reduce
from astropy.wcs import WCS

__all__ = ["ALLSKY_ORDER", "build_hips", "build_survey", "fits_to_png", "read_properties"]

log = logging.getLogger(__name__)

ALLSKY_ORDER = 3
ALLSKY_TILE = 64
ALLSKY_COLUMNS = 27
#: Dataset types to build from, best first.
SOURCE_TYPES = ("deep_coadd", "deepCoadd_calexp", "coadd", "visit_image", "calexp")

Progress = Callable[[str], None]


def read_properties(directory: Path) -> dict[str, str]:
    properties = {}
    for line in (directory / "properties").read_text().splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip()
    return properties


def write_properties(directory: Path, properties: dict[str, object]) -> None:
    lines = [f"{key:24s} = {value}" for key, value in properties.items()]
    (directory / "properties").write_text("\n".join(lines) + "\n")


def replace_directory(built: Path, output: Path) -> None:
    """Put the freshly *built* directory in place of *output* (the old one removed after)."""
    old = output.parent / f".{output.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if output.exists():
        output.rename(old)
    built.rename(output)
    shutil.rmtree(old, ignore_errors=True)


def _source_images(butler_root: Path, band: str | None) -> tuple[str, dict[str, list[Path]]]:
    """(dataset type, band -> file paths) of the images to build from."""
    from lsst.daf.butler import Butler, CollectionType

    butler = Butler.from_config(str(butler_root), writeable=False)
    try:
        known = {t.name for t in butler.registry.queryDatasetTypes()}
        runs = list(butler.collections.query("*", collection_types={CollectionType.RUN}))
        for dataset_type in SOURCE_TYPES:
            if dataset_type not in known:
                continue
            refs = butler.query_datasets(
                dataset_type,
                collections=runs,
                find_first=False,
                with_dimension_records=True,
                explain=False,
                limit=None,
            )
            by_band: dict[str, list[Path]] = {}
            for ref in refs:
                ref_band = ref.dataId.get("band") or ref.dataId.records["physical_filter"].band
                if band is None or ref_band == band:
                    by_band.setdefault(str(ref_band), []).append(Path(butler.getURI(ref).ospath))
            if by_band:
                return dataset_type, {b: sorted(set(p)) for b, p in sorted(by_band.items())}
        return "", {}
    finally:
        butler.close()


def _read_binned(path: Path, binning: int) -> tuple[np.ndarray, WCS]:
    with fits.open(path) as hdul:
        hdu = hdul["IMAGE"] if "IMAGE" in [h.name for h in hdul] else hdul[0]
        data = np.asarray(hdu.data, dtype=np.float32)
        wcs = WCS(hdu.header).celestial
    if binning > 1:
        ny, nx = (s // binning * binning for s in data.shape)
        data = block_reduce(data[:ny, :nx], binning, func=np.mean)
        wcs = wcs.slice((slice(None, None, binning), slice(None, None, binning)))
    return data, wcs


def fits_to_png(data: np.ndarray, cut: tuple[float, float], cmap: str = "gray") -> np.ndarray:
    """RGBA uint8 tile (PNG row order: top row first) from a FITS tile (bottom row first)."""
    from matplotlib import colormaps

    lo, hi = cut
    finite = np.isfinite(data)
    scaled = np.clip((np.nan_to_num(data, nan=lo) - lo) / (hi - lo), 0, 1)
    stretched = np.arcsinh(10 * scaled) / np.arcsinh(10)
    rgba = (colormaps[cmap](stretched) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(finite, 255, 0)
    return rgba[::-1]


def _png_tiles(directory: Path, cut: tuple[float, float], cmap: str) -> int:
    from PIL import Image

    count = 0
    for tile in directory.glob("Norder*/Dir*/Npix*.fits"):
        data = fits.getdata(tile)
        Image.fromarray(fits_to_png(data, cut, cmap), "RGBA").save(tile.with_suffix(".png"))
        count += 1
    return count


def _allsky(directory: Path, tile_size: int, cut: tuple[float, float], cmap: str) -> None:
    """``Norder3/Allsky.fits`` and ``.png``: the 768 order-3 tiles at 64x64, 27 per row."""
    from PIL import Image

    order_dir = directory / f"Norder{ALLSKY_ORDER}"
    if not order_dir.is_dir():
        return
    npix = 12 * 4**ALLSKY_ORDER
    rows = math.ceil(npix / ALLSKY_COLUMNS)
    mosaic = np.full((rows * ALLSKY_TILE, ALLSKY_COLUMNS * ALLSKY_TILE), np.nan, dtype=np.float32)
    factor = tile_size // ALLSKY_TILE
    for tile in order_dir.glob("Dir*/Npix*.fits"):
        index = int(tile.stem[4:])
        data = fits.getdata(tile).astype(np.float32)
        with warnings.catch_warnings():  # blank blocks average to NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            small = block_reduce(data, factor, func=np.nanmean) if factor > 1 else data
        row, col = divmod(index, ALLSKY_COLUMNS)
        # Tiles sit top-down in the PNG orientation; FITS keeps them bottom-up inside.
        mosaic[
            row * ALLSKY_TILE : (row + 1) * ALLSKY_TILE, col * ALLSKY_TILE : (col + 1) * ALLSKY_TILE
        ] = small[::-1]
    fits.PrimaryHDU(mosaic[::-1]).writeto(order_dir / "Allsky.fits", overwrite=True)
    Image.fromarray(fits_to_png(mosaic[::-1], cut, cmap), "RGBA").save(order_dir / "Allsky.png")


def build_survey(
    paths: Iterable[Path],
    output: Path,
    *,
    title: str,
    creator_did: str,
    band: str,
    binning: int = 2,
    level: int | None = None,
    tile_size: int = 512,
    cmap: str = "gray",
    progress: Progress | None = None,
) -> Path:
    """Build one HiPS survey from image files into *output* (replaced atomically)."""
    from reproject import reproject_interp
    from reproject.hips import reproject_to_hips
    from reproject.mosaicking import find_optimal_celestial_wcs, reproject_and_coadd

    say = progress or (lambda message: log.info("%s", message))
    inputs = [_read_binned(p, binning) for p in paths]
    if not inputs:
        raise ValueError(f"no images to build HiPS {title!r} from")
    say(f"{title}: mosaicking {len(inputs)} images")
    wcs_out, shape_out = find_optimal_celestial_wcs(inputs, frame="icrs")
    mosaic, footprint = reproject_and_coadd(
        inputs, wcs_out, shape_out=shape_out, reproject_function=reproject_interp
    )
    mosaic = mosaic.astype(np.float32)
    mosaic[footprint == 0] = np.nan
    finite = mosaic[np.isfinite(mosaic)]
    cut = (float(np.percentile(finite, 0.5)), float(np.percentile(finite, 99.8)))
    if cut[1] <= cut[0]:
        cut = (cut[0], cut[0] + 1.0)
    tmp = output.parent / f".{output.name}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    say(f"{title}: cutting HiPS tiles")
    with warnings.catch_warnings():  # empty sub-tiles of lower orders average to NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        reproject_to_hips(
            (mosaic, wcs_out),
            coord_system_out="equatorial",
            reproject_function=reproject_interp,
            output_directory=str(tmp),
            level=level,
            tile_size=tile_size,
        )
    generated = read_properties(tmp)
    tiles = _png_tiles(tmp, cut, cmap)
    _allsky(tmp, tile_size, cut, cmap)
    (tmp / "index.html").unlink(missing_ok=True)  # it loads Aladin from the internet
    write_properties(
        tmp,
        {
            "creator_did": creator_did,
            "obs_title": title,
            "obs_description": f"sciplat data preview, band {band}, {len(inputs)} images",
            "dataproduct_type": "image",
            "hips_version": "1.4",
            "hips_release_date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
            "hips_status": "private master unclonable",
            "hips_builder": "sciplat (astropy/reproject)",
            "hips_frame": "equatorial",
            "hips_order": generated["hips_order"],
            "hips_order_min": 0,
            "hips_tile_width": tile_size,
            "hips_tile_format": "png fits",
            "hips_pixel_bitpix": -32,
            "hips_pixel_cut": f"{cut[0]:.6g} {cut[1]:.6g}",
            "hips_data_range": f"{float(finite.min()):.6g} {float(finite.max()):.6g}",
            "hips_initial_ra": generated.get("hips_initial_ra", ""),
            "hips_initial_dec": generated.get("hips_initial_dec", ""),
            "hips_initial_fov": generated.get("hips_initial_fov", ""),
            "obs_regime": "Optical",
            "bib_reference": "simulated data",
            "sciplat_tile_count": tiles,
        },
    )
    replace_directory(tmp, output)
    say(f"{title}: {tiles} tiles per format")
    return output


def build_hips(
    dataset_root: Path,
    *,
    bands: Iterable[str] | None = None,
    binning: int = 2,
    level: int | None = None,
    catalog: bool = True,
    progress: Progress | None = None,
) -> list[Path]:
    """Build ``<dataset_root>/hips/<band>`` for every band (or *bands*) of the data preview,
    and (*catalog*) the HiPS catalogue ``hips/object`` of ``dp1.Object``.

    This is what ``sciplat data build`` calls after the images are in the Butler.
    """
    dataset_root = Path(dataset_root)
    dataset_type, by_band = _source_images(dataset_root / "butler", None)
    wanted = set(bands) if bands is not None else set(by_band)
    out_dir = dataset_root / "hips"
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    for band, paths in by_band.items():
        if band not in wanted:
            continue
        built.append(
            build_survey(
                paths,
                out_dir / band,
                title=f"sciplat DP {band} ({dataset_type})",
                creator_did=f"ivo://sciplat/P/dp/{band}",
                band=band,
                binning=binning,
                level=level,
                progress=progress,
            )
        )
    if catalog:
        from sciplat.services.hips.catalog import build_hips_catalog

        (progress or log.info)("HiPS catalogue of dp1.Object")
        built.append(build_hips_catalog(dataset_root))
    return built
