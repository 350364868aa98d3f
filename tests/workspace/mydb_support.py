"""Helpers shared by the MyDB tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import requests

from sciplat.config import Settings

#: Small limits so quota tests need small tables.
QUOTA_ROWS = 20_000
MAX_UPLOAD = 2 * 2**20


@dataclass
class Platform:
    """One API service under test."""

    backend: str
    api_url: str
    settings: Settings
    hub: object
    admin_url: str = ""

    @property
    def mydb(self) -> str:
        return f"{self.api_url}/mydb"

    @property
    def tap(self) -> str:
        return f"{self.api_url}/tap"

    def token(self, user: str) -> str:
        return self.hub.token_for(user)  # type: ignore[attr-defined]

    def client(self, user: str) -> httpx.Client:
        return httpx.Client(headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=120)

    def session(self, user: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token(user)}"
        return session


def drop_all(platform: Platform, *users: str) -> None:
    """Drop every table the users can drop (tests leave nothing behind)."""
    for user in users:
        with platform.client(user) as client:
            listing = client.get(f"{platform.mydb}/tables").json()
            for table in listing.get("tables", []):
                if table["owner"] == user or table["schema"].startswith("group_"):
                    client.delete(f"{platform.mydb}/tables/{table['name']}")
