"""Bot helpers without a platform: error gists, notebook discovery, percentiles."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from sciplat.services.notebooks.bots import (
    _declared_timeout,
    collect_notebooks,
    percentile,
    short_error,
)


def test_short_error_gives_the_gist():
    page = "<html><head><title>JupyterHub</title></head><body>" + "x" * 5000
    page += "<div class='error'><h1>503 : Service\n   Unavailable</h1></div></body></html>"
    assert short_error(httpx.Response(503, text=page)) == "503 : Service Unavailable"
    assert short_error(httpx.Response(400, json={"detail": "Parameter 'visit': bad"})) == (
        "Parameter 'visit': bad"
    )
    assert short_error(httpx.Response(500, text="boom " * 500), limit=20) == "boom boom boom boom "


def test_collect_notebooks_finds_new_ones_and_skips_checkpoints(tmp_path: Path):
    (tmp_path / "tutorials" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "commissioning").mkdir()
    for rel in ["tutorials/b.ipynb", "tutorials/a.ipynb", "commissioning/new.ipynb",
                "tutorials/.ipynb_checkpoints/a-checkpoint.ipynb"]:  # fmt: skip
        (tmp_path / rel).write_text(json.dumps({"cells": []}))
    (tmp_path / "commissioning" / "new.yaml").write_text("title: x\n")
    found = [str(p.relative_to(tmp_path)) for p in collect_notebooks(tmp_path)]
    assert found == ["commissioning/new.ipynb", "tutorials/a.ipynb", "tutorials/b.ipynb"]


def test_percentile():
    assert percentile([], 95) is None
    assert percentile([3.0], 95) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.5
    assert 95 <= percentile(values, 95) <= 96


def test_declared_timeout_orders_long_templates_first(tmp_path: Path):
    (tmp_path / "slow.yaml").write_text("title: slow\ntimeout: 1800\n")
    (tmp_path / "broken.yaml").write_text("title: [unclosed\n")
    (tmp_path / "odd.yaml").write_text("- a list\n")
    assert _declared_timeout(tmp_path / "slow.ipynb") == 1800
    assert _declared_timeout(tmp_path / "plain.ipynb") == 0  # no sidecar
    assert _declared_timeout(tmp_path / "broken.ipynb") == 0
    assert _declared_timeout(tmp_path / "odd.ipynb") == 0


def test_prepare_injects_a_templates_defaults_and_refuses_a_broken_one(template_dir: Path):
    from sciplat.services.notebooks.bots import prepare

    nb = prepare(template_dir / "square.ipynb")
    assert nb["cells"][0]["source"] == "# Parameters\nn = 3\nlabel = 'a'\nloud = False"
    assert "injected-parameters" in nb["cells"][0]["metadata"]["tags"]
    plain = prepare(template_dir / "orphan.ipynb")  # no sidecar: runs as it is
    assert plain == json.loads((template_dir / "orphan.ipynb").read_text())
    with pytest.raises(RuntimeError, match="lab/badschema is broken"):
        prepare(template_dir / "badschema.ipynb")
