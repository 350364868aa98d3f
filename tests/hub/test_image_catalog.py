"""The image catalogue: tags, defaults, environment checks, layered environments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sciplat.config import ImageConfig
from sciplat.images.catalog import ImageCatalog, build_env


def catalog(tmp_path: Path) -> ImageCatalog:
    return ImageCatalog(
        [
            ImageConfig(name="w1", tag="weekly"),
            ImageConfig(name="rec", tag="recommended"),
            ImageConfig(name="gone", tag="experimental", env=tmp_path / "missing"),
        ]
    )


def test_default_is_the_recommended_image_in_sciplats_own_env(tmp_path: Path) -> None:
    c = catalog(tmp_path)
    assert c.default().name == "rec"
    assert c.default().prefix == Path(sys.prefix)
    assert c.default().problems() == []
    assert c.default().lab_command()[:3] == [
        f"{sys.prefix}/bin/python",
        "-m",
        "sciplat.hub.labstart",
    ]


def test_groups_follow_menu_order(tmp_path: Path) -> None:
    assert [(tag, [i.name for i in images]) for tag, images in catalog(tmp_path).by_tag()] == [
        ("recommended", ["rec"]),
        ("weekly", ["w1"]),
        ("experimental", ["gone"]),
    ]


def test_unknown_image_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="known: w1, rec, gone"):
        catalog(tmp_path).get("nope")


def test_missing_environment_is_reported(tmp_path: Path) -> None:
    assert catalog(tmp_path).get("gone").problems() == [
        f"environment {tmp_path / 'missing'} does not exist"
    ]


def test_build_layered_env_sees_the_base_packages(tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "requirements.txt").write_text("# nothing beyond the base\n")
    prefix = build_env(spec, tmp_path / "env")
    out = subprocess.run(
        [str(prefix / "bin/python"), "-c", "import jupyterhub, sciplat; print(sciplat.__name__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "sciplat"


def test_build_env_needs_a_spec(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"requirements\.txt"):
        build_env(tmp_path, tmp_path / "env")
