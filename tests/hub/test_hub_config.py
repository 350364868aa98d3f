"""The hub configuration rendered from the settings (no hub started)."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from traitlets.config import Config

from sciplat.config import CUSTOM_SCOPES, OIDCConfig, Settings
from sciplat.hub import hubconfig
from sciplat.hub.platform import Platform


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "hub": {
                "port": 8123,
                "default_groups": ["users"],
                "cull": {"timeout": 600, "every": 60, "max_age": 86400},
            },
            "groups": {
                "users": {"scopes": ["custom:tap:read"], "quotas": {"max_size": "small"}},
                "staff": {"scopes": ["custom:tap:read", "access:services!service=dask-gateway"]},
            },
        }
    )


def render(settings: Settings, monkeypatch, extensions: list[str] | None = None) -> Config:
    monkeypatch.setattr(hubconfig, "EXTENSIONS", extensions or [])
    c = Config()
    hubconfig.configure(c, settings)
    return c


def test_proxy_is_external_and_labs_survive_hub_restarts(settings, monkeypatch) -> None:
    c = render(settings, monkeypatch)
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8123"
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.JupyterHub.cleanup_servers is False and c.JupyterHub.cleanup_proxy is False
    assert c.JupyterHub.db_url == f"sqlite:///{settings.hub_state_dir / 'jupyterhub.sqlite'}"
    token_file = settings.run_dir / "proxy-token"
    assert c.ConfigurableHTTPProxy.auth_token == token_file.read_text()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    # A second rendering keeps the secrets (a restarted hub must reach the same proxy).
    assert render(settings, monkeypatch).ConfigurableHTTPProxy.auth_token == token_file.read_text()


def test_hub_database_commits_without_waiting_for_the_disk(settings, monkeypatch) -> None:
    """The hub opens its SQLite database (through JupyterHub's own session factory) in WAL
    mode with synchronous=NORMAL, and the mode stays with the file for later readers."""
    from jupyterhub import orm

    c = render(settings, monkeypatch)
    session = orm.new_session_factory(c.JupyterHub.db_url, **c.JupyterHub.db_kwargs)()
    try:
        session.add(orm.User(name="walter"))
        session.commit()
        conn = session.connection().connection.dbapi_connection
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        session.close()
    plain = sqlite3.connect(settings.hub_state_dir / "jupyterhub.sqlite")
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert plain.execute("SELECT name FROM users").fetchall() == [("walter",)]
    finally:
        plain.close()


def test_groups_become_roles_with_scopes(settings, monkeypatch) -> None:
    c = render(settings, monkeypatch)
    assert set(c.JupyterHub.custom_scopes) == set(CUSTOM_SCOPES)
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert roles["group-users"]["scopes"] == ["custom:tap:read"]
    assert roles["group-users"]["groups"] == ["users"]
    assert "access:services!service=dask-gateway" in roles["group-staff"]["scopes"]
    assert c.JupyterHub.load_groups["users"]["properties"]["quotas"]["max_size"] == "small"
    # Lab tokens ask for every data scope; JupyterHub grants the subset the user holds.
    assert "custom:tap:read" in c.Spawner.server_token_scopes
    assert "access:servers!server" in c.Spawner.server_token_scopes
    assert not any(s.startswith("admin") for s in c.Spawner.server_token_scopes)


def test_oidc_leaves_group_membership_to_the_provider(settings, monkeypatch) -> None:
    monkeypatch.setattr(hubconfig, "_configure_auth", lambda c, s: None)
    oidc = settings.model_copy(
        update={
            "hub": settings.hub.model_copy(
                update={
                    "authenticator": "oidc",
                    "oidc": OIDCConfig(issuer="https://id.example.org", client_id="x"),
                }
            )
        }
    )
    c = render(oidc, monkeypatch)
    assert "load_groups" not in c.JupyterHub
    assert {r["name"] for r in c.JupyterHub.load_roles} >= {"group-users", "group-staff"}


def test_culler_and_cli_services(settings, monkeypatch) -> None:
    c = render(settings, monkeypatch)
    services = {s["name"]: s for s in c.JupyterHub.services}
    culler = services["idle-culler"]["command"]
    assert culler[1:3] == ["-m", "jupyterhub_idle_culler"]
    assert {"--timeout=600", "--cull-every=60", "--max-age=86400"} <= set(culler)
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert "delete:servers" in roles["idle-culler"]["scopes"]
    assert (
        services["sciplat-cli"]["api_token"] == (settings.hub_state_dir / "cli-token").read_text()
    )
    off = settings.model_copy(
        update={
            "hub": settings.hub.model_copy(
                update={"cull": settings.hub.cull.model_copy(update={"enabled": False})}
            )
        }
    )
    assert "idle-culler" not in {s["name"] for s in render(off, monkeypatch).JupyterHub.services}


def test_extensions_run_last_and_may_add_services(settings, monkeypatch) -> None:
    calls = []

    def extension(c, s):
        calls.append(s.hub.port)
        c.JupyterHub.services.append({"name": "extra", "url": "http://127.0.0.1:1"})

    monkeypatch.setattr(hubconfig, "_test_extension", extension, raising=False)
    c = render(settings, monkeypatch, ["sciplat.hub.hubconfig:_test_extension"])
    assert calls == [8123]
    assert "extra" in {s["name"] for s in c.JupyterHub.services}


def test_missing_extension_module_is_skipped_but_broken_ones_fail(settings, monkeypatch) -> None:
    render(settings, monkeypatch, ["sciplat.not_written_yet:configure"])
    with pytest.raises(AttributeError):
        render(settings, monkeypatch, ["sciplat.hub.hubconfig:no_such_function"])


def test_up_builds_the_data_preview_when_missing(settings, monkeypatch) -> None:
    from sciplat.pipelines import dataset

    built = []
    monkeypatch.setattr(dataset, "load_info", lambda root: None)
    monkeypatch.setattr(
        dataset, "build_dataset", lambda root, size, seed: built.append((root, size, seed))
    )
    Platform(settings)._ensure_dataset(lambda _: None)
    assert built == [(settings.dataset_dir, settings.dataset, 42)]
    built.clear()
    monkeypatch.setattr(dataset, "load_info", lambda root: object())
    Platform(settings)._ensure_dataset(lambda _: None)
    assert built == []
