"""Building: bad input, interrupted builds that resume, and reproducibility."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from lsst.daf.butler import Butler

from sciplat.pipelines import dataset as dataset_mod
from sciplat.pipelines import repo
from sciplat.pipelines.commands import data as data_cli
from sciplat.pipelines.database import TABLES
from sciplat.pipelines.dataset import DatasetError, build_dataset, load_info


def test_unknown_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown size 'huge'; choose one of tiny, small, large"):
        build_dataset(tmp_path / "dataset", size="huge")
    result = CliRunner().invoke(data_cli, ["build", "--size", "huge", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "'huge' is not one of" in result.output


def test_unwritable_data_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DatasetError, match="cannot write to the data directory"):
        build_dataset(blocker / "dataset", size="tiny", progress=False)
    result = CliRunner().invoke(
        data_cli, ["build", "--size", "tiny", "--data-dir", str(blocker / "sub")]
    )
    assert result.exit_code == 1 and "Error: cannot write to the data directory" in result.output


def test_full_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dataset_mod.shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 10**6))
    with pytest.raises(DatasetError, match=r"not enough free space .* needs about"):
        build_dataset(tmp_path / "dataset", size="small", progress=False)


def test_disk_full_during_build_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    def no_space(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dataset_mod, "_build", no_space)
    with pytest.raises(DatasetError, match=r"disk holding .* is full; free space and rerun"):
        build_dataset(tmp_path / "dataset", size="tiny", progress=False)


def test_version_mismatch(tmp_path: Path, tiny_dataset: Path) -> None:
    root = tmp_path / "dataset"
    root.mkdir()
    info = json.loads((tiny_dataset / "dataset.json").read_text())
    info["format_version"] = 0
    (root / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="format version 0, this sciplat reads version 1"):
        load_info(root)
    with pytest.raises(DatasetError, match="rebuild it"):
        build_dataset(root, size="tiny", progress=False)
    result = CliRunner().invoke(data_cli, ["info", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "format version 0" in result.output


def test_other_size_or_seed_in_place(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="already holds a 'tiny' data preview with seed 42"):
        build_dataset(tiny_dataset, size="small", progress=False)
    root = tmp_path / "dataset"
    (root / ".build").mkdir(parents=True)
    (root / ".build" / "state.json").write_text(
        json.dumps({"format_version": 1, "size": "tiny", "seed": 7})
    )
    with pytest.raises(DatasetError, match=r"unfinished build .* resume it with"):
        build_dataset(root, size="tiny", seed=42, progress=False)


def test_no_data_means_none(tmp_path: Path) -> None:
    assert load_info(tmp_path) is None
    result = CliRunner().invoke(data_cli, ["info", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no data preview" in result.output


def _table_digest(db_path: Path) -> dict[str, tuple]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        out = {}
        for spec in TABLES.values():
            cols = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? "
                    "AND table_name = ? ORDER BY column_index",
                    [spec.schema, spec.name],
                ).fetchall()
            ]
            row_hash = ", ".join(f'"{c}"' for c in cols)
            out[spec.qualified] = con.execute(
                f'SELECT count(*), sum(hash(({row_hash}))) FROM {spec.schema}."{spec.name}"'
            ).fetchone()
        return out
    finally:
        con.close()


@pytest.mark.slow
def test_interrupted_build_resumes_and_reproduces(
    tmp_path: Path, tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill the build during ingest; nothing half-written is registered; resuming finishes
    it, and the result is identical to the session's tiny build (same seed)."""
    root = tmp_path / "dataset"
    calls = {"n": 0}
    real_ingest = repo.ingest_files

    def flaky_ingest(butler, items):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated interruption")
        return real_ingest(butler, items)

    monkeypatch.setattr(repo, "ingest_files", flaky_ingest)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(root, size="tiny", seed=42, progress=False)
    assert load_info(root) is None
    butler = Butler.from_config(str(root / "butler"))
    registered = butler.query_datasets("raw", collections=repo.RAW_RUN, explain=False)
    assert 0 < len(registered) < 24
    for ref in registered:
        assert butler.stored(ref)  # every registered dataset has its file
    monkeypatch.setattr(repo, "ingest_files", real_ingest)
    with pytest.raises(DatasetError, match="unfinished build"):
        build_dataset(root, size="tiny", seed=7, progress=False)
    info = build_dataset(root, size="tiny", seed=42, progress=False)
    assert info.counts == load_info(tiny_dataset).counts
    assert not (root / ".build" / "staging").exists()
    assert _table_digest(root / "catalog" / "catalog.duckdb") == _table_digest(
        tiny_dataset / "catalog" / "catalog.duckdb"
    )
    shutil.rmtree(root)
