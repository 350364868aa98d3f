"""Helpers of the lab extension tests: the platform handle, files in labuser's home, accounts."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from sciplat.config import Settings

# The hub tests' harness (spawn, tokens, kernels), reused rather than copied.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
from hubharness import Harness

__all__ = ["ARTIFACTS", "USER", "Harness", "LabPlatform", "add_native_user", "notebook_json",
           "put_file"]  # fmt: skip

USER = "labuser"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "lab"


@dataclass
class LabPlatform:
    """The running platform, labuser's password and her running lab."""

    harness: Harness
    settings: Settings
    password: str

    @property
    def url(self) -> str:
        return self.harness.url

    @property
    def lab_url(self) -> str:
        return f"{self.url}/user/{USER}"

    def lab_api(self, token: str | None = None):
        token = token or self.harness.token_for(USER)
        return httpx.Client(
            base_url=f"{self.lab_url}/", headers={"Authorization": f"token {token}"}, timeout=120
        )

    @property
    def home(self) -> Path:
        return self.settings.homes_dir / USER


def add_native_user(settings: Settings, name: str) -> str:
    """An approved NativeAuthenticator account (what an admin's approval makes); its password."""
    import secrets

    import bcrypt
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    settings.hub_state_dir.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{settings.hub_state_dir / 'jupyterhub.sqlite'}"
    session = orm.new_session_factory(db)()
    password = secrets.token_urlsafe(12)
    session.add(UserInfo(username=name, is_authorized=True,
                         password=bcrypt.hashpw(password.encode(), bcrypt.gensalt())))  # fmt: skip
    session.commit()
    session.close()
    return password


def put_file(lab: LabPlatform, path: str, content: str | dict, kind: str = "file") -> None:
    """Write a file into labuser's home through her lab's contents API (so she owns it)."""
    body: dict = {"type": kind, "format": "json" if kind == "notebook" else "text",
                  "content": content}  # fmt: skip
    with lab.lab_api() as api:
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            api.put(f"api/contents/{parent}", json={"type": "directory"})
        r = api.put(f"api/contents/{path}", json=body)
    assert r.status_code in (200, 201), r.text


def notebook_json(*sources: str, tags: tuple[str, ...] = ("parameters",)) -> dict:
    """A notebook of code cells; the first is tagged *tags*."""
    cells = [
        {"cell_type": "code", "id": f"c{i}", "metadata": {"tags": list(tags) if i == 0 else []},
         "source": s, "outputs": [], "execution_count": None}
        for i, s in enumerate(sources)
    ]  # fmt: skip
    return {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}}}  # fmt: skip
