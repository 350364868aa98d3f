"""Run the mini data release and publish it: catalogs into the catalog database, coadds into
ObsCore.

:func:`run_release` runs the ``drp`` pipeline (``pipelines/pipelines/drp.yaml``) on the data
preview's Butler repo, restricted to some bands and a sky region. :func:`publish_release`
reads its outputs back from the Butler and replaces the truth-derived ``dp1.Object``,
``dp1.Source``, ``dp1.ForcedSource`` and ``truth.MatchesTruth`` of the data preview (Parquet in
the HATS layout, then the DuckDB database rebuilt with TAP_SCHEMA; optionally the same tables
in PostgreSQL), and adds one ``ivoa.ObsCore`` row (calibration level 3) per coadd, whose
DataLink ``#progenitor`` links are the visit images it was made from.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sciplat.pipelines.drp import skymap

__all__ = [
    "RELEASE_TABLES",
    "ReleaseError",
    "coadd_obscore_rows",
    "copy_repo",
    "load_postgres",
    "publish_release",
    "release_where",
    "run_release",
]

#: Tables a release replaces.
RELEASE_TABLES = ("dp1.Object", "dp1.Source", "dp1.ForcedSource", "truth.MatchesTruth")
COADD_TYPE = "deep_coadd"
MATCH_RADIUS_ARCSEC = 1.0
Say = Callable[[str], None]


class ReleaseError(RuntimeError):
    """The data release cannot run or be published; the message says why."""


def copy_repo(source: str | Path, target: str | Path) -> Path:
    """A private copy of a Butler repo (or a data preview directory) to run a release in:
    registry, configuration and catalogs are copied, images hard-linked (pipelines never write
    to an existing file; replace a file, never write through a link). Returns *target*."""
    import shutil

    def link_or_copy(src: str, dst: str) -> None:
        if src.endswith((".sqlite3", ".yaml", ".json")) or f"{os.sep}catalog{os.sep}" in src:
            shutil.copy2(src, dst)
            return
        try:
            os.link(src, dst)
        except OSError:  # another file system
            shutil.copy2(src, dst)

    shutil.copytree(
        source, target, copy_function=link_or_copy, ignore=shutil.ignore_patterns("graphs")
    )
    return Path(target)


def release_where(
    butler: Any,
    *,
    bands: Sequence[str] | None = None,
    region: str | None = None,
    visits: Sequence[int] | None = None,
) -> str:
    """The Butler data query of a release: sky map, bands, patches of a region, visits.

    Raises :class:`ReleaseError` for a band, visit or region the repo does not have.
    """
    from sciplat.pipelines.sim.survey import INSTRUMENT

    clauses = [f"instrument='{INSTRUMENT}'", f"skymap='{skymap.SKYMAP}'"]
    records = list(butler.query_dimension_records("visit", instrument=INSTRUMENT))
    if bands:
        have = sorted({r.physical_filter.split("_")[0] for r in records})
        unknown = [b for b in bands if b not in have]
        if unknown:
            raise ReleaseError(f"no visits in band(s) {unknown}; the data preview has {have}")
        clauses.append("band IN (" + ", ".join(f"'{b}'" for b in bands) + ")")
    if visits:
        have_ids = {r.id for r in records}
        missing = [v for v in visits if v not in have_ids]
        if missing:
            raise ReleaseError(f"visit(s) {missing} are not in the Butler repo")
        clauses.append("visit IN (" + ", ".join(str(int(v)) for v in visits) + ")")
    if region:
        try:
            circle = skymap.parse_region(region)
        except ValueError as exc:
            raise ReleaseError(str(exc)) from exc
        patches = skymap.patches_overlapping(circle)
        if not patches:
            raise ReleaseError(f"region {region!r} overlaps no patch of the sky map")
        clauses.append(f"tract = {skymap.TRACT}")
        clauses.append("patch IN (" + ", ".join(map(str, patches)) + ")")
    return " AND ".join(clauses)


def run_release(
    repo: str | Path,
    *,
    bands: Sequence[str] | None = None,
    region: str | None = None,
    visits: Sequence[int] | None = None,
    output_run: str | None = None,
    input_collections: Sequence[str] = ("SimCam/defaults",),
    client: Any = None,
    progress: bool = True,
    config: dict[str, dict[str, Any]] | None = None,
) -> Any:
    """Register the sky map and run the ``drp`` pipeline; returns the executor's RunResult."""
    from lsst.daf.butler import Butler

    from sciplat.pipelines.executor import run_pipeline

    butler = Butler.from_config(str(repo), writeable=True)
    where = release_where(butler, bands=bands, region=region, visits=visits)
    skymap.register_skymap(butler)
    run = output_run or "SimCam/runs/drp/" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return run_pipeline(
        repo,
        "drp",
        where=where,
        input_collections=list(input_collections),
        output_run=run,
        client=client,
        progress=progress,
        config=config,
    )


# -- publishing -------------------------------------------------------------------------------


def _columns(tables: list[Any]) -> dict[str, np.ndarray]:
    from astropy.table import vstack

    tables = [t for t in tables if len(t)]
    if not tables:
        return {}
    table = vstack(tables, join_type="exact", metadata_conflicts="silent")
    return {name: np.asarray(table[name]) for name in table.colnames}


def _read_all(butler: Any, dataset_type: str, run: str) -> tuple[list[Any], list[Any]]:
    refs = sorted(
        butler.query_datasets(dataset_type, collections=run, explain=False),
        key=lambda r: tuple(r.dataId.required.values()),
    )
    return refs, [butler.get(ref) for ref in refs]


def _input_counts(obj: dict[str, np.ndarray], forced: dict[str, np.ndarray]) -> None:
    """``<band>_inputCount``: visits with a measurement of the object in the band."""
    from sciplat.pipelines.schema import BANDS

    n = len(obj["objectId"])
    order = np.argsort(obj["objectId"])
    for b in BANDS:
        counts = np.zeros(n, dtype=np.int32)
        if forced:
            sel = (forced["band"] == b) & np.isfinite(forced["psfFlux"])
            ids, k = np.unique(forced["objectId"][sel], return_counts=True)
            pos = np.searchsorted(obj["objectId"], ids, sorter=order)
            counts[order[pos]] = k
        obj[f"{b}_inputCount"] = counts


def _matches(truth: pa.Table, obj: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """truth.MatchesTruth: every static truth object within 1" of an Object; the brightest
    truth object matched to an Object is its good match."""
    from sciplat.pipelines.tasks.imaging import match_sky

    static = truth.filter(pc.is_in(truth["truth_type"], pa.array(["galaxy", "star"])))
    ids = static["id"].to_numpy()
    ra, dec = static["ra"].to_numpy(), static["dec"].to_numpy()
    mag = static["mag_r"].to_numpy()
    if not obj:
        i_t = i_o = np.zeros(0, dtype=int)
        sep = np.zeros(0)
    else:
        i_t, i_o, sep = match_sky(ra, dec, obj["coord_ra"], obj["coord_dec"], MATCH_RADIUS_ARCSEC)
    good = np.zeros(len(i_t), dtype=bool)
    if len(i_t):
        order = np.lexsort((mag[i_t], i_o))  # per Object, brightest first
        first = np.r_[True, i_o[order][1:] != i_o[order][:-1]]
        good[order[first]] = True
    return {
        "id": ids[i_t],
        "match_objectId": obj["objectId"][i_o] if obj else np.zeros(0, dtype=np.int64),
        "match_sep": sep,
        "is_good_match": good,
    }


def coadd_obscore_rows(butler: Any, refs: list[Any]) -> dict[str, list]:
    """``ivoa.ObsCore`` rows (calib_level 3) of ``deep_coadd`` datasets."""
    from urllib.parse import quote

    from sciplat.pipelines.obscore import ACCESS_URL_TEMPLATE, _region, publisher_did
    from sciplat.pipelines.sim.survey import BAND_EDGES_M, FILTERS, INSTRUMENT, PIXEL_SCALE

    times = {
        r.id: (r.timespan.begin.tai.mjd, r.timespan.end.tai.mjd)
        for r in butler.query_dimension_records("visit", instrument=INSTRUMENT)
    }
    rows: dict[str, list] = {}
    for ref in refs:
        data_id = ref.dataId.required
        tract, patch, band = int(data_id["tract"]), int(data_id["patch"]), str(data_id["band"])
        meta = butler.get(ref.makeComponentRef("metadata"))
        geometry = skymap.patch_geometry(patch, tract)
        ny, nx = geometry.shape
        centre = geometry.wcs().wcs_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        visits = sorted({int(str(v).split("/")[0]) for k, v in meta.items() if k.startswith("INP")})
        spans = [times[v] for v in visits if v in times]
        lo, hi = BAND_EDGES_M[band]
        did = publisher_did(str(ref.id))
        row = {
            "dataproduct_type": "image",
            "dataproduct_subtype": "lsst.deep_coadd",
            "facility_name": "sciplat simulated telescope",
            "calib_level": 3,
            "obs_title": f"deep_coadd tract {tract} patch {patch} {band}",
            "target_name": "sciplat-dp",
            "obs_id": f"deep_coadd_{tract}_{patch}_{band}",
            "obs_collection": ref.run,
            "obs_publisher_did": did,
            "access_url": ACCESS_URL_TEMPLATE.format(did=quote(did, safe="")),
            "access_format": "application/x-votable+xml;content=datalink",
            "access_estsize": -(-butler.getURI(ref).size() // 1024),
            "s_ra": float(centre[0]),
            "s_dec": float(centre[1]),
            "s_fov": float(np.hypot(nx, ny) * PIXEL_SCALE / 3600),
            "s_region": _region(geometry.corners()),
            "s_resolution": float(meta.get("PSFSIGMA", np.nan)) * 2.3548 * PIXEL_SCALE,
            "s_xel1": nx,
            "s_xel2": ny,
            "t_xel": 1,
            "t_min": min(s[0] for s in spans) if spans else None,
            "t_max": max(s[1] for s in spans) if spans else None,
            "t_exptime": 30.0 * len(visits),
            "t_resolution": None,
            "em_xel": 1,
            "em_min": lo,
            "em_max": hi,
            "em_res_power": (lo + hi) / 2 / (hi - lo),
            "o_ucd": "phot.flux.density",
            "pol_xel": None,
            "instrument_name": INSTRUMENT,
            "lsst_visit": None,
            "lsst_detector": None,
            "lsst_tract": tract,
            "lsst_patch": patch,
            "lsst_band": band,
            "lsst_filter": FILTERS[band],
            "lsst_dataset_id": str(ref.id),
            "lsst_dataset_type": COADD_TYPE,
            "lsst_run": ref.run,
        }
        for key, value in row.items():
            rows.setdefault(key, []).append(value)
    return rows


def _aligned(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """*table* with exactly *schema*'s columns (missing ones NULL, extra ones dropped)."""
    arrays = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _obscore_with_coadds(parquet: Path, rows: dict[str, list]) -> pa.Table:
    """The data preview's ObsCore without earlier coadd rows, plus *rows*."""
    from sciplat.pipelines import database as db

    spec = db.TABLES["ivoa.ObsCore"]
    path = parquet / spec.schema / spec.name / f"{spec.name}.parquet"
    schema = db.arrow_schema(spec)
    old = _aligned(pq.read_table(path), schema) if path.exists() else schema.empty_table()
    old = old.filter(pc.not_equal(old["lsst_dataset_type"], COADD_TYPE))
    if not rows:
        return old
    n = len(next(iter(rows.values())))
    full = {f.name: rows.get(f.name, [None] * n) for f in schema}
    return pa.concat_tables([old, db.arrow_table(spec, full)])


def publish_release(
    dataset_root: str | Path,
    run: str,
    *,
    repo: str | Path | None = None,
    postgres_url: str | None = None,
    say: Say | None = None,
) -> dict[str, int]:
    """Replace the data preview's catalogs with the outputs of DRP run *run*; returns counts.

    *repo* defaults to ``<dataset_root>/butler``. Publishing the same run twice gives the same
    tables (object ids are deterministic; tables are replaced, never appended to).
    """
    from lsst.daf.butler import Butler, MissingCollectionError

    from sciplat.pipelines import database as db

    say = say or (lambda msg: None)
    root = Path(dataset_root)
    parquet = root / "catalog" / "parquet"
    if not parquet.is_dir():
        raise ReleaseError(f"no data preview catalogs in {root} (run `sciplat data build`)")
    butler = Butler.from_config(str(repo or root / "butler"))
    try:
        butler.collections.get_info(run)
    except MissingCollectionError:
        raise ReleaseError(f"no collection {run!r} in the Butler repo") from None
    say(f"[release] reading catalogs of {run}")
    _, objects = _read_all(butler, "object_patch", run)
    if not objects:
        raise ReleaseError(f"{run} has no object_patch datasets: did the DRP run finish?")
    obj = _columns(objects)
    _, sources = _read_all(butler, "source", run)
    _, forced_tables = _read_all(butler, "forced_source", run)
    forced = _columns(forced_tables)
    src = _columns(sources)
    if obj:
        _input_counts(obj, forced)
    truth_files = db.parquet_files(db.TABLES["truth.TruthSummary"], parquet)
    truth = pa.concat_tables([pq.read_table(p) for p in truth_files])
    tables = {
        "dp1.Object": obj,
        "dp1.Source": src,
        "dp1.ForcedSource": forced,
        "truth.MatchesTruth": _matches(truth, obj),
    }
    counts: dict[str, int] = {}
    for name, columns in tables.items():
        spec = db.TABLES[name]
        table = db.arrow_table(spec, columns)
        out = parquet / spec.schema / spec.name
        writer = db.write_hats if spec.spatial else db.write_plain
        counts[name] = writer(spec, out, table)
        say(f"[release] {name}: {counts[name]} rows")
    coadd_refs, _ = (
        sorted(butler.query_datasets(COADD_TYPE, collections=run, explain=False), key=str),
        None,
    )
    obscore = _obscore_with_coadds(parquet, coadd_obscore_rows(butler, coadd_refs))
    spec = db.TABLES["ivoa.ObsCore"]
    counts["ivoa.ObsCore"] = db.write_plain(spec, parquet / spec.schema / spec.name, obscore)
    counts["coadds"] = len(coadd_refs)
    reload_catalogs(
        root,
        counts=counts,
        record={"run": run},
        tables=[*RELEASE_TABLES, "ivoa.ObsCore"],
        postgres_url=postgres_url,
        say=say,
    )
    return counts


def reload_catalogs(
    root: Path,
    *,
    counts: dict[str, int],
    record: dict[str, str],
    tables: Sequence[str],
    postgres_url: str | None = None,
    say: Say | None = None,
) -> None:
    """After new Parquet *tables*: rebuild the DuckDB database and TAP_SCHEMA (a new file
    renamed over the old one, so a reader reopening it sees a whole catalog), redraw the HiPS
    Object catalogue, replace *tables* in PostgreSQL, note it, make it readable by labs."""
    from sciplat.pipelines import database as db
    from sciplat.pipelines.dataset import _publish

    say = say or (lambda msg: None)
    say("[release] loading DuckDB and TAP_SCHEMA")
    db_path = root / "catalog" / "catalog.duckdb"
    db.build_database(db_path, root / "catalog" / "parquet", db.TABLES.values())
    if "dp1.Object" in tables and (root / "hips").is_dir():
        from sciplat.services.hips.catalog import build_hips_catalog

        say("[release] HiPS catalogue of dp1.Object")
        build_hips_catalog(root)
    if postgres_url:
        say("[release] PostgreSQL")
        load_postgres(postgres_url, db_path, tables=tables)
    _record(root, counts, record)
    _publish(root)  # new files (coadds, Parquet, the database) readable by lab accounts


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


def _record(root: Path, counts: dict[str, int], record: dict[str, str]) -> None:
    """Update ``dataset.json``'s counts and note what was published in ``release.json``
    (``run`` of the data release, ``apdb`` of the published DIA tables)."""
    info_path = root / "dataset.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        info.setdefault("counts", {}).update({k: v for k, v in counts.items() if k != "coadds"})
        _write_json(info_path, info)
    note_path = root / "release.json"
    note = json.loads(note_path.read_text()) if note_path.exists() else {}
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    note.update({**record, "published_at": stamp})
    note.setdefault("counts", {}).update(counts)
    _write_json(note_path, note)


# -- PostgreSQL -------------------------------------------------------------------------------

_Q3C = {
    "dp1.object": ("coord_ra", "coord_dec"),
    "dp1.diasource": ("ra", "dec"),
    "dp1.diaobject": ("ra", "dec"),
    "dp1.source": ("ra", "dec"),
    "dp1.forcedsource": ("coord_ra", "coord_dec"),
}


def load_postgres(
    url: str,
    duckdb_path: str | Path,
    reader_role: str | None = None,
    tables: Sequence[str] = (*RELEASE_TABLES, "ivoa.ObsCore"),
) -> None:
    """Replace *tables* (default: the release tables and ObsCore) and TAP_SCHEMA in PostgreSQL
    (lower-cased names, as the postgres TAP backend reads them) from the DuckDB catalog;
    q3c-index positions when the extension is there. *reader_role* gets SELECT on them."""
    import adbc_driver_postgresql.dbapi as adbc
    import psycopg

    from sciplat.services.tap.pgcluster import indexed_columns, load_table
    from sciplat.services.tap.storage.duckdb import DuckDBCatalog

    # Opened as the TAP service opens it (one configuration per file and process in DuckDB).
    duck = DuckDBCatalog(Path(duckdb_path))
    source = duck._cursor()
    wanted = list(tables)
    tap = source.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'tap_schema'"
    ).fetchall()
    wanted += [f"tap_schema.{name}" for (name,) in tap]
    try:
        with psycopg.connect(url, autocommit=True) as con:
            try:
                con.execute("CREATE EXTENSION IF NOT EXISTS q3c")
                q3c = _Q3C
            except psycopg.Error:
                q3c = {}
        indexed = indexed_columns(source)
        with adbc.connect(url) as con, con.cursor() as cur:
            for qualified in wanted:
                schema, table = qualified.split(".")
                load_table(
                    cur, source, schema, table, q3c=q3c, indexed=indexed, reader_role=reader_role
                )
                con.commit()  # each table replaced in one transaction
    finally:
        source.close()
        duck.close()
