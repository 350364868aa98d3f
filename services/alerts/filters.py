"""User filters over alert fields: ``diaSource.snr > 10 AND diaSource.band == 'r'``.

A filter is a conjunction of comparisons ``path OP value``; ``path`` is a dotted path into the
alert (``diaSource.psfFlux``, ``diaObject.nDiaSources``), ``OP`` one of ``< <= > >= == !=``,
``value`` a number, ``true``/``false`` or a quoted string. Nothing is evaluated as code.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["AlertFilter", "FilterError", "parse_filter"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_TERM = re.compile(
    r"^\s*(?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*"
    r"(?P<op><=|>=|==|!=|<|>)\s*(?P<value>'[^']*'|\"[^\"]*\"|true|false|[-+0-9.eE]+)\s*$"
)
_ROOTS = {"diaSource", "diaObject", "diaSourceId", "observation_reason", "target_name"}


class FilterError(ValueError):
    """The filter text is not valid (the message says where)."""


@dataclass(frozen=True)
class Term:
    path: tuple[str, ...]
    op: str
    value: Any

    def __call__(self, alert: dict[str, Any]) -> bool:
        current: Any = alert
        for part in self.path:
            if not isinstance(current, dict) or current.get(part) is None:
                return False
            current = current[part]
        try:
            return bool(_OPS[self.op](current, self.value))
        except TypeError:
            return False


@dataclass(frozen=True)
class AlertFilter:
    terms: tuple[Term, ...] = ()

    def __call__(self, alert: dict[str, Any]) -> bool:
        return all(term(alert) for term in self.terms)


def _value(text: str) -> Any:
    if text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return float(text)
    except ValueError as exc:
        raise FilterError(f"not a number: {text!r}") from exc


def parse_filter(text: str | None) -> AlertFilter:
    """Parse *text* (empty: every alert passes)."""
    if not text or not text.strip():
        return AlertFilter()
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE):
        match = _TERM.match(part)
        if not match:
            raise FilterError(
                f"cannot parse {part.strip()!r}: expected 'field OP value' with OP one of "
                "< <= > >= == != (terms joined by AND)"
            )
        path = tuple(match["path"].split("."))
        if path[0] not in _ROOTS:
            raise FilterError(
                f"unknown field {match['path']!r}: start with one of {sorted(_ROOTS)}"
            )
        terms.append(Term(path, match["op"], _value(match["value"])))
    return AlertFilter(tuple(terms))
