"""Unit tests of the lab server extension's modules (no servers): status, start-up checks,
tutorials, paths, query notebooks, file types and template sidecars."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sciplat.labextension import (
    paths,
    portalsend,
    queries,
    runs,
    startup,
    status,
    tutorials,
    usage,
)
from sciplat.labextension.errors import BadRequest, Conflict, NotFound, Unprocessable

# -- status ---------------------------------------------------------------------------------


def _cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    (tmp_path / "proc").write_text(proc)
    for rel, text in files.items():
        (tmp_path / "fs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / rel).write_text(text)
    return tmp_path / "proc", tmp_path / "fs"


def test_cgroup_v2_memory(tmp_path):
    proc, fs = _cgroup(
        tmp_path, "0::/sciplat/alice\n",
        {"sciplat/alice/memory.current": "1048576\n", "sciplat/alice/memory.max": "4294967296\n"},
    )  # fmt: skip
    assert status.cgroup_memory(proc, fs) == (1048576, 4294967296)


def test_cgroup_v2_unlimited_and_v1(tmp_path):
    proc, fs = _cgroup(
        tmp_path, "4:memory:/sciplat/bob\n0::/\n",
        {"memory/sciplat/bob/memory.usage_in_bytes": "2000",
         "memory/sciplat/bob/memory.limit_in_bytes": str(2**63 - 4096)},
    )  # fmt: skip
    assert status.cgroup_memory(proc, fs) == (2000, None)  # v1; its huge number is "no limit"
    (tmp_path / "proc").write_text("0::/lab\n")
    (fs / "lab").mkdir()
    (fs / "lab" / "memory.current").write_text("77")
    (fs / "lab" / "memory.max").write_text("max")
    assert status.cgroup_memory(proc, fs) == (77, None)


def test_root_cgroup_is_not_the_labs(tmp_path):
    proc, fs = _cgroup(tmp_path, "0::/\n4:memory:/\n", {"memory.current": "5"})
    assert status.cgroup_memory(proc, fs) is None
    assert status.cgroup_memory(tmp_path / "missing", fs) is None


def test_lab_status_from_spawner_env():
    env = {
        "SCIPLAT_IMAGE": "w2026_47", "SCIPLAT_IMAGE_TAG": "weekly",
        "SCIPLAT_IMAGE_DISPLAY": "Weekly 2026_47", "SCIPLAT_SIZE": "small",
        "MEM_LIMIT": "3221225472", "CPU_LIMIT": "1.5",
    }  # fmt: skip
    answer = status.lab_status(env, status.CgroupMemory(10, 99))
    assert answer["image"] == {"name": "w2026_47", "tag": "weekly", "display": "Weekly 2026_47"}
    assert answer["size"] == {"name": "small", "cpu": 1.5, "memory_limit_bytes": 3221225472}
    # the spawner's limit wins over the cgroup's
    assert answer["memory"] == {"used_bytes": 10, "limit_bytes": 3221225472, "source": "cgroup"}


def test_lab_status_without_cgroup_counts_the_process_tree():
    answer = status.lab_status({"MEM_LIMIT": "garbage"}, None)
    assert answer["memory"]["source"] == "processes"
    assert answer["memory"]["used_bytes"] > 10 * 2**20  # this pytest process alone
    assert answer["memory"]["limit_bytes"] is None
    assert answer["image"]["display"] == "unknown image"


# -- start-up problems ----------------------------------------------------------------------


def _discovery(tmp_path: Path) -> str:
    path = tmp_path / "discovery.json"
    path.write_text(json.dumps({"hub_url": "http://x", "services": {}}))
    return str(path)


def test_no_problems(tmp_path):
    env = {"JUPYTERHUB_API_TOKEN": "t", "SCIPLAT_DISCOVERY": _discovery(tmp_path)}
    assert startup.startup_problems(tmp_path, env, 1) == []


def test_disk_full_when_free_space_is_below_the_threshold(tmp_path):
    env = {"JUPYTERHUB_API_TOKEN": "t", "SCIPLAT_DISCOVERY": _discovery(tmp_path)}
    problems = startup.startup_problems(tmp_path, env, 2**62)
    assert [p["code"] for p in problems] == ["disk-full"]
    assert "free" in problems[0]["detail"] and problems[0]["remedy"]
    assert startup.check_disk(tmp_path, 0) is None  # 0 turns the check off


def test_home_not_writable(tmp_path):
    home = tmp_path / "not-a-dir"
    home.write_text("x")  # root can write anywhere, but not into a file
    problem = startup.check_home_writable(home)
    assert problem["code"] == "home-not-writable" and "Not a directory" in problem["detail"]


def test_token_missing(tmp_path):
    problem = startup.check_token({})
    assert problem["code"] == "token-missing"
    assert "JUPYTERHUB_API_TOKEN" in problem["detail"] and "SCIPLAT_DISCOVERY" in problem["detail"]
    bad = tmp_path / "d.json"
    bad.write_text("{not json")
    problem = startup.check_token({"ACCESS_TOKEN": "t", "SCIPLAT_DISCOVERY": str(bad)})
    assert "unreadable" in problem["detail"] and "TOKEN" not in problem["detail"]


# -- paths ----------------------------------------------------------------------------------


def test_paths_are_confined_to_the_root(tmp_path):
    root = tmp_path / "home"
    (root / "data").mkdir(parents=True)
    (root / "data" / "t.csv").write_text("a\n1\n")
    (root / "out").symlink_to("/etc")
    assert paths.resolve_in_root(root, "data/t.csv") == (root / "data" / "t.csv").resolve()
    for bad in ("/etc/passwd", "../x", "data/../../x", "out/passwd", "", None, 5):
        with pytest.raises(BadRequest):
            paths.resolve_in_root(root, bad)
    with pytest.raises(NotFound):
        paths.resolve_in_root(root, "data/missing.csv")


def test_write_new_file_never_overwrites(tmp_path):
    first = paths.write_new_file(tmp_path / "q", "job1", ".ipynb", "a")
    second = paths.write_new_file(tmp_path / "q", "job1", ".ipynb", "b")
    assert (first.name, second.name) == ("job1.ipynb", "job1-1.ipynb")
    assert first.read_text() == "a" and second.read_text() == "b"


# -- tutorials ------------------------------------------------------------------------------


@pytest.fixture
def tutorial_root(tmp_path: Path) -> Path:
    root = tmp_path / "shipped"
    (root / "advanced").mkdir(parents=True)
    nb = {"cells": [{"cell_type": "markdown", "source": ["# 01 · Hello\n", "text"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    (root / "01-hello.ipynb").write_text(json.dumps(nb))
    (root / "advanced" / "deep-dive.ipynb").write_text(json.dumps({"cells": []}))
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.ipynb").write_text("{}")
    return root


def test_tutorial_sections(tutorial_root):
    answer = tutorials.list_tutorials(tutorial_root)
    assert answer == {"sections": [
        {"name": "tutorials", "title": "Tutorials",
         "notebooks": [{"path": "01-hello.ipynb", "title": "01 · Hello"}]},
        {"name": "advanced", "title": "Advanced",
         "notebooks": [{"path": "advanced/deep-dive.ipynb", "title": "deep-dive"}]},
    ]}  # fmt: skip


def test_shipped_tutorials_are_listed():
    titles = [n["title"] for s in tutorials.list_tutorials()["sections"] for n in s["notebooks"]]
    assert "02 · Catalogs with TAP and ADQL" in titles


def test_tutorial_copy_never_overwrites_without_asking(tmp_path, tutorial_root):
    lab = tmp_path / "lab"
    lab.mkdir()
    answer = tutorials.copy_tutorial(lab, "advanced/deep-dive.ipynb", root=tutorial_root)
    assert answer == {"copied_to": "notebooks/tutorials/advanced/deep-dive.ipynb"}
    copy = lab / answer["copied_to"]
    copy.write_text("my edits")
    with pytest.raises(Conflict) as info:
        tutorials.copy_tutorial(lab, "advanced/deep-dive.ipynb", root=tutorial_root)
    assert info.value.as_json()["copied_to"] == answer["copied_to"]
    assert copy.read_text() == "my edits"
    tutorials.copy_tutorial(lab, "advanced/deep-dive.ipynb", overwrite=True, root=tutorial_root)
    assert json.loads(copy.read_text()) == {"cells": []}


def test_tutorial_copy_refuses_bad_paths(tmp_path, tutorial_root):
    lab = tmp_path / "lab"
    lab.mkdir()
    for bad in ("../shipped/01-hello.ipynb", "/etc/passwd", "01-hello.txt", None):
        with pytest.raises(BadRequest):
            tutorials.copy_tutorial(lab, bad, root=tutorial_root)
    with pytest.raises(NotFound):
        tutorials.copy_tutorial(lab, "99-none.ipynb", root=tutorial_root)
    (lab / "notebooks").mkdir()
    (lab / "notebooks" / "tutorials").symlink_to(tmp_path)  # planted to lead out of the lab
    with pytest.raises(BadRequest, match="outside"):
        tutorials.copy_tutorial(lab, "01-hello.ipynb", root=tutorial_root)


# -- queries --------------------------------------------------------------------------------


def test_history_items_keep_async_jobs():
    entries = [
        {"time": 0, "mode": "sync", "query": "SELECT 1", "status": "OK"},
        {"time": 1.7e9, "mode": "async", "query": "SELECT 2", "status": "OVERFLOW", "rows": 5,
         "job_id": "abc", "job_url": "http://h/tap/async/abc"},
        {"time": 1.7e9, "mode": "async", "query": "SELEC", "status": "ERROR", "job_id": "def",
         "message": "syntax error", "job_url": "http://h/tap/async/def"},
        {"time": 1.7e9, "mode": "async", "query": "SELECT 3", "status": "OK", "job_id": "gone",
         "job_deleted": True},
    ]  # fmt: skip
    items = queries.history_items(entries, "http://h/portal/")
    assert [(i["job_id"], i["phase"]) for i in items] == [("abc", "COMPLETED"), ("def", "ERROR")]
    assert items[0]["result_url"] == "http://h/tap/async/abc/results/result"
    assert items[0]["created"].startswith("2023-11-14T")
    assert items[1]["message"] == "syntax error"
    # the portal's deep link opens that job's result
    assert items[1]["portal_url"] == "http://h/portal/?job=def"
    assert queries.portal_job_url("http://h/portal", "a.b_c-1") == "http://h/portal/?job=a.b_c-1"
    assert queries.history_items(entries, None)[0]["portal_url"] is None


def test_query_notebook_fetches_the_result_with_get_query():
    import nbformat

    nb = queries.query_notebook("a1b2-c3", "SELECT TOP 5 * FROM dp1.Object")
    nbformat.validate(nbformat.from_dict(nb))
    code = [c["source"] for c in nb["cells"] if c["cell_type"] == "code"]
    assert code == ["import sciplat\n\ntable = sciplat.get_query('a1b2-c3')\ntable"]
    assert "SELECT TOP 5" in nb["cells"][0]["source"]
    for bad in ("x'); import os; ('", "", "a/b"):
        with pytest.raises(BadRequest):
            queries.query_notebook(bad)


# -- workspace usage -----------------------------------------------------------------------

MULTISTATUS = b"""<?xml version="1.0" encoding="utf-8"?>
<d:multistatus xmlns:d="DAV:">
<d:response><d:href>/services/api/webdav/groups/</d:href>
 <d:propstat><d:prop><d:quota-used-bytes/></d:prop><d:status>HTTP/1.1 404</d:status></d:propstat>
</d:response>
<d:response><d:href>/services/api/webdav/groups/my%20group/</d:href>
 <d:propstat><d:prop><d:quota-used-bytes>4096</d:quota-used-bytes>
 <d:quota-available-bytes>1044480</d:quota-available-bytes></d:prop>
 <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
</d:response>
<d:response><d:href>http://h/services/api/webdav/groups/odd/</d:href>
 <d:propstat><d:prop><d:quota-used-bytes>12</d:quota-used-bytes></d:prop>
 <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
</d:response>
</d:multistatus>"""


def test_parse_quota_properties():
    folders = usage.parse_quota(MULTISTATUS)
    assert folders == {
        "/services/api/webdav/groups/my group": {"used_bytes": 4096, "quota_bytes": 2**20},
        "/services/api/webdav/groups/odd": {"used_bytes": 12, "quota_bytes": None},
    }
    assert usage.parse_quota(b"<not xml") == {}


# -- portal file types ----------------------------------------------------------------------


def test_table_kinds():
    assert portalsend.table_kind(Path("a/T.VOT")) == "VOTable"
    assert portalsend.table_kind(Path("t.parquet")) == "Parquet"
    with pytest.raises(Exception) as info:
        portalsend.table_kind(Path("notes.txt"))
    assert info.value.status == 415 and ".csv" in info.value.message
    assert info.value.as_json()["error"] == "unsupported-type"


# -- run with parameters --------------------------------------------------------------------

NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5, "metadata": {},
    "cells": [{"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]},
               "source": "n = 1", "outputs": [], "execution_count": None}],
}  # fmt: skip


async def test_run_schema_from_the_sidecar(tmp_path):
    (tmp_path / "sq.ipynb").write_text(json.dumps(NOTEBOOK))
    (tmp_path / "sq.yaml").write_text(
        "title: Square\ndescription: d\nparameters:\n"
        "  n: {type: integer, default: 3, minimum: 0, maximum: 9}\n"
    )
    (tmp_path / "plain.ipynb").write_text(json.dumps(NOTEBOOK))
    answer = await runs.run_schema(tmp_path, "sq.ipynb")
    assert answer["has_template"] and answer["title"] == "Square"
    assert answer["schema"]["properties"]["n"]["maximum"] == 9
    assert answer["schema"]["required"] == ["n"]
    assert (await runs.run_schema(tmp_path, "plain.ipynb"))["has_template"] is False
    with pytest.raises(BadRequest):
        await runs.run_schema(tmp_path, "sq.yaml")


async def test_bad_sidecar_is_422_with_the_reason(tmp_path):
    (tmp_path / "bad.ipynb").write_text(json.dumps(NOTEBOOK))
    sidecar = "title: Bad\nparameters:\n  n: {type: integer, default: x}\n"
    (tmp_path / "bad.yaml").write_text(sidecar)
    with pytest.raises(Unprocessable) as info:
        await runs.run_schema(tmp_path, "bad.ipynb")
    assert info.value.code == "bad-sidecar" and "default is invalid" in info.value.message
    os.unlink(tmp_path / "bad.yaml")
    (tmp_path / "bad.yaml").write_text("title: [unclosed\n")
    with pytest.raises(Unprocessable, match="not valid YAML"):
        await runs.run_schema(tmp_path, "bad.ipynb")
