"""Our felis schemas: valid for felis, and faithful to Rubin's dp1 schema."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import yaml

from sciplat.pipelines.schema import (
    DP_COLUMNS,
    DP_SCHEMA_PATH,
    OBSCORE_SCHEMA_PATH,
    TRUTH_SCHEMA_PATH,
    generate_dp_schema,
    generate_obscore_schema,
)

FELIS = Path(sys.executable).parent / "felis"


def test_felis_validate_accepts_our_schemas() -> None:
    paths = [DP_SCHEMA_PATH, TRUTH_SCHEMA_PATH, OBSCORE_SCHEMA_PATH]
    result = subprocess.run(
        [str(FELIS), "validate", "--check-tap-principal", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for path in paths:
        assert f"Successfully validated schema at '{path}'" in result.stderr


def test_felis_validate_rejects_a_broken_schema(tmp_path: Path) -> None:
    """The validation above can fail: a column with an unknown datatype is refused."""
    broken = yaml.safe_load(DP_SCHEMA_PATH.read_text())
    broken["tables"][0]["columns"][0]["datatype"] = "decimal128"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [str(FELIS), "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


def test_generated_schemas_are_up_to_date() -> None:
    """The committed YAML is what the generator makes from the installed lsst-sdm-schemas."""
    assert yaml.safe_load(DP_SCHEMA_PATH.read_text()) == generate_dp_schema()
    assert yaml.safe_load(OBSCORE_SCHEMA_PATH.read_text()) == generate_obscore_schema()


def test_columns_keep_rubins_definitions() -> None:
    """Name, datatype, unit, UCD and description of every column come from dp1.yaml."""
    dp1 = yaml.safe_load(resources.files("lsst.sdm.schemas").joinpath("dp1.yaml").read_text())
    rubin = {t["name"]: {c["name"]: c for c in t["columns"]} for t in dp1["tables"]}
    ours = yaml.safe_load(DP_SCHEMA_PATH.read_text())
    assert [t["name"] for t in ours["tables"]] == list(DP_COLUMNS)
    checked = 0
    for table in ours["tables"]:
        for column in table["columns"]:
            source = rubin[table["name"]].get(column["name"])
            if source is None:
                assert column["name"] == "detect_isPrimary"  # from dp02_dc2.yaml
                continue
            for key in ("datatype", "ivoa:unit", "ivoa:ucd", "description"):
                assert column.get(key) == source.get(key), (table["name"], column["name"], key)
            checked += 1
    assert checked > 300
    # What Rubin's tutorials use is there.
    object_columns = {c["name"] for c in ours["tables"][0]["columns"]}
    for name in ("objectId", "coord_ra", "coord_dec", "detect_isPrimary", "refExtendedness",
                 "g_psfFlux", "g_psfFluxErr", "g_psfMag", "r_cModelFlux", "r_cModelMag",
                 "i_extendedness"):  # fmt: skip
        assert name in object_columns
