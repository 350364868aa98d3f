"""The execution engine on tiny notebooks: outputs, per-cell timing, failures, timeouts, HTML."""

from __future__ import annotations

import time

from conftest import code, notebook

from sciplat.config import Settings
from sciplat.services.notebooks.engine import Executor, RunAs
from sciplat.services.notebooks.render import render_html


def _executor(tmp_path) -> Executor:
    settings = Settings(data_dir=tmp_path)
    settings.notebooks.run_as_user = False
    return Executor(settings)


async def test_success_failure_and_html(tmp_path):
    executor = _executor(tmp_path)
    nb = notebook(
        code("import os\nx = 6"),
        code("print(x * 7, os.environ['ACCESS_TOKEN'], os.environ['JUPYTERHUB_USER'])"),
        code("import json, os\nprint(json.load(open(os.environ['SCIPLAT_DISCOVERY']))['hub_url'])"),
    )
    events = []
    result = await executor.execute(
        nb, run_as=RunAs("alice", "tok-123"), timeout=90,
        discovery={"hub_url": "http://hub.example"}, on_event=events.append,
    )  # fmt: skip
    assert result.status == "succeeded", result.error
    assert result.notebook["cells"][1]["outputs"][0]["text"] == "42 tok-123 alice\n"
    assert result.notebook["cells"][2]["outputs"][0]["text"] == "http://hub.example\n"
    assert [t["index"] for t in result.cell_timings] == [0, 1, 2]
    assert all(t["seconds"] >= 0 for t in result.cell_timings)
    assert result.kernel_seconds > 0
    assert next(e["event"] for e in events) == "kernel"
    html = render_html(result.notebook, title="t")
    assert "42 tok-123 alice" in html

    failing = notebook(code("a = 1"), code("def f():\n    raise KeyError('visit 7')\nf()"),
                       code("print('not reached')"))  # fmt: skip
    result = await executor.execute(failing, run_as=RunAs("alice", "t"), timeout=90)
    assert result.status == "failed"
    assert result.error["index"] == 1
    assert result.error["ename"] == "KeyError"
    assert "visit 7" in result.error["evalue"]
    assert "f()" in result.error["traceback"]
    assert result.notebook["cells"][1]["outputs"][0]["output_type"] == "error"
    assert result.notebook["cells"][2]["outputs"] == []


async def test_timeout_stops_the_run_and_says_so(tmp_path):
    executor = _executor(tmp_path)
    nb = notebook(code("print('started')"), code("import time\ntime.sleep(300)"))
    started = time.monotonic()
    result = await executor.execute(nb, run_as=RunAs("alice", "t"), timeout=25)
    assert time.monotonic() - started < 60
    assert result.status == "timeout"
    assert result.error["index"] == 1
    assert "timeout of 25 s" in result.error["evalue"]
    assert result.notebook["cells"][0]["outputs"][0]["text"] == "started\n"


async def test_sources_stored_as_lists_of_lines(tmp_path):
    """Notebook files usually store sources as lists of lines; the runner joins them."""
    nb = notebook(code("a = 2\nb = 3"), code("print(a * b)"))
    nb["cells"].insert(0, {"cell_type": "markdown", "metadata": {}, "id": "md",
                           "source": ["# Title\n", "text"]})  # fmt: skip
    for cell in nb["cells"][1:]:
        cell["source"] = cell["source"].splitlines(keepends=True)
    result = await _executor(tmp_path).execute(nb, run_as=RunAs("alice", "t"), timeout=90)
    assert result.status == "succeeded", result.error
    assert result.notebook["cells"][2]["outputs"][0]["text"] == "6\n"
    assert [t["index"] for t in result.cell_timings] == [1, 2]  # markdown is not timed
    assert result.total_cells == 2
