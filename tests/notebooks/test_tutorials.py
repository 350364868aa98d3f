"""The shipped tutorials: valid notebooks, a read-only link for every lab, personal copies."""

from __future__ import annotations

import json

import nbformat
import pytest

import sciplat.notebooks as nb

EXPECTED = {"01-platform-tour.ipynb", "02-tap-adql.ipynb", "03-images-butler-sia-soda.ipynb",
            "04-portal-and-notebook.ipynb", "05-dask-gateway.ipynb",
            "06-time-domain.ipynb"}  # fmt: skip


def test_tutorials_are_valid_notebooks_with_plots():
    names = set(nb.list_tutorials())
    assert names >= EXPECTED
    for name in EXPECTED:
        notebook = nbformat.read(nb.tutorials_dir() / name, as_version=4)
        nbformat.validate(notebook)
        sources = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
        assert "import sciplat" in sources
        assert "plt." in sources or name.startswith("01"), name
        assert notebook.cells[0].cell_type == "markdown"
        for cell in notebook.cells:  # shipped without outputs
            assert cell.get("outputs", []) == []


def test_link_and_copy(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    link = nb.link_tutorials(home)
    assert link.is_symlink() and link.resolve() == nb.tutorials_dir()
    assert (link / "02-tap-adql.ipynb").is_file()
    assert nb.link_tutorials(home) == link  # idempotent

    copy = nb.copy_tutorial("02-tap-adql.ipynb", home)
    assert copy == home / "notebooks" / "tutorials" / "02-tap-adql.ipynb"
    assert json.loads(copy.read_text()) == json.loads((link / "02-tap-adql.ipynb").read_text())
    copy.write_text("{}")  # the copy is the user's to edit
    with pytest.raises(FileExistsError):
        nb.copy_tutorial("02-tap-adql.ipynb", home)
    nb.copy_tutorial("02-tap-adql.ipynb", home, overwrite=True)
    assert copy.read_text() != "{}"
    with pytest.raises(FileNotFoundError, match=r"no tutorial '\.\./x'"):
        nb.copy_tutorial("../x", home)


def test_a_users_own_directory_named_tutorials_is_kept(tmp_path):
    (tmp_path / "tutorials").mkdir()
    (tmp_path / "tutorials" / "mine.txt").write_text("x")
    nb.link_tutorials(tmp_path)
    assert not (tmp_path / "tutorials").is_symlink()
    assert (tmp_path / "tutorials" / "mine.txt").read_text() == "x"
