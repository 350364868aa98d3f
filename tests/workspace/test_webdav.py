"""WebDAV workspaces through the real hub and proxy, with a real WebDAV client (webdav4)."""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil

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
    with pytest.raises((ClientError, HTTPError)):
        bob.upload_fileobj(io.BytesIO(b"x"), "/groups/staff/intruder.txt")
    assert not (test_hub.settings.groups_dir / "staff" / "intruder.txt").exists()
    on_disk = test_hub.settings.groups_dir / "users" / "notes.txt"
    if os.geteuid() == 0:  # written as alice; the directory is closed to non-members
        assert on_disk.stat().st_uid == pwd.getpwnam("alice").pw_uid
        assert on_disk.parent.stat().st_mode & 0o007 == 0


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


QUOTA_PROPFIND = (
    '<?xml version="1.0"?><propfind xmlns="DAV:"><prop>'
    "<quota-used-bytes/><quota-available-bytes/></prop></propfind>"
)


def _quota(dav_url: str, token: str, path: str) -> tuple[int, int]:
    import xml.etree.ElementTree as ET

    r = httpx.request(
        "PROPFIND",
        f"{dav_url}{path}",
        content=QUOTA_PROPFIND,
        headers={"Authorization": f"Bearer {token}", "Depth": "0"},
    )
    assert r.status_code == 207, r.text
    root = ET.fromstring(r.content)
    used = root.findtext(".//{DAV:}quota-used-bytes")
    left = root.findtext(".//{DAV:}quota-available-bytes")
    return int(used), int(left)


def test_quota_properties_are_the_enforced_measurement(test_hub, dav_url):
    """RFC 4331 quota-used/available-bytes: what the lab's status bar and `rclone about` show,
    from the same measurement writes are checked against."""
    from sciplat.services.workspace.quota import measure

    token = test_hub.token_for("bob")
    headers = {"Authorization": f"Bearer {token}"}
    home = test_hub.settings.homes_dir / "bob"
    set_override(test_hub.settings, "users", "bob", 3 * 2**20)
    try:
        used, left = _quota(dav_url, token, "/home/bob/")
        assert used + left == 3 * 2**20
        assert abs(used - measure(home)) <= 64 * 1024  # measured (blocks), maybe cached
        r = httpx.put(f"{dav_url}/home/bob/q.bin", content=b"q" * 500_000, headers=headers)
        assert r.status_code in (201, 204)
        after, left_after = _quota(dav_url, token, "/home/bob/")
        assert after >= used + 500_000 and after + left_after == 3 * 2**20
        # a file that does not fit what the property says is left is refused
        too_big = httpx.put(
            f"{dav_url}/home/bob/r.bin", content=b"r" * (left_after + 1), headers=headers
        )
        assert too_big.status_code == 507
        group_used, group_left = _quota(dav_url, token, "/groups/users/")
        assert group_used + group_left == test_hub.settings.groups["users"].quotas.disk
        # not part of allprop (RFC 4331 section 3)
        allprop = httpx.request(
            "PROPFIND", f"{dav_url}/home/bob/", headers={**headers, "Depth": "0"}
        )
        assert allprop.status_code == 207 and b"quota-used-bytes" not in allprop.content
    finally:
        set_override(test_hub.settings, "users", "bob", None)
        httpx.delete(f"{dav_url}/home/bob/q.bin", headers=headers)


# -- rclone, a standard WebDAV client (Debian package) ---------------------------------------


def _rclone(test_hub, dav_url: str, user: str, *args: str, check: bool = True):
    import subprocess

    obscured = subprocess.run(
        ["rclone", "obscure", test_hub.token_for(user)], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "RCLONE_CONFIG": "/dev/null",
        "RCLONE_CONFIG_DAV_TYPE": "webdav",
        "RCLONE_CONFIG_DAV_URL": dav_url,
        "RCLONE_CONFIG_DAV_VENDOR": "other",
        "RCLONE_CONFIG_DAV_USER": "token",
        "RCLONE_CONFIG_DAV_PASS": obscured,
    }
    # "home:" is a remote rooted at the user's home (rclone asks it for the quota properties)
    env |= {k.replace("_DAV_", "_HOME_"): v for k, v in env.items() if "_DAV_" in k}
    env["RCLONE_CONFIG_HOME_URL"] = f"{dav_url}/home/{user}"
    done = subprocess.run(
        ["rclone", "--retries", "1", "--low-level-retries", "1", *args],
        env=env,
        capture_output=True,
        timeout=120,
    )
    if check:
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done


@pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone: scripts/setup.sh installs it")
def test_rclone_copy_ranges_about_move_delete(test_hub, dav_url, tmp_path):
    local = tmp_path / "up"
    local.mkdir()
    body = bytes(range(256)) * 1024  # 256 KiB
    (local / "cube.bin").write_bytes(body)
    (local / "notes.txt").write_text("from rclone\n")
    _rclone(test_hub, dav_url, "alice", "copy", str(local), "dav:home/alice/rc")
    listed = json.loads(_rclone(test_hub, dav_url, "alice", "lsjson", "dav:home/alice/rc").stdout)
    assert sorted((e["Name"], e["Size"]) for e in listed) == [
        ("cube.bin", len(body)),
        ("notes.txt", 12),
    ]
    on_disk = test_hub.settings.homes_dir / "alice/rc/cube.bin"
    assert on_disk.read_bytes() == body
    if os.geteuid() == 0:
        assert on_disk.stat().st_uid == pwd.getpwnam("alice").pw_uid
        assert on_disk.parent.stat().st_uid == pwd.getpwnam("alice").pw_uid
    # a byte range (rclone asks for Range: bytes=1000-1999)
    part = _rclone(
        test_hub, dav_url, "alice", "cat", "--offset", "1000", "--count", "1000",
        "dav:home/alice/rc/cube.bin",
    )  # fmt: skip
    assert part.stdout == body[1000:2000]
    # usage against the quota (RFC 4331 properties)
    about = json.loads(_rclone(test_hub, dav_url, "alice", "about", "--json", "home:").stdout)
    assert about["used"] >= len(body)
    assert about["used"] + about["free"] == test_hub.settings.groups["users"].quotas.disk
    _rclone(test_hub, dav_url, "alice", "moveto", "dav:home/alice/rc/notes.txt",
            "dav:home/alice/rc/moved.txt")  # fmt: skip
    assert (test_hub.settings.homes_dir / "alice/rc/moved.txt").read_text() == "from rclone\n"
    # bob cannot read or write alice's home through rclone either
    refused = _rclone(test_hub, dav_url, "bob", "lsjson", "dav:home/alice/rc", check=False)
    assert refused.returncode != 0
    (local / "evil.txt").write_text("x")
    refused = _rclone(
        test_hub, dav_url, "bob", "copyto", str(local / "evil.txt"), "dav:home/alice/evil.txt",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert not (test_hub.settings.homes_dir / "alice/evil.txt").exists()
    _rclone(test_hub, dav_url, "alice", "purge", "dav:home/alice/rc")
    assert not on_disk.parent.exists()


def test_concurrent_mkcol_and_put_never_fail_with_500(tmp_path):
    """Two clients making the same folder (rclone copies files in parallel, each making the
    parent) or file at once: the loser gets 405 / replaces it, never an internal error."""
    from wsgidav.dav_error import DAVError

    from sciplat.config import Settings
    from sciplat.services.workspace.provider import (
        ENVIRON_GROUPS,
        ENVIRON_USER,
        Workspace,
        WorkspaceProvider,
    )
    from sciplat.services.workspace.quota import DiskUsage

    settings = Settings(data_dir=tmp_path)
    (settings.homes_dir / "nosuchaccount").mkdir(parents=True)
    provider = WorkspaceProvider(Workspace(settings), DiskUsage())
    environ = {ENVIRON_USER: "nosuchaccount", ENVIRON_GROUPS: [], "wsgidav.provider": provider}
    home = provider.get_resource_inst("/home/nosuchaccount", environ)
    (settings.homes_dir / "nosuchaccount" / "made").mkdir()  # by the other request, just now
    with pytest.raises(DAVError) as info:
        home.create_collection("made")
    assert info.value.value == 405
    (settings.homes_dir / "nosuchaccount" / "f.txt").write_text("theirs")
    resource = home.create_empty_resource("f.txt")  # the other PUT made it: this one replaces
    assert resource is not None and "sciplat.created" not in environ
