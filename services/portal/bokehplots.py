"""Interactive plots of a result as Bokeh documents built with HoloViews: scatter, colour-magnitude,
histogram and light curve. Up to :data:`~sciplat.services.portal.plots.POINTS_LIMIT` points are
drawn as points (each one selectable); more are rasterised by HoloViews' datashader operation, so
a million points stay fast. The browser embeds the JSON item with BokehJS.

Linked selection lives in the page: every plot has a box-select tool whose final geometry (data
coordinates) the page turns into table filters, a ``highlight`` source the page fills with the
rows selected in the table, and (for points) a ``points`` source whose selection the page sets.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from sciplat.services.common.errors import UsageError
from sciplat.services.portal.plots import POINTS_LIMIT, finite_range, histogram

__all__ = ["KINDS", "PlotSpec", "histogram_item", "lightcurve_item", "scatter_item", "warm_up"]

KINDS = ("scatter", "cmd", "histogram", "lightcurve")
_lock = threading.Lock()  # HoloViews' option store is process-global

#: Events the page listens to (``window.portalPlotEvent(kind, data)``).
_BOX_JS = (
    "if (cb_obj.final && window.portalPlotEvent) window.portalPlotEvent('box', cb_obj.geometry)"
)
_RANGES_JS = (
    "if (window.portalPlotEvent) window.portalPlotEvent('ranges', "
    "{x0: cb_obj.x0, x1: cb_obj.x1, y0: cb_obj.y0, y1: cb_obj.y1})"
)


@dataclass(frozen=True)
class PlotSpec:
    """Axis labels and size of one plot."""

    xlabel: str
    ylabel: str
    width: int = 640
    height: int = 380
    invert_y: bool = False
    title: str = ""

    def __post_init__(self) -> None:
        if not (200 <= self.width <= 3000 and 150 <= self.height <= 3000):
            raise UsageError("width must be from 200 to 3000 and height from 150 to 3000 pixels")


def _hv() -> Any:
    import holoviews as hv
    import holoviews.plotting.bokeh  # registers the bokeh backend

    return hv


def _finish(fig: Any, *, kind: str, renderer: str, n: int, xr: Any, yr: Any) -> dict[str, Any]:
    """Add the highlight layer and the selection/range events; the JSON item and its facts."""
    from bokeh.embed import json_item
    from bokeh.models import ColumnDataSource, CustomJS

    highlight = ColumnDataSource({"x": [], "y": []}, name="highlight")
    fig.scatter(
        "x",
        "y",
        source=highlight,
        size=13,
        marker="circle",
        fill_alpha=0,
        line_color="#e31a1c",
        line_width=2.5,
        name="highlight-glyph",
    )
    fig.js_on_event("selectiongeometry", CustomJS(code=_BOX_JS))
    fig.js_on_event("rangesupdate", CustomJS(code=_RANGES_JS))
    item = json_item(fig)
    return {
        "item": item,
        "kind": kind,
        "renderer": renderer,
        "n": int(n),
        "x_range": [float(xr[0]), float(xr[1])],
        "y_range": [float(yr[0]), float(yr[1])],
    }


def _opts(spec: PlotSpec, **extra: Any) -> dict[str, Any]:
    return {
        "width": spec.width,
        "height": spec.height,
        "tools": ["box_select", "hover"] if extra.pop("hover", False) else ["box_select"],
        "active_tools": ["box_select", "wheel_zoom"],
        "invert_yaxis": spec.invert_y,
        "xlabel": spec.xlabel,
        "ylabel": spec.ylabel,
        "title": spec.title,
        **extra,
    }


def scatter_item(
    x: np.ndarray,
    y: np.ndarray,
    spec: PlotSpec,
    *,
    kind: str = "scatter",
    x_range: list[float] | None = None,
    y_range: list[float] | None = None,
) -> dict[str, Any]:
    """Points (N <= POINTS_LIMIT and no zoom range) or a datashader rasterisation of them."""
    import pandas as pd
    from holoviews.operation.datashader import rasterize

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size == 0:
        raise UsageError("No finite values to plot")
    xr = tuple(x_range) if x_range else finite_range(x)
    yr = tuple(y_range) if y_range else finite_range(y)
    with _lock:
        hv = _hv()
        kdims = [hv.Dimension("x", label=spec.xlabel), hv.Dimension("y", label=spec.ylabel)]
        points = hv.Points(pd.DataFrame({"x": x, "y": y}), kdims=kdims)
        if x.size <= POINTS_LIMIT and not x_range and not y_range:
            element = points.opts(
                **_opts(spec, hover=True),
                size=4,
                color="#08519c",
                alpha=0.65,
                selection_color="#e6550d",
                nonselection_alpha=0.25,
                xlim=xr,
                ylim=yr,
            )
            renderer = "points"
        else:
            element = rasterize(
                points,
                dynamic=False,
                width=min(spec.width, 1200),
                height=min(spec.height, 900),
                x_range=xr,
                y_range=yr,
            ).opts(**_opts(spec), cmap="Blues", cnorm="eq_hist", colorbar=False)
            renderer = "raster"
        fig = hv.render(element, backend="bokeh")
    if renderer == "points":
        from bokeh.models import GlyphRenderer

        glyph = next(r for r in fig.renderers if isinstance(r, GlyphRenderer))
        glyph.data_source.name = "points"
    return _finish(fig, kind=kind, renderer=renderer, n=x.size, xr=xr, yr=yr)


def histogram_item(values: np.ndarray, spec: PlotSpec, bins: int = 50) -> dict[str, Any]:
    """A histogram; box-select along x picks a range."""
    hist = histogram(values, bins)
    edges, counts = np.asarray(hist["edges"]), np.asarray(hist["counts"])
    with _lock:
        hv = _hv()
        element = hv.Histogram(
            (edges, counts), kdims=[hv.Dimension("x", label=spec.xlabel)], vdims=["count"]
        ).opts(**_opts(spec), color="#4a8ac4", line_color="#2b5d8a")
        fig = hv.render(element, backend="bokeh")
    from bokeh.models import BoxSelectTool

    for tool in fig.select(type=BoxSelectTool):
        tool.dimensions = "width"
    yr = (0.0, float(counts.max()) * 1.05 if counts.size else 1.0)
    return _finish(
        fig,
        kind="histogram",
        renderer="histogram",
        n=hist["n"],
        xr=(edges[0], edges[-1]),
        yr=yr,
    )


def lightcurve_item(
    t: np.ndarray, flux: np.ndarray, bands: list[str] | None, spec: PlotSpec
) -> dict[str, Any]:
    """Flux against time, one colour per band (points joined by lines)."""
    import pandas as pd

    ok = np.isfinite(t) & np.isfinite(flux)
    if not ok.any():
        raise UsageError("No finite values to plot")
    frame = pd.DataFrame(
        {"x": t[ok], "y": flux[ok], "band": np.asarray(bands or ["all"] * t.size)[ok]}
    ).sort_values("x")
    palette = {"u": "#56b4e9", "g": "#009e73", "r": "#f0e442", "i": "#e69f00", "z": "#d55e00"}
    palette.update({"y": "#cc79a7", "all": "#08519c"})
    with _lock:
        hv = _hv()
        kdims = [hv.Dimension("x", label=spec.xlabel)]
        vdims = [hv.Dimension("y", label=spec.ylabel)]
        layers = []
        for band, group in frame.groupby("band", sort=True):
            color = palette.get(str(band), "#555555")
            # padding: the first and last points are not cut in half by the frame
            layers.append(hv.Curve(group, kdims, vdims).opts(color=color, alpha=0.5, padding=0.05))
            layers.append(
                hv.Scatter(group, kdims, vdims, label=str(band)).opts(
                    color=color, size=7, tools=["hover", "box_select"], padding=0.05
                )
            )
        element = hv.Overlay(layers).opts(
            **_opts(spec), legend_position="top_right", show_legend=True
        )
        fig = hv.render(element, backend="bokeh")
    xr, yr = finite_range(frame["x"].to_numpy()), finite_range(frame["y"].to_numpy())
    return _finish(fig, kind="lightcurve", renderer="points", n=len(frame), xr=xr, yr=yr)


def warm_up() -> None:
    """Import HoloViews/Bokeh and compile datashader once (several seconds on first use)."""
    values = np.linspace(0.0, 1.0, POINTS_LIMIT + 1)
    scatter_item(values, values, PlotSpec("x", "y", width=200, height=150))
