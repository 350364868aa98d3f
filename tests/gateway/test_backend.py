"""The safe local backend: a cluster's working directory, and nothing else, goes to its user."""

from __future__ import annotations

import os
import pwd
import secrets
from pathlib import Path
from types import SimpleNamespace

import pytest

from sciplat.hub.gateway.backend import SciplatLocalBackend, _check_traversable


def _owners(paths: list[Path]) -> dict[str, tuple[int, int]]:
    out = {}
    for path in paths:
        st = os.lstat(path)
        out[str(path)] = (st.st_uid, st.st_gid)
    return out


def _tree(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_working_directory_owned_by_user_and_nothing_else_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nobody = pwd.getpwnam("nobody")
    clusters = tmp_path / "gateway" / "clusters"
    # Single-character files in the working directory: what upstream's `paths.extend(path)`
    # would have chowned (with "/" first) while walking the path string.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for name in "/tmpgatewayclusterdask.crtpem":
        if name != "/":
            (cwd / name).touch()
    monkeypatch.chdir(cwd)
    watched = [Path("/"), Path("/tmp"), tmp_path, *_tree(cwd)]
    before = _owners(watched)

    backend = SciplatLocalBackend(clusters_directory=str(clusters))
    cluster = SimpleNamespace(
        name=secrets.token_hex(16), username="nobody", tls_cert=b"CERT", tls_key=b"KEY"
    )
    workdir = Path(backend.setup_working_directory(cluster))

    assert _owners(watched) == before
    assert workdir == clusters / cluster.name
    created = _tree(workdir)
    assert {p.name for p in created} == {cluster.name, ".certs", "logs", "dask.crt", "dask.pem"}
    for path in created:
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), path
        assert st.st_mode & 0o077 == 0, path  # private to the user
    assert (workdir / ".certs" / "dask.pem").read_bytes() == b"KEY"
    # The parents stay root's; users may pass through, not list.
    for parent in (clusters, clusters.parent):
        assert os.stat(parent).st_uid == 0
    assert os.stat(clusters).st_mode & 0o777 == 0o711

    # Never chown outside the clusters directory, even if asked to.
    with pytest.raises(RuntimeError, match="not inside a cluster directory"):
        backend.set_file_permissions([str(cwd / "t")], "nobody")
    with pytest.raises(RuntimeError, match="not inside a cluster directory"):
        backend.set_file_permissions(["/"], "nobody")
    assert _owners(watched) == before

    # A second cluster with a name that tries to escape is refused.
    evil = SimpleNamespace(name="../../etc", username="nobody", tls_cert=b"", tls_key=b"")
    with pytest.raises(RuntimeError, match="unexpected cluster name"):
        backend.setup_working_directory(evil)


def test_unreachable_clusters_directory_is_reported(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    with pytest.raises(RuntimeError, match="not searchable by other users"):
        _check_traversable(private / "gateway" / "clusters")
