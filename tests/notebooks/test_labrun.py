"""Cells run in a real Jupyter server's kernel over its REST API and websocket (what the bots do
in a spawned lab): per-cell timing and outputs, the failing cell with its traceback, a timeout
that interrupts the running cell, a refused token."""

from __future__ import annotations

import getpass
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import code, notebook

from sciplat.services.notebooks.labrun import run_in_server
from support.net import free_port, wait_for_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``jupyter server`` on a free port with a token; yields (url, token)."""
    root = tmp_path_factory.mktemp("jpserver")
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(HOME=str(root), MARKER="set-by-the-server", JUPYTER_RUNTIME_DIR=str(root / "rt"))
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.allow_root=True"],
        env=env, stdout=subprocess.DEVNULL, stderr=(root / "server.log").open("wb"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/status?token={token}", process=process, timeout=120)
        yield url, token
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_cells_run_in_the_servers_kernel_with_timings_and_outputs(server):
    url, token = server
    nb = notebook(
        code("import os\nmarker = os.environ['MARKER']"),
        code("   "),  # blank: not executed
        code("print(marker)"),
        code(
            "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
            "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])"
        ),
    )
    nb["metadata"]["kernelspec"]["name"] = "no-such-kernel"  # -> the server's default kernel
    seen: list[int] = []
    run = run_in_server(url, token, nb, timeout=120, on_cell=lambda c: seen.append(c["index"]))
    assert run.status == "succeeded", run.error
    assert run.error is None and run.kernel == "python3"
    assert run.kernel_seconds is not None and run.kernel_seconds > 0
    assert run.identity == {"hub_user": None, "unix_user": getpass.getuser()}
    assert [c["index"] for c in run.cells] == [0, 2, 3] == seen
    assert all(c["seconds"] >= 0 for c in run.cells)
    assert run.cells[1]["outputs"] == ["stream:stdout"]  # the server's environment, printed
    assert "image/png" in run.cells[2]["outputs"]
    # the kernel is shut down afterwards
    import httpx

    kernels = httpx.get(f"{url}/api/kernels", headers={"Authorization": f"token {token}"})
    assert kernels.json() == []


def test_failing_cell_gives_its_index_exception_and_traceback(server):
    url, token = server
    nb = notebook(code("x = 1"), code("def f():\n    raise ValueError('bad visit 7')\nf()"),
                  code("print('never')"))  # fmt: skip
    run = run_in_server(url, token, nb, timeout=120)
    assert run.status == "failed"
    assert run.error["index"] == 1
    assert run.error["ename"] == "ValueError"
    assert run.error["evalue"] == "bad visit 7"
    assert "in f()" in run.error["traceback"] and "\x1b[" not in run.error["traceback"]
    assert [c["index"] for c in run.cells] == [0, 1]  # the cell after the failure never ran


def test_a_notebook_past_its_timeout_is_stopped_and_says_where(server):
    url, token = server
    nb = notebook(code("import time"), code("time.sleep(600)"), code("print('never')"))
    run = run_in_server(url, token, nb, timeout=8)
    assert run.status == "timeout"
    assert run.error["index"] == 1
    assert "timeout of 8 s" in run.error["evalue"] and "cell 1" in run.error["evalue"]
    assert run.cells[-1] == {"index": 1, "seconds": None, "outputs": []}


def test_a_wrong_token_is_refused_before_anything_runs(server):
    url, _ = server
    with pytest.raises(RuntimeError, match=r"HTTP 40[13]"):
        run_in_server(url, "not-the-token", notebook(code("1")), timeout=30)
