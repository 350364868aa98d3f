"""The batch-compute tutorial notebook runs end to end on a gateway cluster, as in a lab."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nbclient import NotebookClient

from sciplat.hub.gateway import lab_environment

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "tutorials" / "05-dask-gateway.ipynb"
BANDS = "ugrizy"


def _write_object_partitions(root: Path, rng: np.random.Generator) -> tuple[int, int]:
    """A small Object table in the HATS layout; returns (rows, primary rows)."""
    rows = primary = 0
    for npix in (4, 5, 9):
        n = 500 + 100 * npix
        folder = root / "dataset" / "Norder=0" / "Dir=0"
        folder.mkdir(parents=True, exist_ok=True)
        cols = {
            # order-29 nested indices inside base pixel npix
            "_healpix_29": np.sort(rng.integers(npix << 58, (npix + 1) << 58, n, dtype=np.int64)),
            "detect_isPrimary": rng.random(n) < 0.9,
        }
        for band in BANDS:
            mag = rng.uniform(16, 28, n)
            mag[rng.random(n) < 0.05] = np.nan
            cols[f"{band}_cModelMag"] = mag
        pq.write_table(pa.table(cols), folder / f"Npix={npix}.parquet")
        rows += n
        primary += int(cols["detect_isPrimary"].sum())
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return rows, primary


def test_tutorial_runs_on_a_gateway_cluster(gateway_hub) -> None:
    data = gateway_hub.settings.data_dir / "tutorial-data"
    catalog = data / "catalog"
    rows, primary = _write_object_partitions(
        catalog / "parquet" / "dp1" / "Object", np.random.default_rng(5)
    )
    data.chmod(0o755)
    discovery = data / "discovery.json"
    discovery.write_text(
        json.dumps(
            {
                "hub_url": gateway_hub.hub.url,
                "services": {"dask_gateway": {"url": gateway_hub.address}},
                "datasets": {"dp-test": {"paths": {"parquet": str(catalog / "parquet")}}},
            }
        )
    )
    env = lab_environment(gateway_hub.settings)
    env["DASK_GATEWAY__ADDRESS"] = gateway_hub.address
    env["DASK_GATEWAY__PUBLIC_ADDRESS"] = gateway_hub.address
    env["SCIPLAT_DISCOVERY"] = str(discovery)
    env["JUPYTERHUB_API_TOKEN"] = gateway_hub.token("gwbob")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    outputs = "\n".join(
        o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
    )
    assert "dp-test: 3 Object partitions" in outputs
    assert f"{rows:,} rows, {primary:,} primary objects" in outputs
    images = [
        o
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    ]
    assert images, "the plot cell produced no figure"
    with gateway_hub.gateway("gwbob") as gateway:
        assert gateway.list_clusters() == []  # the notebook shut its cluster down
