"""The lab zygote: what it preloads, and images whose zygote cannot start."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

from sciplat.hub import zygote


def test_every_preloaded_module_imports_in_the_platform_env() -> None:
    """A renamed or missing module would silently cost every lab its import time again."""
    code = "import sys\nfor name in sys.argv[1:]:\n    __import__(name)\n"
    result = subprocess.run(
        [sys.executable, "-P", "-c", code, *zygote.PRELOAD],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_an_env_without_sciplat_gets_no_zygote(broken_env: Path, tmp_path: Path) -> None:
    """The hub then starts that image's labs directly (and shows their real error)."""
    handle = zygote.Zygote(
        broken_env / "bin" / "python", tmp_path / "zygote.log", logging.getLogger("test")
    )

    async def check() -> tuple[bool, int | None]:
        answer = await handle.ready(), await handle.fork({})
        if handle._proc is not None:  # reap it inside this loop
            await handle._proc.wait()
        return answer

    assert asyncio.run(check()) == (False, None)
    assert "No module named" in (tmp_path / "zygote.log").read_text()
