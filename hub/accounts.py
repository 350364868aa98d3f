"""Unix accounts for hub users (local backend, run as root).

Each hub user gets a Unix account with the same name, primary group ``sciplat`` and a home
``<data>/home/<name>`` (mode 0700), so labs run as that uid and users cannot read each other's
files. Accounts sciplat created carry the GECOS marker ``sciplat user``; an existing account
without it (``daemon``, a real person's login) is never taken over.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from sciplat.hub.errors import SciplatSpawnError

__all__ = [
    "GECOS",
    "PRIMARY_GROUP",
    "Account",
    "AccountManager",
    "current_account",
    "remove_accounts",
]

GECOS = "sciplat user"
PRIMARY_GROUP = "sciplat"
_UNIX_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


@dataclass(frozen=True)
class Account:
    """Who a lab runs as."""

    name: str
    uid: int
    gid: int
    home: Path


class AccountError(SciplatSpawnError):
    def __init__(self, message: str) -> None:
        super().__init__(message, reason="account", status_code=409)


def current_account(username: str, homes: Path) -> Account:
    """Single-uid development mode: every lab runs as the hub's own uid."""
    home = homes / username
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    return Account(
        name=pwd.getpwuid(os.getuid()).pw_name, uid=os.getuid(), gid=os.getgid(), home=home
    )


class AccountManager:
    """Creates and looks up per-user Unix accounts; one at a time (``useradd`` locks files)."""

    def __init__(self, homes: Path) -> None:
        self.homes = homes
        self._lock = asyncio.Lock()

    async def ensure(self, username: str) -> Account:
        """The account of hub user *username*, created (with its home) if needed."""
        if not _UNIX_NAME.match(username):
            raise AccountError(
                f"The user name {username!r} cannot be a Unix account name (lower-case letters, "
                "digits, '.', '_', '-'; at most 32 characters)."
            )
        home = self.homes / username
        async with self._lock:
            await self._ensure_group()
            try:
                entry = pwd.getpwnam(username)
            except KeyError:
                await _run(
                    "useradd",
                    "--home-dir",
                    str(home),
                    "--no-create-home",
                    "--shell",
                    "/bin/bash",
                    "--comment",
                    GECOS,
                    "--gid",
                    PRIMARY_GROUP,
                    "--no-user-group",
                    username,
                )
                entry = pwd.getpwnam(username)
            else:
                if entry.pw_gecos.split(",")[0] != GECOS:
                    raise AccountError(
                        f"A Unix account {username!r} already exists on this machine and is not "
                        "a sciplat account; refusing to run a lab as it."
                    )
                # The passwd home may name an older data root; labs get HOME from the
                # spawner, so it is left alone (usermod refuses while the user has processes).
        account = Account(name=username, uid=entry.pw_uid, gid=entry.pw_gid, home=home)
        self._ensure_home(account)
        return account

    def _ensure_home(self, account: Account) -> None:
        self.homes.mkdir(parents=True, exist_ok=True)
        os.chmod(self.homes, 0o755)
        try:
            st = os.lstat(account.home)
        except FileNotFoundError:
            os.mkdir(account.home, 0o700)
            os.chown(account.home, account.uid, account.gid)
            st = os.lstat(account.home)
        if not stat.S_ISDIR(st.st_mode):
            raise AccountError(f"The home {account.home} of {account.name!r} is not a directory.")
        if st.st_uid != account.uid:
            # The account was deleted and created again with a new uid: its files follow it.
            _reown_tree(account.home, st.st_uid, account.uid, account.gid)
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(account.home, 0o700)

    async def _ensure_group(self) -> None:
        try:
            grp.getgrnam(PRIMARY_GROUP)
        except KeyError:
            await _run("groupadd", "--system", PRIMARY_GROUP)

    async def remove(self, username: str) -> None:
        """Delete a sciplat-created account (the home stays; used by tests and admins)."""
        async with self._lock:
            try:
                entry = pwd.getpwnam(username)
            except KeyError:
                return
            if entry.pw_gecos.split(",")[0] == GECOS:
                await _run("userdel", username)


def remove_accounts(homes: Path, users: list[str]) -> None:
    """Delete the sciplat-made Unix accounts of *users* (homes stay); nothing unless root.

    For benches and tests that made throw-away users; call it outside an event loop.
    """
    if os.geteuid() != 0:
        return
    manager = AccountManager(homes)

    async def remove_all() -> None:
        for user in users:
            await manager.remove(user)

    asyncio.run(remove_all())


def _reown_tree(root: Path, old_uid: int, uid: int, gid: int) -> None:
    """Give *root* and everything under it that *old_uid* owns to *uid*/*gid* (links not
    followed; files of other owners left alone)."""
    os.chown(root, uid, gid)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            try:
                if os.lstat(path).st_uid == old_uid:
                    os.lchown(path, uid, gid)
            except FileNotFoundError:
                continue


async def _run(*cmd: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode:
        raise SciplatSpawnError(
            "Could not prepare the Unix account for this lab.",
            reason="account",
            status_code=500,
            log_message=f"{' '.join(cmd)} failed ({proc.returncode}): {out.decode().strip()}",
        )
