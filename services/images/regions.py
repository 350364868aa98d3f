"""Sky regions of the DALI/SIA/SODA parameters, parsed strictly and turned into sphgeom regions.

``POS=CIRCLE ra dec r``, ``POS=RANGE ra1 ra2 dec1 dec2``, ``POS=POLYGON ra1 dec1 ...`` (SIA 2.0),
and SODA's ``CIRCLE``/``POLYGON`` (the same without the keyword). Every value is checked
(ranges, finite numbers, at least three distinct vertices, no self-intersecting edges); a
problem raises :class:`UsageError` naming the parameter and the bad value. Non-convex polygons
are split into triangles (ear clipping in the gnomonic projection, where great circles are
straight lines), so overlap tests stay exact.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import lsst.sphgeom as sg
import numpy as np

from sciplat.services.common.errors import UsageError

__all__ = [
    "SkyRegion",
    "parse_circle",
    "parse_polygon",
    "parse_pos",
    "parse_s_region",
]

_MAX_VERTICES = 200


@dataclass(frozen=True)
class SkyRegion:
    """A parsed region: its kind, the numbers given, and the sphgeom region they describe."""

    kind: str  # "circle" | "range" | "polygon"
    values: tuple[float, ...]
    region: sg.Region

    def overlaps(self, other: sg.Region) -> bool:
        """Whether the region overlaps *other* (an unknown answer from sphgeom counts as yes)."""
        answer = self.region.overlaps(other)
        return answer is not False

    def contains(self, ra: float, dec: float) -> bool:
        return bool(self.region.contains(_vec(ra, dec)))

    def boundary(self, samples: int = 64) -> np.ndarray:
        """Points (ra, dec in degrees, shape (n, 2)) on the region's edge, for pixel bounding
        boxes; dense enough that the box of the points is the box of the region."""
        if self.kind == "circle":
            ra, dec, radius = self.values
            theta = np.linspace(0, 2 * np.pi, samples, endpoint=False)
            return _offset_points(ra, dec, radius, theta)
        if self.kind == "range":
            ra1, ra2, dec1, dec2 = self.values
            if ra1 > ra2:  # crosses RA 0
                ra2 += 360.0
            t = np.linspace(0, 1, samples // 4 + 1)
            ras = np.concatenate([ra1 + (ra2 - ra1) * t, np.full_like(t, ra2)])
            ras = np.concatenate([ras, ra2 - (ra2 - ra1) * t, np.full_like(t, ra1)])
            decs = np.concatenate([np.full_like(t, dec1), dec1 + (dec2 - dec1) * t])
            decs = np.concatenate([decs, np.full_like(t, dec2), dec2 - (dec2 - dec1) * t])
            return np.column_stack([ras % 360.0, decs])
        vertices = np.array(self.values).reshape(-1, 2)
        points = []
        for i in range(len(vertices)):
            a, b = _vec(*vertices[i]), _vec(*vertices[(i + 1) % len(vertices)])
            for t in np.linspace(0, 1, 9)[:-1]:
                v = sg.UnitVector3d(
                    a.x() * (1 - t) + b.x() * t,
                    a.y() * (1 - t) + b.y() * t,
                    a.z() * (1 - t) + b.z() * t,
                )
                lonlat = sg.LonLat(v)
                points.append((lonlat.getLon().asDegrees(), lonlat.getLat().asDegrees()))
        return np.array(points)

    @property
    def bounding_circle(self) -> tuple[float, float, float]:
        """(ra, dec, radius) in degrees of a circle enclosing the region."""
        circle = self.region.getBoundingCircle()
        centre = sg.LonLat(circle.getCenter())
        return (
            centre.getLon().asDegrees(),
            centre.getLat().asDegrees(),
            circle.getOpeningAngle().asDegrees(),
        )


def _vec(ra: float, dec: float) -> sg.UnitVector3d:
    return sg.UnitVector3d(sg.LonLat.fromDegrees(float(ra), float(dec)))


def _offset_points(ra: float, dec: float, radius: float, theta: np.ndarray) -> np.ndarray:
    """Points at angular distance *radius* from (ra, dec) at position angles *theta*."""
    ra0, dec0, r = map(math.radians, (ra, dec, radius))
    sin_dec = math.sin(dec0) * np.cos(r) + math.cos(dec0) * np.sin(r) * np.cos(theta)
    dec1 = np.arcsin(np.clip(sin_dec, -1, 1))
    ra1 = ra0 + np.arctan2(
        np.sin(theta) * math.sin(r) * math.cos(dec0), math.cos(r) - math.sin(dec0) * sin_dec
    )
    return np.column_stack([np.degrees(ra1) % 360.0, np.degrees(dec1)])


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _numbers(param: str, text: str) -> list[float]:
    values = []
    for token in text.split():
        if not _NUMBER.match(token):
            raise UsageError(f"{param}: {token!r} is not a number (in {text!r})")
        values.append(float(token))
    return values


def _check_ra(param: str, ra: float) -> None:
    if not 0.0 <= ra <= 360.0:
        raise UsageError(f"{param}: RA {ra:g} is outside [0, 360] degrees")


def _check_dec(param: str, dec: float) -> None:
    if not -90.0 <= dec <= 90.0:
        raise UsageError(f"{param}: Dec {dec:g} is outside [-90, 90] degrees")


def parse_circle(text: str, *, param: str = "CIRCLE") -> SkyRegion:
    """``ra dec radius`` in degrees."""
    values = _numbers(param, text)
    if len(values) != 3:
        raise UsageError(f"{param} needs 3 numbers (ra dec radius), got {len(values)}: {text!r}")
    ra, dec, radius = values
    _check_ra(param, ra)
    _check_dec(param, dec)
    if not 0.0 < radius <= 180.0:
        raise UsageError(f"{param}: radius {radius:g} must be in (0, 180] degrees")
    region = sg.Circle(_vec(ra, dec), sg.Angle.fromDegrees(radius))
    return SkyRegion("circle", (ra, dec, radius), region)


def parse_range(text: str, *, param: str = "RANGE") -> SkyRegion:
    """``ra1 ra2 dec1 dec2`` in degrees (open ends as -Inf/+Inf)."""
    tokens = text.split()
    if len(tokens) != 4:
        raise UsageError(f"{param} needs 4 numbers (ra1 ra2 dec1 dec2), got {len(tokens)}")
    bounds = [(0.0, 360.0), (0.0, 360.0), (-90.0, 90.0), (-90.0, 90.0)]
    values = []
    for i, token in enumerate(tokens):
        low = token.lower()
        if low in ("-inf", "+inf", "inf"):
            values.append(bounds[i][0] if low == "-inf" else bounds[i][1])
        else:
            values.extend(_numbers(param, token))
    ra1, ra2, dec1, dec2 = values
    _check_ra(param, ra1)
    _check_ra(param, ra2)
    _check_dec(param, dec1)
    _check_dec(param, dec2)
    if dec1 > dec2:
        raise UsageError(f"{param}: dec1 {dec1:g} is greater than dec2 {dec2:g}")
    if ra2 - ra1 >= 360.0 or (ra1 == 0.0 and ra2 == 360.0):
        lon = sg.NormalizedAngleInterval.full()
    else:
        lon = sg.NormalizedAngleInterval.fromDegrees(ra1, ra2)
    region = sg.Box(lon, sg.AngleInterval.fromDegrees(dec1, dec2))
    return SkyRegion("range", (ra1, ra2, dec1, dec2), region)


def parse_polygon(text: str, *, param: str = "POLYGON") -> SkyRegion:
    """``ra1 dec1 ra2 dec2 ra3 dec3 ...`` in degrees: a simple polygon of >= 3 vertices."""
    values = _numbers(param, text)
    if len(values) % 2:
        raise UsageError(f"{param} needs pairs of numbers (ra dec), got {len(values)} numbers")
    count = len(values) // 2
    if count < 3:
        raise UsageError(f"{param} needs at least 3 vertices, got {count}")
    if count > _MAX_VERTICES:
        raise UsageError(f"{param} has {count} vertices; at most {_MAX_VERTICES} are accepted")
    vertices = np.array(values).reshape(-1, 2)
    for ra, dec in vertices:
        _check_ra(param, ra)
        _check_dec(param, dec)
    vectors = [_vec(ra, dec) for ra, dec in vertices]
    for i in range(count):
        if _close(vectors[i], vectors[(i + 1) % count]):
            raise UsageError(f"{param}: vertices {i + 1} and {(i + 1) % count + 1} coincide")
    plane = _gnomonic(vectors)
    if plane is None:
        raise UsageError(f"{param}: the polygon is larger than a hemisphere")
    if _self_intersects(plane):
        raise UsageError(f"{param}: the polygon's edges cross each other (self-intersecting)")
    if abs(_signed_area(plane)) < 1e-14:
        raise UsageError(f"{param}: the polygon has no area (its vertices are collinear)")
    if _is_convex(plane):
        region: sg.Region = sg.ConvexPolygon.convexHull(vectors)
    else:
        triangles = _triangulate(plane)
        parts = [sg.ConvexPolygon.convexHull([vectors[i] for i in tri]) for tri in triangles]
        region = sg.UnionRegion(*parts)
    return SkyRegion("polygon", tuple(float(v) for v in values), region)


def parse_pos(text: str) -> SkyRegion:
    """SIA 2.0 ``POS``: ``CIRCLE ...``, ``RANGE ...`` or ``POLYGON ...``."""
    shape, _, rest = text.strip().partition(" ")
    shape = shape.upper()
    if shape == "CIRCLE":
        return parse_circle(rest, param="POS CIRCLE")
    if shape == "RANGE":
        return parse_range(rest, param="POS RANGE")
    if shape == "POLYGON":
        return parse_polygon(rest, param="POS POLYGON")
    raise UsageError(f"POS must start with CIRCLE, RANGE or POLYGON, not {shape!r}")


def parse_s_region(text: str) -> sg.Region | None:
    """An ObsCore ``s_region`` (STC-S ``POLYGON [frame] ra dec ...`` or ``CIRCLE ...``)."""
    tokens = text.split()
    if not tokens:
        return None
    shape = tokens[0].upper()
    numbers = [t for t in tokens[1:] if _NUMBER.match(t)]
    coords = [float(t) for t in numbers]
    if shape == "POLYGON" and len(coords) >= 6:
        pairs = np.array(coords[: len(coords) // 2 * 2]).reshape(-1, 2)
        return sg.ConvexPolygon.convexHull([_vec(ra, dec) for ra, dec in pairs])
    if shape == "CIRCLE" and len(coords) == 3:
        return sg.Circle(_vec(coords[0], coords[1]), sg.Angle.fromDegrees(coords[2]))
    return None


# --- planar geometry in the gnomonic projection ---------------------------------------------


def _close(a: sg.UnitVector3d, b: sg.UnitVector3d) -> bool:
    return (a.x() - b.x()) ** 2 + (a.y() - b.y()) ** 2 + (a.z() - b.z()) ** 2 < 1e-20


def _gnomonic(vectors: list[sg.UnitVector3d]) -> np.ndarray | None:
    """Project onto the plane tangent at the vertices' mean; None if any is >= 90 deg away."""
    pts = np.array([[v.x(), v.y(), v.z()] for v in vectors])
    centre = pts.sum(axis=0)
    norm = np.linalg.norm(centre)
    if norm < 1e-12:
        return None
    centre /= norm
    dots = pts @ centre
    if np.any(dots <= 1e-6):
        return None
    helper = np.array([0.0, 0.0, 1.0]) if abs(centre[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(helper, centre)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(centre, e1)
    projected = pts / dots[:, None]
    return np.column_stack([projected @ e1, projected @ e2])


def _signed_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and d1 * d2 != 0 and d3 * d4 != 0:
        return True
    eps = 1e-15

    def on(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
        return (
            abs(_cross(o, a, b)) < eps
            and min(o[0], a[0]) - eps <= b[0] <= max(o[0], a[0]) + eps
            and min(o[1], a[1]) - eps <= b[1] <= max(o[1], a[1]) + eps
        )

    return on(q1, q2, p1) or on(q1, q2, p2) or on(p1, p2, q1) or on(p1, p2, q2)


def _self_intersects(p: np.ndarray) -> bool:
    n = len(p)
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # adjacent edges share a vertex
            if _segments_cross(p[i], p[(i + 1) % n], p[j], p[(j + 1) % n]):
                return True
    return False


def _is_convex(p: np.ndarray) -> bool:
    n = len(p)
    signs = {
        _cross(p[i], p[(i + 1) % n], p[(i + 2) % n]) > 0
        for i in range(n)
        if abs(_cross(p[i], p[(i + 1) % n], p[(i + 2) % n])) > 1e-18
    }
    return len(signs) <= 1


def _triangulate(p: np.ndarray) -> list[tuple[int, int, int]]:
    """Ear clipping of a simple polygon; returns vertex index triples."""
    order = list(range(len(p)))
    if _signed_area(p) < 0:
        order.reverse()
    triangles = []
    while len(order) > 3:
        for k in range(len(order)):
            i, j, m = order[k - 1], order[k], order[(k + 1) % len(order)]
            if _cross(p[i], p[j], p[m]) <= 0:
                continue  # reflex corner
            inside = any(
                _cross(p[i], p[j], p[q]) >= 0
                and _cross(p[j], p[m], p[q]) >= 0
                and _cross(p[m], p[i], p[q]) >= 0
                for q in order
                if q not in (i, j, m)
            )
            if not inside:
                triangles.append((i, j, m))
                order.pop(k)
                break
        else:  # numerical trouble: fall back to a fan
            break
    triangles.append(tuple(order[:3]))  # type: ignore[arg-type]
    return triangles
