"""Fixtures for the notebooks service: tiny templates, settings, an app against the real hub."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from sciplat.config import Settings


def code(source: str, tags: list[str] | None = None) -> dict:
    return {
        "cell_type": "code",
        "metadata": {"tags": tags or []},
        "source": source,
        "outputs": [],
        "execution_count": None,
    }


def notebook(*cells: dict) -> dict:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "cells": [{**c, "id": f"c{i}"} for i, c in enumerate(cells)],
    }  # fmt: skip


SQUARE_SIDECAR = """\
title: Square a number
description: Prints n squared, a few times.
parameters:
  n: {type: integer, default: 3, minimum: 0, maximum: 1000, description: The number}
  label: {type: string, enum: [a, b], default: a}
  loud: {type: boolean, default: false}
"""


def write_template(directory: Path, stem: str, nb: dict, sidecar: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.ipynb").write_text(json.dumps(nb))
    (directory / f"{stem}.yaml").write_text(sidecar)


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collection 'lab' with good and broken templates."""
    d = tmp_path_factory.mktemp("tpl") / "lab"
    write_template(
        d, "square",
        notebook(
            code("n = 1\nlabel = 'x'\nloud = True", ["parameters"]),
            code("import os\nprint('square', n * n, label, loud, os.environ['JUPYTERHUB_USER'])"),
        ),
        SQUARE_SIDECAR,
    )  # fmt: skip
    write_template(
        d, "raises",
        notebook(code("x = 1", ["parameters"]), code("y = x + 1"),
                 code("raise ValueError('bad visit ' + str(x))"), code("print('never')")),
        "title: Raises\nparameters:\n  x: {type: integer, default: 1}\n",
    )  # fmt: skip
    write_template(
        d, "forever",
        notebook(code("s = 600", ["parameters"]), code("import time\ntime.sleep(s)")),
        "title: Never ends\ntimeout: 4\nparameters:\n  s: {type: integer, default: 600}\n",
    )  # fmt: skip
    write_template(d, "badyaml", notebook(code("1")), "title: [unclosed\n")
    write_template(
        d, "badschema", notebook(code("a = 1", ["parameters"])),
        "title: Bad schema\nparameters:\n  a: {type: integer, default: high}\n",
    )  # fmt: skip
    write_template(
        d, "notags", notebook(code("a = 1")),
        "title: No tagged cell\nparameters:\n  a: {type: integer, default: 1}\n",
    )  # fmt: skip
    (d / "orphan.ipynb").write_text(json.dumps(notebook(code("1"))))
    return d


@pytest.fixture
def nb_settings(tmp_path: Path, template_dir: Path, test_hub) -> Settings:
    """Settings for an in-process notebooks service that checks tokens with the test hub."""
    return test_hub.settings.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "notebooks": test_hub.settings.notebooks.model_copy(
                update={"template_dirs": [template_dir], "run_as_user": False,
                        "default_timeout": 120}
            ),
        }
    )  # fmt: skip


@pytest.fixture
async def nb_app(nb_settings: Settings, test_hub):
    from sciplat.services.app import create_app
    from sciplat.services.notebooks import plugin

    app = create_app(nb_settings, hub_api_url=test_hub.api_url, plugins=[plugin],
                     public_url="http://testserver/services/api")  # fmt: skip
    async with LifespanManager(app):
        yield app  # state lives on app.state, so the bare app serves requests too


@pytest.fixture
async def nb_client(nb_app):
    transport = httpx.ASGITransport(app=nb_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def nb_service(nb_app):
    return nb_app.state.context.state["notebooks"]


@pytest.fixture
def auth(test_hub):
    def headers(user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {test_hub.token_for(user)}"}

    return headers
