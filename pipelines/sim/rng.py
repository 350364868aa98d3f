"""Deterministic random streams: one independent generator per (seed, purpose)."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["rng_for", "seed_for"]


def seed_for(seed: int, *keys: object) -> int:
    """A 63-bit integer derived from *seed* and *keys* (stable across runs and platforms)."""
    text = "/".join([str(seed), *map(str, keys)]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A numpy Generator for *seed* and a purpose, e.g. ``rng_for(42, "render", visit, det)``."""
    return np.random.default_rng(seed_for(seed, *keys))
