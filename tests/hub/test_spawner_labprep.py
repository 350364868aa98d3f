"""Preparing a home before a lab starts: reset (move aside, never delete) and discovery."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sciplat.hub.labprep import DISCOVERY_PATH, prepare_home, reset_environment, write_discovery


def test_reset_moves_dot_directories_aside(tmp_path: Path) -> None:
    (tmp_path / ".local/lib").mkdir(parents=True)
    (tmp_path / ".local/lib/broken.pth").write_text("import nonsense\n")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "notebook.ipynb").write_text("{}")
    result = reset_environment(tmp_path, [".cache", ".config", ".local"])
    target = Path(result["moved_to"])
    assert result["moved"] == [".cache", ".local"]
    assert target.parent == tmp_path and target.name.startswith(".sciplat-reset-")
    assert (target / ".local/lib/broken.pth").read_text() == "import nonsense\n"
    assert not (tmp_path / ".local").exists()
    assert (tmp_path / "notebook.ipynb").exists()


def test_second_reset_in_the_same_second_gets_its_own_directory(tmp_path: Path) -> None:
    (tmp_path / ".cache").mkdir()
    first = reset_environment(tmp_path, [".cache"])["moved_to"]
    (tmp_path / ".cache").mkdir()
    second = reset_environment(tmp_path, [".cache"])["moved_to"]
    assert first != second
    assert Path(first, ".cache").is_dir() and Path(second, ".cache").is_dir()


def test_reset_ignores_names_with_paths(tmp_path: Path) -> None:
    (tmp_path / "keep").mkdir()
    assert reset_environment(tmp_path, ["../keep", "..", "."]) == {"moved": [], "moved_to": None}


def test_nothing_to_reset(tmp_path: Path) -> None:
    assert reset_environment(tmp_path, [".cache"]) == {"moved": [], "moved_to": None}


def test_discovery_document_is_private(tmp_path: Path) -> None:
    path = write_discovery(tmp_path, {"version": 1, "hub_url": "http://x"})
    assert path == tmp_path / DISCOVERY_PATH
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["hub_url"] == "http://x"


def test_discovery_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (tmp_path / ".sciplat").mkdir()
    os.symlink(victim, tmp_path / ".sciplat" / "discovery.json")
    write_discovery(tmp_path, {"version": 1, "hub_url": "http://x"})
    assert victim.read_text() == "untouched"
    assert not (tmp_path / DISCOVERY_PATH).is_symlink()


def test_prepare_home_does_both(tmp_path: Path) -> None:
    (tmp_path / ".jupyter").mkdir()
    result = prepare_home(
        {
            "home": str(tmp_path),
            "reset": [".jupyter"],
            "discovery": {"version": 1, "hub_url": "http://x"},
        }
    )
    assert result["moved"] == [".jupyter"]
    assert Path(result["discovery"]).exists()


@pytest.mark.parametrize("bad", [{"home": "/nonexistent/dir", "discovery": {}}])
def test_prepare_home_errors_are_oserrors(bad) -> None:
    with pytest.raises(OSError):
        prepare_home(bad)
