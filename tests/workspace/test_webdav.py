"""WebDAV workspaces through the real hub and proxy, with a real WebDAV client (webdav4)."""

from __future__ import annotations

import io
import json
import os
import pwd

import httpx
import pytest
from webdav4.client import Client, ClientError, HTTPError

from sciplat.services.workspace.quota import set_override

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dav_url(test_hub) -> str:
    return f"{test_hub.api_service_url}/webdav"


def _client(test_hub, dav_url: str, user: str) -> Client:
    return Client(dav_url, auth=("token", test_hub.token_for(user)), timeout=30)


def test_put_get_propfind_move_delete(test_hub, dav_url, tmp_path):
    dav = _client(test_hub, dav_url, "alice")
    assert {e["name"].rstrip("/") for e in dav.ls("/", detail=True)} >= {"home", "groups"}
    assert [e["name"].rstrip("/").split("/")[-1] for e in dav.ls("/home")] == ["alice"]
    dav.mkdir("/home/alice/results")
    local = tmp_path / "table.csv"
    local.write_text("a,b\n1,2\n")
    dav.upload_file(local, "/home/alice/results/table.csv")
    listing = dav.ls("/home/alice/results", detail=True)
    assert [(e["name"].split("/")[-1], e["content_length"]) for e in listing] == [("table.csv", 8)]
    dav.move("/home/alice/results/table.csv", "/home/alice/results/renamed.csv")
    back = tmp_path / "back.csv"
    dav.download_file("/home/alice/results/renamed.csv", back)
    assert back.read_text() == "a,b\n1,2\n"

    on_disk = test_hub.settings.homes_dir / "alice/results/renamed.csv"
    assert on_disk.read_text() == "a,b\n1,2\n"
    if os.geteuid() == 0:
        # Created as the user's own Unix account, as their lab would.
        assert on_disk.stat().st_uid == pwd.getpwnam("alice").pw_uid
    dav.remove("/home/alice/results")
    assert not on_disk.parent.exists()


def test_byte_ranges(test_hub, dav_url):
    token = test_hub.token_for("alice")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{dav_url}/home/alice/big.bin"
    body = bytes(range(256)) * 64
    assert httpx.put(url, content=body, headers=headers).status_code in (201, 204)
    part = httpx.get(url, headers={**headers, "Range": "bytes=256-511"})
    assert part.status_code == 206
    assert part.content == body[256:512]


def test_other_users_and_outsiders_are_refused(test_hub, dav_url):
    alice = _client(test_hub, dav_url, "alice")
    alice.upload_fileobj(io.BytesIO(b"secret"), "/home/alice/secret.txt", overwrite=True)
    bob = _client(test_hub, dav_url, "bob")
    with pytest.raises((ClientError, HTTPError)):
        bob.ls("/home/alice")
    with pytest.raises((ClientError, HTTPError)):
        bob.upload_fileobj(io.BytesIO(b"x"), "/home/alice/evil.txt")
    assert not (test_hub.settings.homes_dir / "alice/evil.txt").exists()
    # carol has no custom:files:write
    carol = httpx.request(
        "PROPFIND",
        f"{dav_url}/home/carol/",
        headers={"Authorization": f"Bearer {test_hub.token_for('carol')}", "Depth": "0"},
    )
    assert carol.status_code == 403
    anonymous = httpx.request("PROPFIND", f"{dav_url}/home/alice/")
    assert anonymous.status_code == 401
    assert "Bearer" in anonymous.headers["www-authenticate"]
    # Forged identity headers are dropped, not trusted.
    forged = httpx.request(
        "PROPFIND",
        f"{dav_url}/home/alice/",
        headers={
            "Authorization": f"Bearer {test_hub.token_for('bob')}",
            "X-Sciplat-Dav-User": "alice",
            "Depth": "1",
        },
    )
    assert forged.status_code == 403


def test_group_directory_for_members_only(test_hub, dav_url):
    alice = _client(test_hub, dav_url, "alice")
    alice.upload_fileobj(io.BytesIO(b"shared"), "/groups/users/notes.txt", overwrite=True)
    bob = _client(test_hub, dav_url, "bob")
    with bob.open("/groups/users/notes.txt", mode="rb") as handle:
        assert handle.read() == b"shared"
    with pytest.raises((ClientError, HTTPError)):
        bob.ls("/groups/staff")


@pytest.mark.parametrize(
    "path",
    [
        "/home/alice/../bob/x",
        "/home/alice/%2e%2e/%2e%2e/hub/jupyterhub.sqlite",
        "/home/../../etc/passwd",
    ],
)
def test_path_traversal_is_refused(test_hub, dav_url, path):
    token = test_hub.token_for("alice")
    response = httpx.get(f"{dav_url}{path}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (403, 404)
    assert b"root:" not in response.content


def test_symlink_out_of_home_is_refused(test_hub, dav_url):
    home = test_hub.settings.homes_dir / "alice"
    link = home / "escape"
    if not link.is_symlink():
        link.symlink_to("/etc")
    token = test_hub.token_for("alice")
    response = httpx.get(
        f"{dav_url}/home/alice/escape/passwd", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403
    link.unlink()


def test_quota_refuses_without_damage(test_hub, dav_url):
    token = test_hub.token_for("bob")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{dav_url}/home/bob/keep.txt"
    assert httpx.put(url, content=b"original", headers=headers).status_code in (201, 204)
    # An operator's grant replaces the group quota: give bob 64 KiB, then go over it.
    set_override(test_hub.settings, "users", "bob", 64 * 1024)
    try:
        too_big = httpx.put(url, content=b"x" * 200_000, headers=headers)
        assert too_big.status_code == 507
        assert "Quota exceeded" in too_big.text
        assert httpx.get(url, headers=headers).content == b"original"
        new = httpx.put(f"{dav_url}/home/bob/new.bin", content=b"x" * 200_000, headers=headers)
        assert new.status_code == 507
        assert not (test_hub.settings.homes_dir / "bob/new.bin").exists()
        leftovers = list((test_hub.settings.homes_dir / "bob").glob(".dav-upload-*"))
        assert leftovers == []
    finally:
        set_override(test_hub.settings, "users", "bob", None)
    assert httpx.put(url, content=b"y" * 200_000, headers=headers).status_code in (201, 204)


def test_admin_quota_command(test_hub):
    from click.testing import CliRunner

    from sciplat.cli import _load_areas, cli

    _load_areas()
    config = test_hub.directory / "sciplat.yaml"
    config.write_text(f"data_dir: {test_hub.settings.data_dir}\n")
    runner = CliRunner()
    result = runner.invoke(
        cli, ["admin", "quota", "set", "user", "alice", "50G", "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    listed = runner.invoke(cli, ["admin", "quota", "list", "--json", "--config", str(config)])
    rows = {(r["kind"], r["name"]): r for r in json.loads(listed.output)}
    assert rows[("user", "alice")]["quota"] == 50 * 10**9
    assert rows[("group", "users")]["quota"] == test_hub.settings.groups["users"].quotas.disk
    bad = runner.invoke(
        cli, ["admin", "quota", "set", "group", "nosuch", "1G", "--config", str(config)]
    )
    assert bad.exit_code != 0
    assert "unknown group" in bad.output
    runner.invoke(
        cli, ["admin", "quota", "set", "user", "alice", "default", "--config", str(config)]
    )
