"""``sciplat bench mydb`` runs end to end (tiny sizes; the figures themselves are not asserted)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.integration


def test_bench_mydb_reports_every_measurement():
    from sciplat.cli import _load_areas, cli

    _load_areas()
    result = CliRunner().invoke(
        cli, ["bench", "mydb", "--rows", "3000", "--objects", "1000", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    figures = report["backends"]["duckdb"]
    assert figures["upload"]["rows"] == 3000
    assert figures["upload"]["rows_per_s"] > 0
    # DEST_TABLE and from-job store the same query's rows.
    assert figures["create_from_query"]["rows"] == figures["create_from_job"]["rows"] > 0
    assert set(figures["join_latency_ms"]) == {"count_join", "filtered_join_top100"}
