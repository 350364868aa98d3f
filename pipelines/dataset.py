"""Build the simulated data preview: ``build_dataset(root, size, seed)`` and ``load_info(root)``.

Steps (each resumable; finished work is kept and skipped on the next run):

1. survey plan and sky model (deterministic for the seed; recomputed, cheap);
2. images (``tiny``/``small``): GalSim renders raw + visit_image per visit and detector, and
   bias + flat per detector, into ``.build/staging`` (each file written atomically), in
   parallel processes;
3. Butler repo: dimensions, collections, dataset types; staged files are ingested (moved into
   the datastore and registered in one transaction per batch), reference catalog and truth
   tables are put;
4. catalogs: dp1 + truth tables as Parquet (HATS layout for spatial tables), ObsCore;
5. the DuckDB database with TAP_SCHEMA, built beside and renamed into place;
6. ``dataset.json`` (:class:`DatasetInfo`), written last: its presence means "complete".

A build holds ``.build/lock``; a second concurrent build gets a clear error.
"""

from __future__ import annotations

import errno
import fcntl
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from tqdm.auto import tqdm

__all__ = [
    "FORMAT_VERSION",
    "DatasetError",
    "DatasetInfo",
    "build_dataset",
    "load_info",
]

FORMAT_VERSION = 1
INFO_FILE = "dataset.json"
#: Free space a build needs (bytes), checked before starting.
SPACE_NEEDED = {"tiny": 300 * 2**20, "small": 4 * 2**30, "large": 12 * 2**30}


class DatasetError(Exception):
    """A data preview cannot be built or read; the message says why and what to do."""


class DatasetInfo(BaseModel):
    """``<root>/dataset.json``: what was built, by which version, where it is."""

    format_version: int = Field(description="Layout version of the data directory.")
    size: str = Field(description="tiny, small or large.")
    seed: int = Field(description="Random seed of the simulation.")
    sciplat_version: str = Field(description="sciplat version that built it.")
    built_at: str = Field(description="UTC time the build finished (ISO 8601).")
    build_seconds: float = Field(description="Wall time of the last build run.")
    counts: dict[str, int] = Field(description="Rows per table ('dp1.Object', ...) and images.")
    paths: dict[str, str] = Field(description="butler, catalog_db, parquet, hips (under root).")
    collections: dict[str, str] = Field(description="Butler collections by role.")
    instrument: str = Field(description="Butler instrument name.")
    bands: list[str] = Field(description="Bands observed.")
    field: dict[str, float] = Field(description="Field centre and radius (deg).")
    mjd_range: list[float] = Field(description="First and last exposure times, MJD TAI.")
    healpix_column: str = Field(description="Spatial index column of spatial tables.")


def _sizes() -> dict[str, Any]:
    from sciplat.pipelines.sim.survey import SIZES

    return SIZES


def load_info(root: Path) -> DatasetInfo | None:
    """The data preview's description, or None when no complete data set is at *root*.

    Raises :class:`DatasetError` if one is there but in another format version.
    """
    path = Path(root) / INFO_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is unreadable ({exc}); rebuild with --force") from exc
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise DatasetError(
            f"the data preview in {root} has format version {version}, this sciplat reads "
            f"version {FORMAT_VERSION}: rebuild it (`sciplat data build --force`) or point "
            "--data-dir elsewhere"
        )
    return DatasetInfo.model_validate(raw)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    lock_path = root / ".build" / "lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(f"another build is running in {root}") from None
        yield


def _prepare_root(root: Path, size: str) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DatasetError(
            f"cannot write to the data directory {root}: {exc.strerror or exc}"
        ) from exc
    free = shutil.disk_usage(root).free
    need = SPACE_NEEDED[size]
    if free < need:
        raise DatasetError(
            f"not enough free space in {root}: a {size!r} build needs about "
            f"{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
        )


def _check_state(root: Path, size: str, seed: int, force: bool) -> None:
    """Refuse to mix a partial build of another size/seed/format into this one."""
    state_path = root / ".build" / "state.json"
    want = {"format_version": FORMAT_VERSION, "size": size, "seed": seed}
    if state_path.exists():
        have = json.loads(state_path.read_text())
        if have != want and not force:
            raise DatasetError(
                f"{root} holds an unfinished build with {have}, not {want}: resume it with "
                f"`sciplat data build --size {have.get('size')} --seed {have.get('seed')}`, "
                "or start over with --force"
            )
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(want))


def _wipe(root: Path) -> None:
    for name in (INFO_FILE, "butler", "catalog", ".build"):
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def build_dataset(
    root: Path, size: str = "small", seed: int = 42, progress: bool = True, force: bool = False
) -> DatasetInfo:
    """Build (or resume, or find) the data preview of *size* and *seed* under *root*."""
    sizes = _sizes()
    if size not in sizes:
        raise DatasetError(f"unknown size {size!r}; choose one of {', '.join(sizes)}")
    root = Path(root)
    if not force:
        try:
            info = load_info(root)
        except DatasetError:
            raise
        if info is not None:
            if (info.size, info.seed) != (size, seed):
                raise DatasetError(
                    f"{root} already holds a {info.size!r} data preview with seed {info.seed}; "
                    "use --force to replace it or choose another --data-dir"
                )
            return info
    _prepare_root(root, size)
    try:
        with _locked(root):
            if force:
                _wipe(root)
                (root / ".build").mkdir(parents=True, exist_ok=True)
            _check_state(root, size, seed, force)
            return _build(root, sizes[size], seed, progress)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DatasetError(
                f"the disk holding {root} is full; free space and rerun the same command to "
                "resume the build"
            ) from exc
        raise


def _build(root: Path, size: Any, seed: int, progress: bool) -> DatasetInfo:
    import sciplat
    from sciplat.pipelines import repo as repo_mod
    from sciplat.pipelines.database import HEALPIX_COLUMN, build_time
    from sciplat.pipelines.sim.survey import INSTRUMENT, make_survey

    start = time.monotonic()
    survey = make_survey(size, seed)
    say = (lambda msg: tqdm.write(msg)) if progress else (lambda msg: None)
    butler_dir = root / "butler"
    repo_mod.create_repo(butler_dir)
    counts: dict[str, int] = {}
    image_refs: list = []
    if size.images:
        say(f"[data] rendering {len(survey.visits)} visits x {len(survey.detectors)} detectors")
        image_refs = _images(root, survey, progress)
    else:
        butler = repo_mod.open_repo(butler_dir, writeable=True)
        repo_mod.register_survey(butler, survey)
    counts["images"] = len(image_refs)
    say("[data] catalogs")
    counts.update(_catalogs(root, survey, image_refs, progress))
    if size.images:
        say("[data] HiPS surveys and catalogue")
        # tiny (CI) trades tile resolution for time; the others keep 2x2 binning.
        counts["hips"] = _hips(root, survey.bands, 4 if size.name == "tiny" else 2, progress)
    _publish(root)
    info = DatasetInfo(
        format_version=FORMAT_VERSION,
        size=size.name,
        seed=seed,
        sciplat_version=sciplat.__version__,
        built_at=build_time(),
        build_seconds=round(time.monotonic() - start, 1),
        counts=counts,
        paths={
            "butler": "butler",
            "catalog_db": "catalog/catalog.duckdb",
            "parquet": "catalog/parquet",
            "hips": "hips",
        },
        collections={
            "default": repo_mod.DEFAULT_COLLECTION,
            "raw": repo_mod.RAW_RUN,
            "calib": repo_mod.CALIB_COLLECTION,
            "visit_image": repo_mod.DP_RUN,
            "refcats": repo_mod.REFCAT_RUN,
            "truth": repo_mod.TRUTH_RUN,
        },
        instrument=INSTRUMENT,
        bands=survey.bands,
        field={"ra": survey.ra, "dec": survey.dec, "radius": survey.field_radius},
        mjd_range=list(survey.mjd_range),
        healpix_column=HEALPIX_COLUMN,
    )
    tmp = root / (INFO_FILE + ".tmp")
    tmp.write_text(info.model_dump_json(indent=2))
    os.replace(tmp, root / INFO_FILE)
    shutil.rmtree(root / ".build" / "staging", ignore_errors=True)
    (root / ".build" / "state.json").unlink(missing_ok=True)
    return info


def _publish(root: Path) -> None:
    """Make the data preview readable by every lab account (files are written through private
    temporary files, 0600); nothing in it is writable but by its builder."""
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath).name == ".build":
            dirnames[:] = []
            continue
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)


# -- images ---------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(size_name: str, seed: int) -> None:
    from sciplat.pipelines.sim.skymodel import make_sky
    from sciplat.pipelines.sim.survey import make_survey

    survey = make_survey(_sizes()[size_name], seed)
    _WORKER.update(survey=survey, sky=make_sky(survey))


def _render_task(visit_id: int, detector_id: int, raw_path: str, calexp_path: str) -> None:
    from sciplat.pipelines.butler_io import write_fits
    from sciplat.pipelines.sim.render import render_visit_detector

    survey = _WORKER["survey"]
    raw, calexp = render_visit_detector(
        _WORKER["sky"], survey, survey.visit(visit_id), survey.detector(detector_id)
    )
    write_fits(calexp, calexp_path)
    write_fits(raw, raw_path)


def _images(root: Path, survey: Any, progress: bool) -> list:
    from sciplat.pipelines import repo as repo_mod
    from sciplat.pipelines.butler_io import SimExposure, write_fits
    from sciplat.pipelines.sim.render import make_bias, make_flat

    staging = root / ".build" / "staging"
    butler = repo_mod.open_repo(root / "butler", writeable=True)
    repo_mod.register_survey(butler, survey)
    types = repo_mod.dataset_types(butler)

    def registered(kind: str, data_id: dict, run: str) -> bool:
        ref = repo_mod.make_ref(butler, types[kind], data_id, run)
        return butler.get_dataset(ref.id) is not None

    inst = repo_mod.INSTRUMENT
    # Calibrations: cheap, rendered here.
    calib_items = []
    for det in survey.detectors:
        bias_id = {"instrument": inst, "detector": det.id}
        path = staging / "bias" / f"bias_{det.id}.fits"
        if not registered("bias", bias_id, repo_mod.CALIB_RUN) and not path.exists():
            write_fits(
                SimExposure(
                    image=make_bias(survey.seed, det),
                    metadata={
                        "BUNIT": "adu",
                        "DETECTOR": det.id,
                        "INSTRUME": inst,
                        "OBSTYPE": "bias",
                    },
                ),
                path,
            )
        calib_items.append(repo_mod.Ingest("bias", bias_id, repo_mod.CALIB_RUN, path))
        for band in survey.bands:
            from sciplat.pipelines.sim.survey import FILTERS

            flat_id = {"instrument": inst, "detector": det.id, "physical_filter": FILTERS[band]}
            path = staging / "flat" / f"flat_{det.id}_{band}.fits"
            if not registered("flat", flat_id, repo_mod.CALIB_RUN) and not path.exists():
                write_fits(SimExposure(image=make_flat(survey.seed, det, band), metadata={
                    "BUNIT": "", "DETECTOR": det.id, "INSTRUME": inst, "OBSTYPE": "flat",
                    "FILTER": FILTERS[band], "BAND": band}), path)  # fmt: skip
            calib_items.append(repo_mod.Ingest("flat", flat_id, repo_mod.CALIB_RUN, path))
    calib_refs = repo_mod.ingest_files(butler, calib_items)
    _certify(butler, calib_refs)

    # Science images: render what is neither staged nor registered, in parallel.
    items, todo = [], []
    for v in survey.visits:
        for det in survey.detectors:
            raw_id = {"instrument": inst, "exposure": v.id, "detector": det.id}
            cal_id = {"instrument": inst, "visit": v.id, "detector": det.id}
            raw_path = staging / "raw" / f"raw_{v.id}_{det.id}.fits"
            cal_path = staging / "visit_image" / f"visit_image_{v.id}_{det.id}.fits"
            items.append(repo_mod.Ingest("raw", raw_id, repo_mod.RAW_RUN, raw_path))
            items.append(repo_mod.Ingest("visit_image", cal_id, repo_mod.DP_RUN, cal_path))
            done_raw = raw_path.exists() or registered("raw", raw_id, repo_mod.RAW_RUN)
            done_cal = cal_path.exists() or registered("visit_image", cal_id, repo_mod.DP_RUN)
            if not (done_raw and done_cal):
                todo.append((v.id, det.id, str(raw_path), str(cal_path)))
    for sub in ("raw", "visit_image"):
        (staging / sub).mkdir(parents=True, exist_ok=True)
    if todo:
        _run_parallel(survey, todo, progress)
    # Ingest per visit so an interruption loses at most one batch of registry work.
    refs = list(calib_refs)
    per_visit = 2 * len(survey.detectors)
    batches = [items[i : i + per_visit] for i in range(0, len(items), per_visit)]
    for batch in tqdm(batches, desc="ingest", unit="visit", disable=not progress):
        refs += repo_mod.ingest_files(butler, batch)
    _refcat_and_truth(butler, survey)
    return refs


def _run_parallel(survey: Any, todo: list, progress: bool) -> None:
    workers = max(1, min(2, os.cpu_count() or 1, len(todo)))
    bar = tqdm(total=len(todo), desc="render", unit="ccd", disable=not progress)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),  # the parent has threads: no fork
        initializer=_worker_init,
        initargs=(survey.size.name, survey.seed),
    )
    try:
        pending = {pool.submit(_render_task, *task) for task in todo}
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
            for fut in done:
                fut.result()
                bar.update(1)
    except BaseException:
        # Interrupted or failed: drop queued work; renders in flight write atomically.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        bar.close()


def _hips_band(root: str, band: str, binning: int) -> int:
    from sciplat.services.hips.build import build_hips

    return len(build_hips(Path(root), bands=[band], binning=binning, catalog=False))


def _hips(root: Path, bands: list[str], binning: int, progress: bool) -> int:
    """HiPS surveys, one band per process on both cores, then the HiPS catalogue of Object."""
    from sciplat.services.hips.build import build_hips

    workers = max(1, min(2, os.cpu_count() or 1, len(bands)))
    bar = tqdm(total=len(bands), desc="hips", unit="band", disable=not progress)
    built = 0
    # spawn: the parent has threads (no fork); the pool is left with the build on interrupt.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for n in pool.map(_hips_band, [str(root)] * len(bands), bands, [binning] * len(bands)):
            built += n
            bar.update(1)
    bar.close()
    return built + len(build_hips(root, bands=[], binning=binning, catalog=True))


def _certify(butler: Any, refs: list) -> None:
    """Certify calibrations not yet in the calibration collection."""
    from sciplat.pipelines import repo as repo_mod

    certified = {
        assoc.ref.id
        for kind in ("bias", "flat")
        for assoc in butler.registry.queryDatasetAssociations(
            kind, collections=[repo_mod.CALIB_COLLECTION]
        )
    }
    new = [r for r in refs if r.id not in certified]
    if new:
        repo_mod.certify_calibs(butler, new)


def _refcat_and_truth(butler: Any, survey: Any) -> None:
    """Reference catalog (bright stars, per htm7) and the truth tables in the Butler."""
    import numpy as np
    from astropy.table import Table

    from sciplat.pipelines import repo as repo_mod
    from sciplat.pipelines.catalogs import truth_tables
    from sciplat.pipelines.sim.skymodel import mag_to_njy, make_sky
    from sciplat.pipelines.sim.survey import BANDS

    sky = make_sky(survey)
    types = repo_mod.dataset_types(butler)
    s = sky.stars
    bright = s["mag_r"] < 21.5
    htm = repo_mod.htm7_index(s["ra"][bright], s["dec"][bright])
    for trixel in np.unique(htm):
        ref = repo_mod.make_ref(
            butler, types["ref_cat"], {"htm7": int(trixel)}, repo_mod.REFCAT_RUN
        )
        if butler.get_dataset(ref.id) is not None:
            continue
        sel = np.flatnonzero(bright)[htm == trixel]
        table = Table()
        table["id"] = s["id"][sel]
        table["coord_ra"] = s["ra"][sel]
        table["coord_ra"].unit = "deg"
        table["coord_dec"] = s["dec"][sel]
        table["coord_dec"].unit = "deg"
        table["pm_ra"] = s["pm_ra"][sel]
        table["pm_ra"].unit = "mas/yr"
        table["pm_dec"] = s["pm_dec"][sel]
        table["pm_dec"].unit = "mas/yr"
        table["epoch"] = np.full(len(sel), 60800.0)
        table["epoch"].unit = "d"
        for b in BANDS:
            flux = mag_to_njy(s[f"mag_{b}"][sel])
            table[f"{b}_flux"] = flux
            table[f"{b}_flux"].unit = "nJy"
            table[f"{b}_fluxErr"] = 0.01 * flux
            table[f"{b}_fluxErr"].unit = "nJy"
        butler.put(table, ref)
    names = {
        "TruthSummary": "truth_summary",
        "Star": "truth_variable",
        "Transient": "truth_transient",
        "Mover": "truth_mover",
    }
    tables = truth_tables(sky)
    for key, dataset_type in names.items():
        ref = repo_mod.make_ref(butler, types[dataset_type], {}, repo_mod.TRUTH_RUN)
        if butler.get_dataset(ref.id) is None:
            butler.put(Table({k: np.asarray(v) for k, v in tables[key].items()}), ref)


# -- catalogs -------------------------------------------------------------------------------


def _catalogs(root: Path, survey: Any, image_refs: list, progress: bool) -> dict[str, int]:
    from sciplat.pipelines import database as db
    from sciplat.pipelines.catalogs import build_catalogs
    from sciplat.pipelines.obscore import obscore_rows
    from sciplat.pipelines.sim.skymodel import make_sky

    parquet = root / "catalog" / "parquet"
    parquet.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    specs = list(db.TABLES.values())
    size = survey.size

    def out_dir(spec: db.TableSpec) -> Path:
        return parquet / spec.schema / spec.name

    def write(spec: db.TableSpec, table: Any) -> int:
        if spec.spatial:
            return db.write_hats(spec, out_dir(spec), table)
        return db.write_plain(spec, out_dir(spec), table)

    if size.images:
        tables = build_catalogs(survey, make_sky(survey))
    else:
        tables = {"Visit": {}, "CcdVisit": {}}
        tables.update(_large_objects(root, survey, progress, counts))
    from sciplat.pipelines.repo import open_repo

    butler = open_repo(root / "butler") if image_refs else None
    tables["ObsCore"] = obscore_rows(survey, image_refs, butler)
    for spec in tqdm(specs, desc="parquet", unit="table", disable=not progress):
        if spec.qualified in counts:
            continue
        columns = tables.get(spec.name, {})
        counts[spec.qualified] = write(spec, db.arrow_table(spec, columns))
    db_path = root / "catalog" / "catalog.duckdb"
    if progress:
        tqdm.write("[data] loading DuckDB and TAP_SCHEMA")
    db.build_database(db_path, parquet, specs)
    return counts


def _large_objects(root: Path, survey: Any, progress: bool, counts: dict) -> dict:
    """Object and TruthSummary for the catalog-only size, streamed through chunk files."""
    from sciplat.pipelines import database as db
    from sciplat.pipelines.catalogs import large_object_chunks

    size = survey.size
    chunk_dir = root / ".build" / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    obj_spec, truth_spec = db.TABLES["dp1.Object"], db.TABLES["truth.TruthSummary"]
    obj_files, truth_files = [], []
    bar = tqdm(total=size.object_rows, desc="Object", unit="row", unit_scale=True,
               disable=not progress)  # fmt: skip
    for k, (obj, truth) in enumerate(
        large_object_chunks(survey.seed, size.object_rows, size.density, size.visits_per_band)
    ):
        of, tf = chunk_dir / f"object_{k}.parquet", chunk_dir / f"truth_{k}.parquet"
        if not of.exists():
            import pyarrow.parquet as pq

            for spec, columns, path in ((truth_spec, truth, tf), (obj_spec, obj, of)):
                table = db.arrow_table(spec, columns).sort_by(
                    [(db.HEALPIX_COLUMN, "ascending"), (spec.sort[0], "ascending")]
                )
                pq.write_table(table, str(path) + ".tmp", row_group_size=50_000)
                os.replace(str(path) + ".tmp", path)
        obj_files.append(of)
        truth_files.append(tf)
        bar.update(len(obj["objectId"]))
    bar.close()
    parquet = root / "catalog" / "parquet"
    counts["dp1.Object"] = db.write_hats(obj_spec, parquet / "dp1" / "Object", obj_files)
    counts["truth.TruthSummary"] = db.write_hats(
        truth_spec, parquet / "truth" / "TruthSummary", truth_files
    )
    shutil.rmtree(chunk_dir, ignore_errors=True)
    return {}
