"""The translator's one error: a usage error that says where in the query the problem is."""

from __future__ import annotations

from sqlglot import exp

from sciplat.services.common.errors import UsageError

__all__ = ["AdqlError"]


class AdqlError(UsageError):
    """Bad ADQL: the message names the problem and, when known, its line and column."""

    def __init__(
        self,
        message: str,
        *,
        node: exp.Expr | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        if node is not None and line is None:
            line, col = _position(node)
        self.line, self.col = line, col
        where = f" (line {line}, column {col})" if line else ""
        super().__init__(f"{message}{where}")


def _position(node: exp.Expr) -> tuple[int | None, int | None]:
    for candidate in (node, *node.find_all(exp.Identifier, exp.Literal)):
        meta = getattr(candidate, "meta", None) or {}
        if "line" in meta:
            return meta["line"], meta.get("col")
    return None, None
