"""Render the chart once per values file (Helm's own engine, offline) for the chart tests."""

from __future__ import annotations

from typing import Any

import pytest
from chartdocs import VALUES_FILES

from sciplat.helmchart import load_values, manifests, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Manifests per values file in helm/sciplat/ci ("minimal", "production", "large")."""
    out = {}
    for path in VALUES_FILES:
        name = path.name.removesuffix("-values.yaml")
        out[name] = manifests(render(load_values([path]), name="sciplat", namespace="sciplat"))
    return out
