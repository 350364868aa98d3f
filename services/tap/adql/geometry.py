"""ADQL geometry (POINT, CIRCLE, BOX, POLYGON, CONTAINS, INTERSECTS, DISTANCE, AREA, ...) as
plain SQL arithmetic that both backends run.

Shapes are parsed into small Python objects whose coordinates are SQL expressions; predicates
become spherical trigonometry. A cone with a constant centre also gets a declination (and, away
from the poles, right ascension) range, so DuckDB's zone maps and PostgreSQL's B-tree / q3c
indexes prune instead of scanning (see :class:`GeometryStyle`). Polygons must have constant
vertices and be convex (as in pgSphere); a point is inside when it is on the inner side of every
edge's great circle.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from sciplat.services.tap.adql.errors import AdqlError

__all__ = ["GEOMETRY_FUNCTIONS", "GeometryStyle", "Point", "rewrite_geometry"]

GEOMETRY_FUNCTIONS = frozenset(
    {
        "POINT",
        "CIRCLE",
        "BOX",
        "POLYGON",
        "CONTAINS",
        "INTERSECTS",
        "DISTANCE",
        "AREA",
        "CENTROID",
        "COORD1",
        "COORD2",
        "COORDSYS",
    }
)


@dataclass(frozen=True)
class GeometryStyle:
    """How the target database spells what the generic SQL cannot."""

    #: Build an array value from expressions (point/circle/polygon in a SELECT list).
    array: Callable[[list[exp.Expr]], exp.Expr]
    #: Optional index-aware cone predicate: (ra, dec, ra0, dec0, r) -> predicate or None.
    cone: Callable[[exp.Expr, exp.Expr, exp.Expr, exp.Expr, exp.Expr], exp.Expr | None] | None = (
        None
    )


@dataclass
class Point:
    ra: exp.Expr
    dec: exp.Expr


@dataclass
class Circle:
    center: Point
    radius: exp.Expr


@dataclass
class Polygon:
    vertices: list[tuple[float, float]]


Shape = Point | Circle | Polygon


def _num(value: float) -> exp.Expr:
    node = exp.Literal.number(repr(float(value)))
    return exp.Neg(this=exp.Literal.number(repr(-float(value)))) if value < 0 else node


@functools.lru_cache(maxsize=64)
def _parsed(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql)


def _template(sql: str, **args: exp.Expr) -> exp.Expr:
    """*sql* (parsed once) with its bare columns replaced by copies of *args*."""
    tree = _parsed(sql).copy()
    for column in list(tree.find_all(exp.Column)):
        if not column.table and column.name in args:
            column.replace(exp.Paren(this=args[column.name].copy()))
    return tree


def _constant(node: exp.Expr, what: str) -> float:
    """The value of a numeric constant expression, or an AdqlError naming *what*."""
    inner = node
    sign = 1.0
    while isinstance(inner, exp.Paren | exp.Neg):
        if isinstance(inner, exp.Neg):
            sign = -sign
        inner = inner.this
    if isinstance(inner, exp.Literal) and not inner.is_string:
        return sign * float(inner.this)
    raise AdqlError(f"{what} must be a numeric constant here", node=node)


def distance_expr(p1: Point, p2: Point) -> exp.Expr:
    """Great-circle distance in degrees (haversine, stable at small separations)."""
    return _template(
        "DEGREES(2 * ASIN(LEAST(1.0, SQRT(POWER(SIN(RADIANS(d2 - d1) / 2), 2) + "
        "COS(RADIANS(d1)) * COS(RADIANS(d2)) * POWER(SIN(RADIANS(a2 - a1) / 2), 2)))))",
        a1=p1.ra,
        d1=p1.dec,
        a2=p2.ra,
        d2=p2.dec,
    )


def _unit_vector(ra: float, dec: float) -> tuple[float, float, float]:
    a, d = math.radians(ra), math.radians(dec)
    return (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))


def _cross(u: tuple[float, ...], v: tuple[float, ...]) -> tuple[float, float, float]:
    return (u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0])


def _dot(u: tuple[float, ...], v: tuple[float, ...]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def _edge_normals(vertices: list[tuple[float, float]]) -> list[tuple[float, float, float]]:
    """Inward normals of a convex spherical polygon's edges (orientation-independent)."""
    vectors = [_unit_vector(*v) for v in vertices]
    n = len(vectors)
    normals = [_cross(vectors[i], vectors[(i + 1) % n]) for i in range(n)]
    centre = tuple(sum(v[k] for v in vectors) for k in range(3))
    if _dot(normals[0], centre) < 0:
        normals = [(-a, -b, -c) for a, b, c in normals]
    for normal in normals:
        if _dot(normal, centre) < 0:
            raise AdqlError("POLYGON must be convex (its edges must all turn the same way)")
    return normals


def _polygon_area(vertices: list[tuple[float, float]]) -> float:
    """Area in square degrees of a convex spherical polygon (fan of triangles)."""
    vectors = [_unit_vector(*v) for v in vertices]
    total = 0.0
    a = vectors[0]
    for b, c in itertools.pairwise(vectors):
        numerator = abs(_dot(a, _cross(b, c)))
        denominator = 1 + _dot(a, b) + _dot(b, c) + _dot(c, a)
        total += 2 * math.atan2(numerator, denominator)
    return total * (180 / math.pi) ** 2


def _check_frame(args: list[exp.Expr], count: int, name: str) -> list[exp.Expr]:
    """Drop ADQL's optional leading coordinate-system string after checking it."""
    if len(args) == count + 1:
        frame = args[0]
        if not (isinstance(frame, exp.Literal) and frame.is_string):
            raise AdqlError(
                f"{name}: the first argument must be a coordinate system string", node=frame
            )
        system = frame.this.strip().upper()
        if system and not system.startswith(("ICRS", "UNKNOWN")):
            raise AdqlError(
                f"{name}: coordinate system {frame.this!r} is not supported (use 'ICRS')",
                node=frame,
            )
        return args[1:]
    if len(args) != count:
        raise AdqlError(f"{name} takes {count} coordinates (after an optional frame)")
    return args


def _func_name(node: exp.Expr) -> str | None:
    if isinstance(node, exp.Anonymous):
        return str(node.this).upper()
    if isinstance(node, exp.Contains):
        return "CONTAINS"
    return None


def _args(node: exp.Expr) -> list[exp.Expr]:
    if isinstance(node, exp.Contains):
        return [node.this, node.expression]
    return list(node.expressions)


def _shape(node: exp.Expr) -> Shape:
    """A geometry value from its ADQL constructor."""
    while isinstance(node, exp.Paren):
        node = node.this
    name = _func_name(node)
    args = _args(node) if name else []
    if name == "POINT":
        ra, dec = _check_frame(args, 2, "POINT")
        return Point(ra, dec)
    if name == "CIRCLE":
        if len(args) in (2, 3) and _is_point(args[-2]):
            if len(args) == 3:
                _check_frame(args, 2, "CIRCLE")
            return Circle(_point(args[-2]), args[-1])
        ra, dec, radius = _check_frame(args, 3, "CIRCLE")
        return Circle(Point(ra, dec), radius)
    if name == "BOX":
        ra, dec, width, height = (
            _constant(a, "BOX coordinates") for a in _check_frame(args, 4, "BOX")
        )
        half_w = width / 2 / max(math.cos(math.radians(dec)), 1e-9)
        half_h = height / 2
        return Polygon(
            [
                (ra - half_w, dec - half_h),
                (ra + half_w, dec - half_h),
                (ra + half_w, dec + half_h),
                (ra - half_w, dec + half_h),
            ]
        )
    if name == "POLYGON":
        if args and isinstance(args[0], exp.Literal) and args[0].is_string:
            _check_frame(args[:1] + args[1:3], 2, "POLYGON")
            args = args[1:]
        if all(_is_point(a) for a in args):
            points = [_point(a) for a in args]
            coords = [
                (_constant(p.ra, "POLYGON vertices"), _constant(p.dec, "POLYGON vertices"))
                for p in points
            ]
        else:
            if len(args) % 2:
                raise AdqlError("POLYGON needs pairs of coordinates")
            values = [_constant(a, "POLYGON vertices") for a in args]
            coords = list(zip(values[::2], values[1::2], strict=True))
        if len(coords) < 3:
            raise AdqlError("POLYGON needs at least 3 vertices")
        return Polygon(coords)
    if name == "CENTROID":
        if len(args) != 1:
            raise AdqlError("CENTROID takes one geometry")
        shape = _shape(args[0])
        if isinstance(shape, Circle):
            return shape.center
        if isinstance(shape, Point):
            return shape
        vec = [sum(_unit_vector(*v)[k] for v in shape.vertices) for k in range(3)]
        ra = math.degrees(math.atan2(vec[1], vec[0])) % 360
        dec = math.degrees(math.atan2(vec[2], math.hypot(vec[0], vec[1])))
        return Point(_num(ra), _num(dec))
    if isinstance(node, exp.Column):
        raise AdqlError(
            f"column {node.name!r} is not a geometry this service can evaluate; "
            "use POINT(ra, dec) with its coordinate columns",
            node=node,
        )
    raise AdqlError("expected a geometry (POINT, CIRCLE, BOX or POLYGON)", node=node)


def _is_point(node: exp.Expr) -> bool:
    return _func_name(node) in ("POINT", "CENTROID")


def _point(node: exp.Expr) -> Point:
    shape = _shape(node)
    if not isinstance(shape, Point):
        raise AdqlError("expected a POINT", node=node)
    return shape


def _cone(point: Point, circle: Circle, style: GeometryStyle) -> exp.Expr:
    """Point-in-circle, with a range prefilter the database can prune on."""
    exact = exp.LTE(this=distance_expr(point, circle.center), expression=circle.radius.copy())
    if style.cone is not None:
        indexed = style.cone(
            point.ra, point.dec, circle.center.ra, circle.center.dec, circle.radius
        )
        if indexed is not None:
            return exp.Paren(this=exp.and_(indexed, exact))
    dec_range = _template(
        "d BETWEEN d0 - r AND d0 + r", d=point.dec, d0=circle.center.dec, r=circle.radius
    )
    terms: list[exp.Expr] = [dec_range]
    try:
        ra0 = _constant(circle.center.ra, "")
        dec0 = _constant(circle.center.dec, "")
        radius = _constant(circle.radius, "")
    except AdqlError:
        ra0 = dec0 = radius = None  # type: ignore[assignment]
    if ra0 is not None and abs(dec0) + radius < 89.0:
        half = radius / math.cos(math.radians(abs(dec0) + radius))
        if half < 180:
            lo, hi = (ra0 - half) % 360, (ra0 + half) % 360
            ra = point.ra
            if lo <= hi:
                terms.append(exp.Between(this=ra.copy(), low=_num(lo), high=_num(hi)))
            else:
                terms.append(
                    exp.Paren(
                        this=exp.or_(
                            exp.GTE(this=ra.copy(), expression=_num(lo)),
                            exp.LTE(this=ra.copy(), expression=_num(hi)),
                        )
                    )
                )
    terms.append(exact)
    return exp.Paren(this=exp.and_(*terms))


def _in_polygon(point: Point, polygon: Polygon) -> exp.Expr:
    normals = _edge_normals(polygon.vertices)
    x = _template("COS(RADIANS(d)) * COS(RADIANS(a))", a=point.ra, d=point.dec)
    y = _template("COS(RADIANS(d)) * SIN(RADIANS(a))", a=point.ra, d=point.dec)
    z = _template("SIN(RADIANS(d))", d=point.dec)
    decs = [v[1] for v in polygon.vertices]
    # Great-circle edges bulge poleward of their vertices; sample them for the dec range.
    samples = []
    vectors = [_unit_vector(*v) for v in polygon.vertices]
    for i, u in enumerate(vectors):
        v = vectors[(i + 1) % len(vectors)]
        for t in (0.25, 0.5, 0.75):
            w = [u[k] * (1 - t) + v[k] * t for k in range(3)]
            samples.append(math.degrees(math.atan2(w[2], math.hypot(w[0], w[1]))))
    lo = min(decs + samples) - 0.5
    hi = max(decs + samples) + 0.5
    terms: list[exp.Expr] = [exp.Between(this=point.dec.copy(), low=_num(lo), high=_num(hi))]
    for nx, ny, nz in normals:
        side = exp.Add(
            this=exp.Add(
                this=exp.Mul(this=_num(nx), expression=x.copy()),
                expression=exp.Mul(this=_num(ny), expression=y.copy()),
            ),
            expression=exp.Mul(this=_num(nz), expression=z.copy()),
        )
        terms.append(exp.GTE(this=side, expression=_num(-1e-12)))
    return exp.Paren(this=exp.and_(*terms))


def _contains(inner: Shape, outer: Shape, style: GeometryStyle) -> exp.Expr:
    if isinstance(inner, Point) and isinstance(outer, Circle):
        return _cone(inner, outer, style)
    if isinstance(inner, Point) and isinstance(outer, Polygon):
        return _in_polygon(inner, outer)
    if isinstance(inner, Circle) and isinstance(outer, Circle):
        return exp.LTE(
            this=exp.Add(this=distance_expr(inner.center, outer.center), expression=inner.radius),
            expression=outer.radius.copy(),
        )
    if isinstance(inner, Point) and isinstance(outer, Point):
        return exp.and_(
            exp.EQ(this=inner.ra.copy(), expression=outer.ra.copy()),
            exp.EQ(this=inner.dec.copy(), expression=outer.dec.copy()),
        )
    if isinstance(inner, Polygon) and isinstance(outer, Circle | Polygon):
        return exp.and_(
            *(_contains(Point(_num(a), _num(d)), outer, style) for a, d in inner.vertices)
        )
    raise AdqlError(
        f"CONTAINS({type(inner).__name__.upper()}, {type(outer).__name__.upper()}) is not supported"
    )


def _intersects(a: Shape, b: Shape, style: GeometryStyle) -> exp.Expr:
    if isinstance(a, Point):
        return _contains(a, b, style)
    if isinstance(b, Point):
        return _contains(b, a, style)
    if isinstance(a, Circle) and isinstance(b, Circle):
        return exp.LTE(
            this=distance_expr(a.center, b.center),
            expression=exp.Add(this=a.radius.copy(), expression=b.radius.copy()),
        )
    raise AdqlError(
        f"INTERSECTS({type(a).__name__.upper()}, {type(b).__name__.upper()}) is not supported"
    )


def _predicate(node: exp.Expr, style: GeometryStyle) -> exp.Expr:
    name = _func_name(node)
    args = _args(node)
    if len(args) != 2:
        raise AdqlError(f"{name} takes two geometries", node=node)
    first, second = _shape(args[0]), _shape(args[1])
    if name == "CONTAINS":
        return _contains(first, second, style)
    return _intersects(first, second, style)


def _value(node: exp.Expr, style: GeometryStyle) -> exp.Expr | None:
    """The SQL for a geometry function used as a value; None if *node* is not one."""
    name = _func_name(node)
    if name not in GEOMETRY_FUNCTIONS:
        return None
    args = _args(node)
    if name in ("CONTAINS", "INTERSECTS"):
        return exp.Case(
            ifs=[exp.If(this=_predicate(node, style), true=exp.Literal.number(1))]
        ).else_(exp.Literal.number(0))
    if name == "DISTANCE":
        if len(args) == 4:
            return distance_expr(Point(args[0], args[1]), Point(args[2], args[3]))
        if len(args) != 2:
            raise AdqlError("DISTANCE takes two POINTs or four coordinates", node=node)
        return distance_expr(_point(args[0]), _point(args[1]))
    if name in ("COORD1", "COORD2"):
        if len(args) != 1:
            raise AdqlError(f"{name} takes one POINT", node=node)
        point = _point(args[0])
        return (point.ra if name == "COORD1" else point.dec).copy()
    if name == "COORDSYS":
        return exp.Literal.string("ICRS")
    if name == "AREA":
        if len(args) != 1:
            raise AdqlError("AREA takes one geometry", node=node)
        shape = _shape(args[0])
        if isinstance(shape, Circle):
            return _template(
                "2 * PI() * (1 - COS(RADIANS(r))) * POWER(180 / PI(), 2)", r=shape.radius
            )
        if isinstance(shape, Polygon):
            _edge_normals(shape.vertices)
            return _num(_polygon_area(shape.vertices))
        return exp.Literal.number(0)
    shape = _shape(node)
    if isinstance(shape, Point):
        return style.array([shape.ra.copy(), shape.dec.copy()])
    if isinstance(shape, Circle):
        return style.array([shape.center.ra.copy(), shape.center.dec.copy(), shape.radius.copy()])
    return style.array([_num(c) for vertex in shape.vertices for c in vertex])


def geometry_xtype(node: exp.Expr) -> str | None:
    """The DALI xtype of a projected geometry constructor (point/circle/polygon), else None."""
    while isinstance(node, exp.Paren):
        node = node.this
    name = _func_name(node)
    if name in ("POINT", "CENTROID"):
        return "point"
    if name == "CIRCLE":
        return "circle"
    if name in ("POLYGON", "BOX"):
        return "polygon"
    return None


def rewrite_geometry(tree: exp.Expr, style: GeometryStyle) -> exp.Expr:
    """Replace every ADQL geometry construct in *tree* by backend SQL."""

    def visit(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.EQ | exp.NEQ):
            left, right = node.this, node.expression
            if _func_name(right) in ("CONTAINS", "INTERSECTS"):
                left, right = right, left
            if _func_name(left) in ("CONTAINS", "INTERSECTS") and isinstance(right, exp.Literal):
                if right.this not in ("0", "1") or right.is_string:
                    raise AdqlError(f"{_func_name(left)} is compared with 0 or 1", node=right)
                predicate = _predicate(left, style)
                wanted = (right.this == "1") == isinstance(node, exp.EQ)
                return predicate if wanted else exp.Not(this=exp.Paren(this=predicate))
            return node
        replacement = _value(node, style)
        return replacement if replacement is not None else node

    return tree.transform(visit, copy=False)
