"""Alert packets in the ``lsst-alert-packet`` Avro schema, with FITS cutouts."""

from __future__ import annotations

import functools
import io
import math
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits

from sciplat.pipelines.butler_io import SimExposure

__all__ = ["alert_schema", "cutout_fits", "make_alerts", "serialize_alerts"]

CUTOUT_SIZE = 31


@functools.cache
def alert_schema() -> Any:
    """The latest alert schema of ``lsst-alert-packet`` (parsed once per process)."""
    from lsst.alert.packet import Schema

    return Schema.from_file()


def cutout_fits(exposure: SimExposure, x: float, y: float, size: int = CUTOUT_SIZE) -> bytes:
    """A small FITS image (with its WCS) around (x, y); zero-padded at the edges."""
    half = size // 2
    ix, iy = round(x), round(y)
    out = np.zeros((size, size), dtype=np.float32)
    y0, x0 = iy - half, ix - half
    ys = slice(max(y0, 0), min(y0 + size, exposure.shape[0]))
    xs = slice(max(x0, 0), min(x0 + size, exposure.shape[1]))
    if ys.start < ys.stop and xs.start < xs.stop:
        out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = exposure.image[ys, xs]
    header = fits.Header()
    if exposure.wcs is not None:
        header.update(_shifted(exposure, x0, y0))
    buffer = io.BytesIO()
    fits.PrimaryHDU(out, header=header).writeto(buffer)
    return buffer.getvalue()


def _shifted(exposure: SimExposure, x0: int, y0: int) -> fits.Header:
    wcs = exposure.wcs.deepcopy()
    wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0])
    return wcs.to_header()


def _clean(record: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """Keep schema fields; numpy scalars -> Python; NaN -> None."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key not in fields:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        if value is pd.NA or value is pd.NaT:
            value = None
        out[key] = value
    return out


def _record_fields(schema: Any, name: str) -> dict[str, Any]:
    for field in schema.definition["fields"]:
        if field["name"] == name:
            t = field["type"]
            if isinstance(t, list):
                t = next(x for x in t if isinstance(x, dict))
            if t.get("type") == "array":
                t = t["items"]
            return {f["name"]: f for f in t["fields"]}
    raise KeyError(name)


def _typed(record: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Cast values to the Avro field types (int/long/float/double/boolean/string)."""
    out = {}
    for key, field in spec.items():
        value = record.get(key)
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        if value is None:
            if "null" in types:
                out[key] = None
                continue
            value = 0
        base = next((t for t in types if t != "null"), "null")
        if base in ("int", "long"):
            value = int(value)
        elif base in ("float", "double"):
            value = float(value)
        elif base == "boolean":
            value = bool(value)
        elif base == "string":
            value = str(value)
        out[key] = value
    return out


def make_alerts(
    sources: pd.DataFrame,
    objects: pd.DataFrame,
    history: pd.DataFrame | None,
    science: SimExposure,
    difference: SimExposure,
    template: SimExposure,
    schema: Any | None = None,
) -> list[dict[str, Any]]:
    """One alert per DIASource: the source, its object, prior sources and three cutouts."""
    schema = schema or alert_schema()
    src_spec = _record_fields(schema, "diaSource")
    obj_spec = _record_fields(schema, "diaObject")
    by_object = objects.set_index("diaObjectId") if len(objects) else None
    alerts = []
    for row in sources.to_dict("records"):
        source = _typed(_clean(row, set(src_spec)), src_spec)
        obj = None
        oid = int(row["diaObjectId"])
        if by_object is not None and oid in by_object.index:
            o = by_object.loc[oid]
            if isinstance(o, pd.DataFrame):
                o = o.iloc[-1]
            orec = {"diaObjectId": oid, **o.to_dict()}
            orec.setdefault("validityStartMjdTai", row["midpointMjdTai"])
            obj = _typed(_clean(orec, set(obj_spec)), obj_spec)
        previous = None
        if history is not None and len(history):
            mine = history[
                (history["diaObjectId"] == oid) & (history["diaSourceId"] != row["diaSourceId"])
            ]
            previous = [_typed(_clean(r, set(src_spec)), src_spec) for r in mine.to_dict("records")]
        x, y = float(row["x"]), float(row["y"])
        alerts.append(
            {
                "diaSourceId": int(row["diaSourceId"]),
                "observation_reason": science.metadata.get("OBSREASN", "science"),
                "target_name": None,
                "diaSource": source,
                "prvDiaSources": previous,
                "prvDiaForcedSources": None,
                "diaObject": obj,
                "ssSource": None,
                "mpc_orbits": None,
                "cutoutDifference": cutout_fits(difference, x, y),
                "cutoutScience": cutout_fits(science, x, y),
                "cutoutTemplate": cutout_fits(template, x, y),
            }
        )
    return alerts


def serialize_alerts(alerts: list[dict[str, Any]], schema: Any | None = None) -> list[bytes]:
    """Validate and serialise (schemaless Avro, as on the Kafka stream)."""
    schema = schema or alert_schema()
    out = []
    for alert in alerts:
        if not schema.validate(alert):
            raise ValueError(f"alert {alert['diaSourceId']} does not validate against the schema")
        out.append(schema.serialize(alert))
    return out
