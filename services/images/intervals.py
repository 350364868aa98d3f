"""DALI numeric intervals (``BAND``, ``TIME``, ``FOV``, ...) and the POL vocabulary."""

from __future__ import annotations

import math

from sciplat.services.common.errors import UsageError

__all__ = ["POL_STATES", "parse_band", "parse_interval", "parse_pol", "parse_time"]

#: Polarization states allowed by SIA 2.0 / ObsCore.
POL_STATES = frozenset(
    "I Q U V RR LL RL LR XX YY XY YX POLI POLA".split()  # noqa: SIM905 - the list as in the spec
)


def _float(param: str, token: str) -> float:
    low = token.lower()
    if low in ("-inf", "+inf", "inf"):
        return -math.inf if low == "-inf" else math.inf
    try:
        value = float(token)
    except ValueError:
        raise UsageError(f"{param}: {token!r} is not a number") from None
    if math.isnan(value):
        raise UsageError(f"{param}: NaN is not allowed")
    return value


def parse_interval(param: str, text: str) -> tuple[float, float]:
    """``lo hi`` (or a single value, meaning lo = hi); open ends as ``-Inf``/``+Inf``."""
    tokens = text.split()
    if len(tokens) not in (1, 2):
        raise UsageError(f"{param} needs one value or two (lo hi), got {text!r}")
    values = [_float(param, t) for t in tokens]
    lo, hi = values[0], values[-1]
    if lo > hi:
        raise UsageError(f"{param}: lower bound {lo:g} is greater than upper bound {hi:g}")
    return lo, hi


def parse_band(text: str, *, param: str = "BAND") -> tuple[float, float]:
    """A wavelength interval in metres; values that cannot be metres are refused."""
    lo, hi = parse_interval(param, text)
    for value in (lo, hi):
        if math.isinf(value):
            continue
        if value <= 0:
            raise UsageError(f"{param}: wavelength {value:g} must be positive (metres)")
        if value > 10.0:
            raise UsageError(
                f"{param}: wavelength {value:g} m is not plausible; BAND is in metres "
                f"(e.g. 5.5e-7 for 550 nm)"
            )
    return lo, hi


def parse_time(text: str, *, param: str = "TIME") -> tuple[float, float]:
    """An MJD interval."""
    lo, hi = parse_interval(param, text)
    for value in (lo, hi):
        if not math.isinf(value) and not -1e6 < value < 1e6:
            raise UsageError(
                f"{param}: {value:g} is not a plausible MJD (TIME is a Modified Julian Date, "
                "e.g. 60800.5)"
            )
    return lo, hi


def parse_pol(text: str, *, param: str = "POL") -> str:
    state = text.strip().upper()
    if state not in POL_STATES:
        raise UsageError(f"{param}: {text!r} is not a polarization state ({sorted(POL_STATES)})")
    return state
