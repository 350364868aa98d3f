"""The Butler repository of the data preview: dimensions, collections, dataset types, ingest.

Layout (collections):

- ``SimCam/raw/all`` (RUN): ``raw`` per exposure and detector.
- ``SimCam/calib`` (CALIBRATION, certified from the RUN ``SimCam/calib/sim``): ``bias`` per
  detector and ``flat`` per detector and physical_filter, valid for the whole survey.
- ``SimCam/runs/dp`` (RUN): ``visit_image`` per visit and detector (ISR'd, background-
  subtracted, calibrated to nJy, with variance and mask).
- ``refcats`` (RUN): ``ref_cat`` (ArrowAstropy) per htm7 trixel.
- ``truth`` (RUN): the truth tables (ArrowAstropy).
- ``SimCam/defaults`` (CHAINED): all of the above - the collection to use.

Dataset ids are deterministic (``DATAID_TYPE_RUN``), so a rebuild with the same seed gives the
same UUIDs, and ingest is idempotent: datasets already registered are skipped, files are moved
into the datastore in one transaction per call, so an interrupted build never leaves a
registered dataset without its file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.time import Time
from lsst.daf.butler import (
    Butler,
    CollectionType,
    Config,
    DataCoordinate,
    DatasetIdGenEnum,
    DatasetRef,
    DatasetType,
    FileDataset,
    Timespan,
)
from lsst.sphgeom import ConvexPolygon, HtmPixelization, LonLat, UnitVector3d

from sciplat.pipelines.butler_io import STORAGE_CLASS, seed_config
from sciplat.pipelines.sim.survey import EXPTIME, FILTERS, INSTRUMENT, Survey

__all__ = [
    "CALIB_COLLECTION",
    "CALIB_RUN",
    "DEFAULT_COLLECTION",
    "DP_RUN",
    "RAW_RUN",
    "REFCAT_RUN",
    "TRUTH_RUN",
    "Ingest",
    "create_repo",
    "dataset_types",
    "htm7_index",
    "ingest_files",
    "open_repo",
    "polygon",
    "register_survey",
]

RAW_RUN = f"{INSTRUMENT}/raw/all"
CALIB_RUN = f"{INSTRUMENT}/calib/sim"
CALIB_COLLECTION = f"{INSTRUMENT}/calib"
DP_RUN = f"{INSTRUMENT}/runs/dp"
REFCAT_RUN = "refcats"
TRUTH_RUN = "truth"
DEFAULT_COLLECTION = f"{INSTRUMENT}/defaults"
TRUTH_TABLES = ("truth_summary", "truth_variable", "truth_transient", "truth_mover")


def create_repo(path: Path) -> None:
    """Make an empty repo (SQLite registry, file datastore) unless one is there."""
    if (path / "butler.yaml").exists():
        return
    Butler.makeRepo(str(path), config=Config(seed_config()))


def open_repo(path: Path, writeable: bool = False) -> Butler:
    return Butler.from_config(str(path), writeable=writeable)


def dataset_types(butler: Butler) -> dict[str, DatasetType]:
    u = butler.dimensions
    return {
        "raw": DatasetType(
            "raw", ["instrument", "exposure", "detector"], STORAGE_CLASS, universe=u
        ),
        "visit_image": DatasetType(
            "visit_image", ["instrument", "visit", "detector"], STORAGE_CLASS, universe=u
        ),
        "bias": DatasetType(
            "bias", ["instrument", "detector"], STORAGE_CLASS, universe=u, isCalibration=True
        ),
        "flat": DatasetType(
            "flat",
            ["instrument", "detector", "physical_filter"],
            STORAGE_CLASS,
            universe=u,
            isCalibration=True,
        ),
        "ref_cat": DatasetType("ref_cat", ["htm7"], "ArrowAstropy", universe=u),
        **{name: DatasetType(name, [], "ArrowAstropy", universe=u) for name in TRUTH_TABLES},
    }


def polygon(corners: np.ndarray) -> ConvexPolygon:
    """sphgeom polygon from (n, 2) ra/dec corners in degrees."""
    return ConvexPolygon([UnitVector3d(LonLat.fromDegrees(float(r), float(d))) for r, d in corners])


def htm7_index(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    pix = HtmPixelization(7)
    return np.array(
        [
            pix.index(UnitVector3d(LonLat.fromDegrees(float(r), float(d))))
            for r, d in zip(ra, dec, strict=True)
        ],
        dtype=np.int64,
    )


def _timespan(mjd0: float, mjd1: float) -> Timespan:
    return Timespan(Time(mjd0, format="mjd", scale="tai"), Time(mjd1, format="mjd", scale="tai"))


def register_survey(butler: Butler, survey: Survey) -> None:
    """Dimension records, collections and dataset types (idempotent)."""
    reg = butler.registry
    bands = survey.bands
    reg.insertDimensionData(
        "instrument",
        {
            "name": INSTRUMENT,
            "visit_max": 10**14,
            "exposure_max": 10**14,
            "detector_max": 1000,
            "visit_system": 0,
            "class_name": "sciplat.pipelines.sim.survey.SimCam",
        },
        skip_existing=True,
    )
    reg.insertDimensionData(
        "visit_system",
        {"instrument": INSTRUMENT, "id": 0, "name": "one-to-one"},
        skip_existing=True,
    )
    reg.insertDimensionData(
        "physical_filter",
        *[{"instrument": INSTRUMENT, "name": FILTERS[b], "band": b} for b in bands],
        skip_existing=True,
    )
    reg.insertDimensionData(
        "detector",
        *[
            {
                "instrument": INSTRUMENT,
                "id": d.id,
                "full_name": d.name,
                "name_in_raft": d.name.split("_")[1],
                "raft": d.name.split("_")[0],
                "purpose": "SCIENCE",
            }
            for d in survey.detectors
        ],
        skip_existing=True,
    )
    days = sorted({v.day_obs for v in survey.visits})
    reg.insertDimensionData(
        "day_obs",
        *[
            {
                "instrument": INSTRUMENT,
                "id": day,
                "timespan": _timespan(
                    Time.strptime(str(day), "%Y%m%d", scale="tai").mjd + 0.5,
                    Time.strptime(str(day), "%Y%m%d", scale="tai").mjd + 1.5,
                ),
            }
            for day in days
        ],
        skip_existing=True,
    )
    reg.insertDimensionData(
        "group",
        *[{"instrument": INSTRUMENT, "name": v.obs_id} for v in survey.visits],
        skip_existing=True,
    )
    exposures, visits, definitions, memberships, vdr = [], [], [], [], []
    for v in survey.visits:
        span = _timespan(v.mjd_start, v.mjd_end)
        corners = np.vstack([survey.corners(v, d) for d in survey.detectors])
        common = {
            "instrument": INSTRUMENT,
            "id": v.id,
            "physical_filter": v.physical_filter,
            "day_obs": v.day_obs,
            "seq_num": v.seq_num,
            "exposure_time": EXPTIME,
            "target_name": "sciplat-dp",
            "observation_reason": "science",
            "science_program": "sciplat-dp",
            "azimuth": 0.0,
            "zenith_angle": float(np.degrees(np.arccos(1 / v.airmass))),
            "timespan": span,
        }
        exposures.append(
            {
                **common,
                "obs_id": v.obs_id,
                "group": v.obs_id,
                "dark_time": EXPTIME,
                "observation_type": "science",
                "seq_start": v.seq_num,
                "seq_end": v.seq_num,
                "tracking_ra": v.ra,
                "tracking_dec": v.dec,
                "sky_angle": v.rotation,
                "has_simulated": True,
                "can_see_sky": True,
            }
        )
        visits.append({**common, "name": v.obs_id, "region": _hull(corners)})
        definitions.append({"instrument": INSTRUMENT, "exposure": v.id, "visit": v.id})
        memberships.append({"instrument": INSTRUMENT, "visit": v.id, "visit_system": 0})
        for d in survey.detectors:
            vdr.append(
                {
                    "instrument": INSTRUMENT,
                    "visit": v.id,
                    "detector": d.id,
                    "region": polygon(survey.corners(v, d)),
                }
            )
    reg.insertDimensionData("exposure", *exposures, skip_existing=True)
    reg.insertDimensionData("visit", *visits, skip_existing=True)
    reg.insertDimensionData("visit_definition", *definitions, skip_existing=True)
    reg.insertDimensionData("visit_system_membership", *memberships, skip_existing=True)
    reg.insertDimensionData("visit_detector_region", *vdr, skip_existing=True)

    for name in (RAW_RUN, CALIB_RUN, DP_RUN, REFCAT_RUN, TRUTH_RUN):
        butler.collections.register(name, CollectionType.RUN)
    butler.collections.register(CALIB_COLLECTION, CollectionType.CALIBRATION)
    butler.collections.register(DEFAULT_COLLECTION, CollectionType.CHAINED)
    reg.setCollectionChain(
        DEFAULT_COLLECTION, [DP_RUN, RAW_RUN, CALIB_COLLECTION, REFCAT_RUN, TRUTH_RUN]
    )
    for dataset_type in dataset_types(butler).values():
        reg.registerDatasetType(dataset_type)


def _hull(corners: np.ndarray) -> ConvexPolygon:
    """Convex hull of many ra/dec points (the visit's footprint)."""
    return ConvexPolygon.convexHull(
        [UnitVector3d(LonLat.fromDegrees(float(r), float(d))) for r, d in corners]
    )


@dataclass(frozen=True)
class Ingest:
    """One file to ingest: dataset type, data id (dict), run and path."""

    dataset_type: str
    data_id: dict[str, object]
    run: str
    path: Path


def make_ref(butler: Butler, dataset_type: DatasetType, data_id: dict, run: str) -> DatasetRef:
    coordinate = DataCoordinate.standardize(data_id, dimensions=dataset_type.dimensions)
    return DatasetRef(
        dataset_type, coordinate, run, id_generation_mode=DatasetIdGenEnum.DATAID_TYPE_RUN
    )


def ingest_files(butler: Butler, items: Sequence[Ingest]) -> list[DatasetRef]:
    """Move the files into the datastore and register them; skip what is registered already.

    Returns the refs of all *items* (ingested now or before).
    """
    types = dataset_types(butler)
    refs, todo = [], []
    for item in items:
        ref = make_ref(butler, types[item.dataset_type], item.data_id, item.run)
        refs.append(ref)
        if butler.get_dataset(ref.id) is None:
            todo.append(FileDataset(path=str(item.path), refs=[ref]))
    if todo:
        butler.ingest(*todo, transfer="move")
    return refs


def certify_calibs(butler: Butler, refs: Iterable[DatasetRef]) -> None:
    """Certify bias and flat for all time in the calibration collection (idempotent)."""
    butler.registry.certify(CALIB_COLLECTION, list(refs), Timespan(None, None))
