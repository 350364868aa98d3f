"""DIASource -> DIAObject association in an APDB (``lsst-dax-apdb``, SQLite or PostgreSQL).

A DIASource joins the nearest DIAObject within ``radius_arcsec``; unmatched ones found new
DIAObjects. Ids are deterministic (visit, detector, index), so processing a visit again finds
its DIASources already stored and changes nothing (no duplicate DIAObjects or alerts).
Writers to one APDB are serialised with a file lock next to its configuration, so parallel
quanta never create the same DIAObject twice.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table
from astropy.time import Time
from lsst.dax.apdb import Apdb, ApdbConfig
from lsst.dax.apdb.sql import ApdbSql
from lsst.sphgeom import Region

from sciplat.pipelines.tasks.imaging import match_sky

__all__ = ["BANDS", "associate", "create_apdb", "dia_source_id", "locked_apdb"]

BANDS = ("u", "g", "r", "i", "z", "y")


def create_apdb(directory: Path, db_url: str | None = None) -> Path:
    """Create an APDB (SQLite in *directory* unless *db_url*); returns its config file."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "apdb.yaml"
    if config_path.exists():
        return config_path
    url = db_url or f"sqlite:///{(directory / 'apdb.sqlite3').resolve()}"
    config = ApdbSql.init_database(url, drop=False)
    config.save(str(config_path))
    return config_path


@contextmanager
def locked_apdb(config_path: str | Path) -> Iterator[Apdb]:
    """The APDB with an exclusive lock held (one writer at a time on this machine)."""
    lock_path = Path(str(config_path) + ".lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield Apdb.from_config(ApdbConfig.from_uri(str(config_path)))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _packed_visit(visit: int) -> int:
    """YYYYMMDDnnnnn visit ids -> a smaller number (days since 2000 and sequence)."""
    day, seq = divmod(int(visit), 100_000)
    return (day - 20_000_000) * 100_000 + seq


def dia_source_id(visit: int, detector: int, index: np.ndarray) -> np.ndarray:
    """Deterministic 64-bit DIASource ids."""
    return (_packed_visit(visit) * 1000 + int(detector)) * 10_000 + np.asarray(index, np.int64)


def _source_frame(
    dia: Table, visit: int, detector: int, band: str, mjd: float, processed_mjd: float
) -> pd.DataFrame:
    n = len(dia)
    frame = pd.DataFrame(
        {
            "diaSourceId": dia_source_id(visit, detector, np.arange(n)),
            "visit": np.full(n, visit, dtype=np.int64),
            "detector": np.full(n, detector, dtype=np.int16),
            "band": [band] * n,
            "midpointMjdTai": np.full(n, mjd),
            "ra": np.asarray(dia["coord_ra"], dtype=np.float64),
            "dec": np.asarray(dia["coord_dec"], dtype=np.float64),
            "x": np.asarray(dia["x"], dtype=np.float32),
            "y": np.asarray(dia["y"], dtype=np.float32),
            "psfFlux": np.asarray(dia["psfFlux"], dtype=np.float32),
            "psfFluxErr": np.asarray(dia["psfFluxErr"], dtype=np.float32),
            "apFlux": np.asarray(dia["apFlux"], dtype=np.float32),
            "apFluxErr": np.asarray(dia["apFluxErr"], dtype=np.float32),
            "snr": np.asarray(dia["snr"], dtype=np.float32),
            "isDipole": np.asarray(dia["isDipole"], dtype=bool),
            "isNegative": np.asarray(dia["isNegative"], dtype=bool),
            "psfNdata": np.full(n, 0, dtype=np.int32),
            "trailNdata": np.full(n, 0, dtype=np.int32),
            "dipoleNdata": np.full(n, 0, dtype=np.int32),
            "bboxSize": np.asarray(dia["bboxSize"], dtype=np.int32),
            "timeProcessedMjdTai": np.full(n, processed_mjd),
            "pixelFlags_edge": np.asarray(dia["flag_edge"], dtype=bool),
            "pixelFlags_saturatedCenter": np.asarray(dia["flag_saturated"], dtype=bool),
        }
    )
    return frame


def associate(
    apdb: Apdb,
    dia: Table,
    *,
    visit: int,
    detector: int,
    band: str,
    mjd: float,
    region: Region,
    radius_arcsec: float = 1.0,
) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """Associate and store one detector's DIASources.

    Returns (DIASources with ``diaObjectId``, their DIAObjects as stored, stored_now); when the
    visit/detector is in the APDB already, nothing is written and ``stored_now`` is False.
    """
    visit_time = Time(mjd, format="mjd", scale="tai")
    existing = apdb.getDiaSources(
        region, None, visit_time, start_time=Time(mjd - 1e-3, format="mjd", scale="tai")
    )
    if existing is not None and len(existing):
        mine = existing[(existing["visit"] == visit) & (existing["detector"] == detector)]
        if len(mine):
            objects = apdb.getDiaObjects(region)
            objects = objects[objects["diaObjectId"].isin(mine["diaObjectId"])]
            return mine.reset_index(drop=True), objects.reset_index(drop=True), False
    sources = _source_frame(dia, visit, detector, band, mjd, Time.now().tai.mjd)
    objects = apdb.getDiaObjects(region)
    i_src, i_obj, _ = match_sky(
        sources["ra"].to_numpy(),
        sources["dec"].to_numpy(),
        objects["ra"].to_numpy() if len(objects) else np.zeros(0),
        objects["dec"].to_numpy() if len(objects) else np.zeros(0),
        radius_arcsec,
    )
    # One source per object per visit: the closest wins, the others found new objects.
    object_ids = np.zeros(len(sources), dtype=np.int64)
    taken: set[int] = set()
    updated = []
    for s, o in zip(i_src, i_obj, strict=True):
        oid = int(objects["diaObjectId"].iloc[o])
        if oid in taken:
            continue
        taken.add(oid)
        object_ids[s] = oid
        updated.append(_update_object(objects.iloc[o], sources.iloc[s], band, oid))
    new = np.flatnonzero(object_ids == 0)
    object_ids[new] = sources["diaSourceId"].to_numpy()[new]  # first source id names the object
    source_ids = sources["diaSourceId"].to_numpy()
    # Row Series of numeric frames are float64: pass the 64-bit ids separately.
    created = [_new_object(sources.iloc[s], band, int(source_ids[s])) for s in new]
    sources["diaObjectId"] = object_ids
    out_objects = pd.DataFrame(updated + created)
    if len(out_objects) == 0:
        out_objects = _empty_objects()
    apdb.store(visit_time, out_objects, sources)
    return sources, out_objects, True


def _empty_objects() -> pd.DataFrame:
    cols = {"diaObjectId": np.int64, "ra": np.float64, "dec": np.float64, "nDiaSources": np.int32}
    cols.update({f"{b}_psfFluxNdata": np.int32 for b in BANDS})
    return pd.DataFrame({k: pd.Series(dtype=v) for k, v in cols.items()})


def _new_object(source: pd.Series, band: str, object_id: int) -> dict:
    record = {
        "diaObjectId": object_id,
        "ra": float(source["ra"]),
        "dec": float(source["dec"]),
        "nDiaSources": 1,
        "firstDiaSourceMjdTai": float(source["midpointMjdTai"]),
        "lastDiaSourceMjdTai": float(source["midpointMjdTai"]),
    }
    for b in BANDS:
        record[f"{b}_psfFluxNdata"] = 1 if b == band else 0
    record[f"{band}_psfFluxMean"] = float(source["psfFlux"])
    record[f"{band}_psfFluxMeanErr"] = float(source["psfFluxErr"])
    return record


def _update_object(obj: pd.Series, source: pd.Series, band: str, object_id: int) -> dict:
    n = int(obj["nDiaSources"])
    record = {
        "diaObjectId": object_id,
        "ra": (float(obj["ra"]) * n + float(source["ra"])) / (n + 1),
        "dec": (float(obj["dec"]) * n + float(source["dec"])) / (n + 1),
        "nDiaSources": n + 1,
        "firstDiaSourceMjdTai": float(obj["firstDiaSourceMjdTai"]),
        "lastDiaSourceMjdTai": float(source["midpointMjdTai"]),
    }
    for b in BANDS:
        nb = obj.get(f"{b}_psfFluxNdata")
        nb = 0 if pd.isna(nb) else int(nb)
        record[f"{b}_psfFluxNdata"] = nb + (1 if b == band else 0)
        mean = obj.get(f"{b}_psfFluxMean")
        if b == band:
            prev = 0.0 if mean is None or pd.isna(mean) else float(mean)
            record[f"{b}_psfFluxMean"] = (prev * nb + float(source["psfFlux"])) / (nb + 1)
        elif mean is not None and not pd.isna(mean):
            record[f"{b}_psfFluxMean"] = float(mean)
    return record
