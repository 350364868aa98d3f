"""The hub's SQLite database: where it lives and how it is opened.

JupyterHub commits after nearly every step of a spawn (server row, token, OAuth client,
state, proxy route), and its ORM calls block the hub's event loop. In SQLite's default
rollback-journal mode each commit waits for several ``fsync`` calls (10-30 ms each on this
machine's disk), so ten spawns at once queued behind seconds of disk waits. The hub opens the
database in write-ahead-log mode with ``synchronous=NORMAL``: a commit is a write into the log,
synced at checkpoints. The database stays consistent after a crash of the hub or of the
machine; a power loss can roll back the last commits before a checkpoint (a spawn or token
made in that moment), which the hub then treats as never having happened.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sciplat.config import Settings

__all__ = ["HubSQLiteConnection", "hub_db_kwargs", "hub_db_path", "hub_db_url"]


class HubSQLiteConnection(sqlite3.Connection):
    """An SQLite connection in WAL mode with ``synchronous=NORMAL`` (see the module text)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA journal_mode=WAL")
        self.execute("PRAGMA synchronous=NORMAL")


def hub_db_path(settings: Settings) -> Path:
    """The hub database file of *settings*' data root."""
    return settings.hub_state_dir / "jupyterhub.sqlite"


def hub_db_url(settings: Settings) -> str:
    """``c.JupyterHub.db_url`` for *settings*."""
    return f"sqlite:///{hub_db_path(settings)}"


def hub_db_kwargs() -> dict[str, Any]:
    """``c.JupyterHub.db_kwargs``: SQLAlchemy engine arguments that open
    :class:`HubSQLiteConnection` connections (usable from any thread, as JupyterHub's own
    default)."""
    return {"connect_args": {"check_same_thread": False, "factory": HubSQLiteConnection}}
