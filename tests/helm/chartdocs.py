"""Helpers of the chart tests: pick rendered objects by kind and name."""

from __future__ import annotations

from typing import Any

from sciplat.helmchart import CHART_DIR, load_values

VALUES_FILES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))


def values_of(name: str) -> dict[str, Any]:
    return load_values([CHART_DIR / "ci" / f"{name}-values.yaml"])


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """(kind/name, pod spec) of every workload."""
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
    ]
