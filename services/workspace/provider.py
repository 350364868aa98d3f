"""The workspace as WsgiDAV sees it: ``/home/<user>/...`` and ``/groups/<group>/...``.

Requests arrive authenticated (see :mod:`sciplat.services.workspace.webdav`): the caller's name
and groups are in the WSGI environ. Each path is mapped to exactly one allowed root - the
caller's own home or a group they belong to - and its real path must stay inside that root, so
``..``, absolute paths and symlinks out of the workspace are refused. Run as root, everything
a request creates belongs to the caller's Unix account (as Rubin's WebDAV server does). Writes go
to a temporary file that replaces the target only when complete and within quota: a refused or
broken upload never damages an existing file.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsgidav import util
from wsgidav.dav_error import (
    HTTP_FORBIDDEN,
    HTTP_METHOD_NOT_ALLOWED,
    HTTP_NOT_FOUND,
    DAVError,
)
from wsgidav.dav_provider import DAVCollection, DAVProvider
from wsgidav.fs_dav_provider import FileResource, FolderResource

from sciplat.config import Settings
from sciplat.services.workspace.quota import DiskUsage, group_quota, user_quota

__all__ = ["ENVIRON_GROUPS", "ENVIRON_USER", "QUOTA_PROPERTIES", "Workspace", "WorkspaceProvider"]

ENVIRON_USER = "sciplat.user"
ENVIRON_GROUPS = "sciplat.groups"
HTTP_INSUFFICIENT_STORAGE = 507
#: RFC 4331 live properties of every workspace folder.
QUOTA_PROPERTIES = ("{DAV:}quota-used-bytes", "{DAV:}quota-available-bytes")
GROUP_PREFIX = "sciplat-"


@dataclass(frozen=True)
class Workspace:
    """Where workspaces live and how big they may be."""

    settings: Settings

    @property
    def homes(self) -> Path:
        return self.settings.homes_dir

    @property
    def groups(self) -> Path:
        return self.settings.groups_dir

    @property
    def group_names(self) -> frozenset[str]:
        """Configured groups: only these get shared directories."""
        return frozenset(self.settings.groups)

    def quota_for(self, environ: dict[str, Any], root: Path) -> int:
        """Bytes allowed under *root*: the caller's quota for a home, the group's otherwise."""
        if root.parent == self.groups:
            return group_quota(self.settings, root.name)
        return user_quota(
            self.settings, environ.get(ENVIRON_GROUPS, ()), environ.get(ENVIRON_USER, "")
        )


@dataclass(frozen=True)
class _Target:
    """A resolved request path: the allowed root, the file path and the owner to give it."""

    root: Path
    path: Path
    uid: int
    gid: int


def _owner(user: str, group: str | None) -> tuple[int, int]:
    """uid/gid for files a request creates (-1 = leave as is, e.g. not running as root)."""
    if os.geteuid() != 0:
        return -1, -1
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return -1, -1
    gid = account.pw_gid
    if group is not None:
        with contextlib.suppress(KeyError):
            gid = grp.getgrnam(GROUP_PREFIX + group).gr_gid
    return account.pw_uid, gid


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    if uid < 0:
        return
    os.chown(path, uid, gid, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


class _QuotaWriter:
    """A file opened for a PUT: counts bytes against the quota, replaces the target on close."""

    def __init__(self, resource: _File, limit: int) -> None:
        self._resource = resource
        self._limit = limit
        self._written = 0
        target = resource.target
        fd, tmp = tempfile.mkstemp(prefix=".dav-upload-", dir=target.path.parent)
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        self._written += len(data)
        if self._written > self._limit:
            self._abort()
            raise DAVError(
                HTTP_INSUFFICIENT_STORAGE,
                f"Quota exceeded: this upload needs more than the {self._limit} bytes left "
                "in this workspace; nothing was written",
            )
        return self._file.write(data)

    def _abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)
        self._resource.discard_if_new()

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.close()
        target = self._resource.target
        if target.uid >= 0:
            os.chown(self._tmp, target.uid, target.gid)
        os.chmod(self._tmp, 0o644 & ~_umask())
        os.replace(self._tmp, target.path)
        self._resource.provider.usage.add(target.root, self._written)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _File(FileResource):
    def __init__(self, path: str, environ: dict, target: _Target) -> None:
        super().__init__(path, environ, str(target.path))
        self.target = target

    def begin_write(self, *, content_type: str | None = None) -> _QuotaWriter:
        provider: WorkspaceProvider = self.provider
        left = provider.bytes_left(self.environ, self.target.root)
        length = self.environ.get("CONTENT_LENGTH")
        if length and length.isdigit() and int(length) > left:
            self.discard_if_new()
            raise DAVError(
                HTTP_INSUFFICIENT_STORAGE,
                f"Quota exceeded: {length} bytes do not fit in the {left} bytes left in this "
                "workspace",
            )
        return _QuotaWriter(self, left)

    def discard_if_new(self) -> None:
        """Remove the empty file WsgiDAV created for this PUT, if it did."""
        if self.environ.get("sciplat.created") == str(self.target.path):
            self.target.path.unlink(missing_ok=True)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        provider: WorkspaceProvider = self.provider
        dest = provider.resolve(dest_path, self.environ)
        if not is_move or dest.root != self.target.root:
            needed = self.target.path.stat().st_size
            if needed > provider.bytes_left(self.environ, dest.root):
                raise DAVError(HTTP_INSUFFICIENT_STORAGE, "Quota exceeded at the destination")
        super().copy_move_single(dest_path, is_move=is_move)
        _chown_tree(dest.path, dest.uid, dest.gid)

    def move_recursive(self, dest_path: str) -> None:
        dest = self.provider.resolve(dest_path, self.environ)
        super().move_recursive(dest_path)
        _chown_tree(dest.path, dest.uid, dest.gid)


class _Folder(FolderResource):
    def __init__(self, path: str, environ: dict, target: _Target) -> None:
        super().__init__(path, environ, str(target.path))
        self.target = target

    # RFC 4331 quota properties: the use and room of the whole workspace (home or group
    # directory) this folder is in - the same measurement writes are checked against.
    def get_used_bytes(self) -> int:
        return self.provider.usage.used(self.target.root)

    def get_available_bytes(self) -> int:
        return self.provider.bytes_left(self.environ, self.target.root)

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        names = super().get_property_names(is_allprop=is_allprop)
        if is_allprop:  # RFC 4331 section 3: only returned when asked for by name
            names = [n for n in names if n not in QUOTA_PROPERTIES]
        return names

    def create_empty_resource(self, name: str) -> Any:
        path = util.join_uri(self.path, name)
        target = self.provider.resolve(path, self.environ)
        try:
            target.path.touch(exist_ok=False)
        except FileExistsError:  # a concurrent request created it: this PUT replaces it
            return self.provider.get_resource_inst(path, self.environ)
        if target.uid >= 0:
            os.chown(target.path, target.uid, target.gid)
        self.environ["sciplat.created"] = str(target.path)
        return self.provider.get_resource_inst(path, self.environ)

    def create_collection(self, name: str) -> None:
        path = util.join_uri(self.path, name)
        target = self.provider.resolve(path, self.environ)
        try:
            target.path.mkdir()
        except FileExistsError as exc:  # made meanwhile by a concurrent MKCOL (RFC 4918 9.3.1)
            raise DAVError(HTTP_METHOD_NOT_ALLOWED, f"{name!r} exists already") from exc
        if target.uid >= 0:
            os.chown(target.path, target.uid, target.gid)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        dest = self.provider.resolve(dest_path, self.environ)
        super().copy_move_single(dest_path, is_move=is_move)
        if dest.uid >= 0:
            os.chown(dest.path, dest.uid, dest.gid)

    def move_recursive(self, dest_path: str) -> None:
        dest = self.provider.resolve(dest_path, self.environ)
        super().move_recursive(dest_path)
        _chown_tree(dest.path, dest.uid, dest.gid)


class _Listing(DAVCollection):
    """A read-only virtual collection: ``/``, ``/home`` or ``/groups``."""

    def __init__(self, path: str, environ: dict, names: list[str]) -> None:
        super().__init__(path, environ)
        self._names = names

    def get_member_names(self) -> list[str]:
        return list(self._names)

    def get_member(self, name: str) -> Any:
        return self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)

    def get_display_name(self) -> str:
        return self.name or "/"

    def create_empty_resource(self, name: str) -> Any:
        raise DAVError(HTTP_FORBIDDEN, "Files go in /home/<you>/ or /groups/<group>/")

    def create_collection(self, name: str) -> Any:
        raise DAVError(HTTP_FORBIDDEN, "Folders go in /home/<you>/ or /groups/<group>/")


class WorkspaceProvider(DAVProvider):
    """Serves each caller their own home and their groups' directories, nothing else."""

    def __init__(self, workspace: Workspace, usage: DiskUsage) -> None:
        super().__init__()
        self.workspace = workspace
        self.usage = usage
        self.readonly = False
        self.fs_opts = {"follow_symlinks": False}

    def is_readonly(self) -> bool:
        return False

    # -- access ---------------------------------------------------------------------------

    def _caller(self, environ: dict) -> tuple[str, list[str]]:
        user = environ.get(ENVIRON_USER)
        if not user:
            raise DAVError(HTTP_FORBIDDEN, "Not authenticated")
        groups = [g for g in environ.get(ENVIRON_GROUPS, []) if g in self.workspace.group_names]
        return user, groups

    def resolve(self, path: str, environ: dict) -> _Target:
        """Map a DAV path below ``/home/<user>`` or ``/groups/<group>`` to a file path.

        Refuses other users' homes, groups the caller is not in, and any path whose real
        location leaves its root (``..``, symlinks).
        """
        user, groups = self._caller(environ)
        parts = [p for p in path.strip("/").split("/") if p]
        if len(parts) < 2 or parts[0] not in ("home", "groups"):
            raise DAVError(HTTP_FORBIDDEN, "Only /home/<you>/ and /groups/<group>/ are writable")
        if any(p in (".", "..") or "\x00" in p for p in parts):
            raise DAVError(HTTP_FORBIDDEN, "Path segments '.' and '..' are not allowed")
        kind, owner, rest = parts[0], parts[1], parts[2:]
        if kind == "home":
            if owner != user:
                raise DAVError(HTTP_FORBIDDEN, f"/home/{owner} is not your home")
            root = self.workspace.homes / user
            uid, gid = _owner(user, None)
        else:
            if owner not in groups:
                raise DAVError(HTTP_FORBIDDEN, f"You are not a member of group {owner!r}")
            root = self.workspace.groups / owner
            uid, gid = _owner(user, owner)
            if not root.exists():
                self._make_group_dir(root, owner)
        if not root.exists():
            raise DAVError(HTTP_NOT_FOUND, f"Your home {root.name!r} does not exist yet")
        file_path = root.joinpath(*rest)
        real_root = root.resolve()
        # The parent must resolve inside the root; the leaf itself must not be a symlink.
        real_parent = file_path.parent.resolve() if rest else real_root
        if not (real_parent == real_root or real_root in real_parent.parents):
            raise DAVError(HTTP_FORBIDDEN, "Access outside your workspace is not allowed")
        if rest and file_path.is_symlink():
            raise DAVError(HTTP_FORBIDDEN, "Symbolic links are not served")
        return _Target(root=root, path=file_path, uid=uid, gid=gid)

    def _loc_to_file_path(self, path: str, environ: dict | None = None) -> str:
        """WsgiDAV's resource classes map destinations (COPY/MOVE) through this."""
        return str(self.resolve(path, environ or {}).path)

    def _make_group_dir(self, root: Path, group: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        mode = 0o2770
        if os.geteuid() == 0:
            with contextlib.suppress(KeyError):
                os.chown(root, 0, grp.getgrnam(GROUP_PREFIX + group).gr_gid)
        root.chmod(mode)

    def bytes_left(self, environ: dict, root: Path) -> int:
        return max(0, self.workspace.quota_for(environ, root) - self.usage.used(root))

    # -- DAVProvider ----------------------------------------------------------------------

    def get_resource_inst(self, path: str, environ: dict) -> Any:
        self._count_get_resource_inst += 1
        user, groups = self._caller(environ)
        parts = [p for p in path.strip("/").split("/") if p]
        if not parts:
            return _Listing("/", environ, ["home", "groups"])
        if len(parts) == 1:
            if parts[0] == "home":
                return _Listing("/home", environ, [user])
            if parts[0] == "groups":
                return _Listing("/groups", environ, sorted(groups))
            return None
        target = self.resolve(path, environ)
        if not target.path.exists():
            return None
        if target.path.is_dir():
            return _Folder(path, environ, target)
        return _File(path, environ, target)
