"""Parameter parsing of SIA/SODA: regions, intervals, and the errors bad input gets."""

from __future__ import annotations

import lsst.sphgeom as sg
import pytest

from sciplat.services.common.errors import UsageError
from sciplat.services.common.params import DaliParams
from sciplat.services.images.intervals import parse_band, parse_interval, parse_time
from sciplat.services.images.regions import parse_circle, parse_polygon, parse_pos
from sciplat.services.images.sia import parse_sia


def _box(ra: float, dec: float, half: float = 0.01) -> sg.ConvexPolygon:
    return sg.ConvexPolygon.convexHull(
        [
            sg.UnitVector3d(sg.LonLat.fromDegrees(ra + dx, dec + dy))
            for dx, dy in ((-half, -half), (half, -half), (half, half), (-half, half))
        ]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CIRCLE 400 10 1", "RA 400 is outside [0, 360]"),
        ("CIRCLE 10 -91 1", "Dec -91 is outside [-90, 90]"),
        ("CIRCLE 10 10 0", "radius 0 must be in (0, 180]"),
        ("CIRCLE 10 10", "needs 3 numbers"),
        ("CIRCLE 10 ten 1", "'ten' is not a number"),
        ("POLYGON 10 10 11 10", "at least 3 vertices"),
        ("POLYGON 10 10 11 10 11", "pairs of numbers"),
        ("POLYGON 10 10 11 11 11 10 10 11", "self-intersecting"),
        ("POLYGON 10 0 11 0 12 0", "no area"),
        ("POLYGON 10 10 10 10 11 11", "coincide"),
        ("RANGE 10 20 30 20", "greater than dec2"),
        ("BOX 10 10 1 1", "CIRCLE, RANGE or POLYGON"),
    ],
)
def test_bad_positions_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_pos(text)
    assert message in info.value.message


def test_circle_and_range_overlap_tests() -> None:
    circle = parse_circle("62 -37 0.1")
    assert circle.overlaps(_box(62.05, -37.0))
    assert not circle.overlaps(_box(63.0, -37.0))
    wrap = parse_pos("RANGE 359 1 -1 1")  # crosses RA 0
    assert wrap.overlaps(_box(0.0, 0.0))
    assert not wrap.overlaps(_box(180.0, 0.0))
    everything = parse_pos("RANGE -Inf +Inf -Inf +Inf")
    assert everything.overlaps(_box(123.0, -80.0))


def test_non_convex_polygon_is_exact() -> None:
    # An L shape: the notch at the upper right is outside it, though inside its convex hull.
    l_shape = parse_polygon("10 10 12 10 12 11 11 11 11 12 10 12")
    assert l_shape.kind == "polygon"
    assert l_shape.overlaps(_box(10.5, 11.5, 0.1))
    assert l_shape.overlaps(_box(11.5, 10.5, 0.1))
    assert not l_shape.overlaps(_box(11.6, 11.6, 0.1))
    # Either winding describes the same (smaller) region.
    reverse = parse_polygon("10 12 11 12 11 11 12 11 12 10 10 10")
    assert not reverse.overlaps(_box(11.6, 11.6, 0.1))
    assert reverse.contains(10.5, 10.5)


def test_intervals_and_units() -> None:
    assert parse_interval("FOV", "0.1 0.5") == (0.1, 0.5)
    assert parse_interval("FOV", "0.2") == (0.2, 0.2)
    assert parse_band("-Inf 6e-7") == (float("-inf"), 6e-7)
    with pytest.raises(UsageError, match="metres"):
        parse_band("500 600")  # nanometres
    with pytest.raises(UsageError, match="greater than"):
        parse_band("6e-7 5e-7")
    with pytest.raises(UsageError, match="MJD"):
        parse_time("2460800.5 2460801.5")  # Julian dates
    with pytest.raises(UsageError, match="NaN"):
        parse_interval("EXPTIME", "NaN 1")


def test_sia_parameters() -> None:
    params = DaliParams(
        [
            ("pos", "CIRCLE 62 -37 0.1"),
            ("POS", "RANGE 61 63 -38 -36"),
            ("band", "5e-7 6e-7"),
            ("CALIB", "2"),
            ("collection", "SimCam/runs/dp"),
            ("maxrec", "5"),
        ]
    )
    query = parse_sia(params)
    assert [p.kind for p in query.pos] == ["circle", "range"]
    assert query.band == [(5e-7, 6e-7)]
    assert query.calib == [2]
    assert query.exact == {"obs_collection": ["SimCam/runs/dp"]}
    assert query.maxrec == 5
    for bad, message in [
        (("CALIB", "7"), "CALIB must be"),
        (("MAXREC", "-1"), "MAXREC must not be negative"),
        (("MAXREC", "lots"), "MAXREC must be an integer"),
        (("POL", "Z"), "not a polarization state"),
        (("RESPONSEFORMAT", "text/csv"), "not supported"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_sia(DaliParams([bad]))
