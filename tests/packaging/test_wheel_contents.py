"""A non-editable install carries every file the code reads at run time.

Labs run from the image environment, which may hold a copy of sciplat rather than a link to the
checkout (scripts/setup.sh falls back to that when other accounts cannot read the checkout).
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AREAS = {
    "sciplat": "sciplat",
    "hub": "sciplat/hub",
    "services": "sciplat/services",
    "pipelines": "sciplat/pipelines",
    "kernels": "sciplat/kernels",
    "images": "sciplat/images",
    "notebooks": "sciplat/notebooks",
    "lab-extensions": "sciplat/labextension",
}


def tracked_package_files() -> dict[str, str]:
    """Tracked files under the code folders, keyed by the path they must have in the wheel."""
    listed = subprocess.run(
        ["git", "ls-files", *AREAS], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    wanted = {}
    for path in listed:
        top, _, rest = path.partition("/")
        if "-" in Path(rest).parent.as_posix():  # the lab extension's TypeScript package
            continue
        wanted[f"{AREAS[top]}/{rest}"] = path
    return wanted


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    if not (REPO / ".git").exists():
        pytest.fail("the packaging test needs a git checkout")
    # Build from a copy of the tracked tree: building in place leaves a build/ folder whose stale
    # files would end up in later wheels.
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for path in listed:
        if (REPO / path).is_file():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, source / path)
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = ["pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out)]
    subprocess.run(
        [sys.executable, "-m", *pip_wheel, str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("sciplat-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_every_tracked_package_file_is_in_the_wheel(wheel_names: set[str]) -> None:
    missing = sorted(
        src for dest, src in tracked_package_files().items() if dest not in wheel_names
    )
    assert not missing, f"files a non-editable install would lack: {missing}"


def test_wheel_carries_no_build_debris(wheel_names: set[str]) -> None:
    debris = [n for n in wheel_names if "__pycache__" in n or "node_modules" in n]
    assert not debris
