"""`sciplat helm ...`: the commands an operator runs before `helm install`."""

from __future__ import annotations

import click
import yaml
from click.testing import CliRunner

from sciplat.helmchart import CHART_DIR, register


def cli() -> click.Group:
    group = click.Group("sciplat")
    register(group)
    return group


def test_schema_check_passes_on_the_committed_schema():
    result = CliRunner().invoke(cli(), ["helm", "schema", "--check"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_render_prints_validated_manifests():
    result = CliRunner().invoke(
        cli(), ["helm", "render", "-f", str(CHART_DIR / "ci" / "minimal-values.yaml")]
    )
    assert result.exit_code == 0, result.output
    kinds = {d["kind"] for d in yaml.safe_load_all(result.output) if d}
    assert {"Deployment", "NetworkPolicy", "Ingress", "StatefulSet"} <= kinds


def test_render_names_the_bad_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("api:\n  replicass: 3\n")
    result = CliRunner().invoke(cli(), ["helm", "render", "-f", str(bad)])
    assert result.exit_code == 1
    assert "'replicass' not allowed" in result.output
    bad.write_text("sciplat:\n  groups:\n    users:\n      quotas: {max_size: giant}\n")
    result = CliRunner().invoke(cli(), ["helm", "render", "-f", str(bad)])
    assert result.exit_code == 1
    assert "values.sciplat: (top): Value error, groups.users.quotas.max_size 'giant'" in (
        result.output
    )
