"""Plots from a cached result: points for small N (drawn in the browser, so rows can be picked),
a datashader raster for large N (a million points in well under two seconds), histograms.

Axes are a column or a difference of two columns (``g_psfMag - r_psfMag`` for a
colour-magnitude diagram)."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pyarrow as pa

from sciplat.services.common.errors import UsageError

__all__ = [
    "POINTS_LIMIT",
    "axis_columns",
    "evaluate",
    "finite_range",
    "histogram",
    "raster",
    "sql_expression",
]

#: Up to this many points are sent to the browser as points; more are rasterised.
POINTS_LIMIT = 20_000
_DIFF = re.compile(r"^\s*(.+?)\s+-\s+(.+?)\s*$")


def axis_columns(expr: str) -> list[str]:
    """The columns an axis expression uses: ``col`` or ``col1 - col2``."""
    expr = (expr or "").strip()
    if not expr:
        raise UsageError("An axis needs a column")
    found = _DIFF.match(expr)
    return [found[1], found[2]] if found else [expr]


def sql_expression(expr: str, known: set[str]) -> str:
    """The SQL of an axis expression over the columns *known* (names are checked and quoted,
    so nothing else reaches the database)."""
    cols = axis_columns(expr)
    for name in cols:
        if name not in known:
            raise UsageError(f"No column {name!r} in this result")
    quoted = ['"' + name.replace('"', '""') + '"' for name in cols]
    return quoted[0] if len(quoted) == 1 else f"({quoted[0]} - {quoted[1]})"


def evaluate(table: pa.Table, expr: str) -> np.ndarray:
    cols = axis_columns(expr)

    def values(name: str) -> np.ndarray:
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise UsageError(f"Column {name!r} is not numeric ({column.type})")
        return column.to_numpy(zero_copy_only=False).astype("f8")

    out = values(cols[0])
    if len(cols) == 2:
        out = out - values(cols[1])
    return out


def finite_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise UsageError("No finite values to plot")
    lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.02
    return lo - pad, hi + pad


def ranges(x: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    return {"x_range": list(finite_range(x)), "y_range": list(finite_range(y))}


def raster(
    x: np.ndarray, y: np.ndarray, *, width: int, height: int, x_range=None, y_range=None
) -> tuple[bytes, dict[str, Any]]:
    """A datashader density image of the points (PNG) and its axis ranges."""
    import datashader as ds
    import datashader.transfer_functions as tf
    import pandas as pd

    if not (50 <= width <= 4000 and 50 <= height <= 4000):
        raise UsageError("width and height must be from 50 to 4000 pixels")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    xr = tuple(x_range) if x_range else finite_range(x)
    yr = tuple(y_range) if y_range else finite_range(y)
    canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=xr, y_range=yr)
    agg = canvas.points(pd.DataFrame({"x": x, "y": y}), "x", "y", agg=ds.count())
    image = tf.shade(agg, cmap=["#c6dbef", "#08306b"], how="eq_hist")
    out = io.BytesIO()
    image.to_pil().save(out, format="PNG")
    return out.getvalue(), {"x_range": list(xr), "y_range": list(yr), "points": int(ok.sum())}


def histogram(values: np.ndarray, bins: int = 50) -> dict[str, Any]:
    if not 1 <= bins <= 1000:
        raise UsageError("bins must be from 1 to 1000")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise UsageError("No finite values to plot")
    counts, edges = np.histogram(finite, bins=bins)
    return {"counts": counts.tolist(), "edges": edges.tolist(), "n": int(finite.size)}
