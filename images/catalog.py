"""The lab image catalogue: which Python environments labs can run in, grouped by tag.

An *image* here is what the RSP calls one: a complete lab environment a user picks on the spawn
page. In the embedded default it is a venv prefix (``ImageConfig.env``; None means the
environment sciplat itself runs in, the "recommended" image); the Kubernetes backend uses
``container_image`` instead. Tags follow the RSP's menu: recommended, release, weekly, daily,
experimental.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sciplat.config import ImageConfig

__all__ = ["TAGS", "ImageCatalog", "LabImage", "build_env"]

#: Tag classes in the order the spawn form shows them.
TAGS: tuple[str, ...] = ("recommended", "release", "weekly", "daily", "experimental")
TAG_LABELS: dict[str, str] = {
    "recommended": "Recommended",
    "release": "Releases",
    "weekly": "Weekly builds",
    "daily": "Daily builds",
    "experimental": "Experimental",
}
SPECS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class LabImage:
    """One selectable lab environment."""

    name: str
    tag: str
    display_name: str
    prefix: Path
    container_image: str = ""

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    def lab_command(self) -> list[str]:
        """The command that starts a JupyterHub single-user lab from this environment."""
        return [str(self.python), "-m", "sciplat.hub.labstart"]

    def problems(self) -> list[str]:
        """What is wrong with the environment on this machine (empty when usable)."""
        if not self.prefix.is_dir():
            return [f"environment {self.prefix} does not exist"]
        if not self.python.exists():
            return [f"environment {self.prefix} has no bin/python"]
        return []


class ImageCatalog:
    """The configured images; *default_prefix* is the environment of the "recommended" image."""

    def __init__(self, images: Iterable[ImageConfig], default_prefix: Path | None = None) -> None:
        base = Path(default_prefix or sys.prefix)
        self._images: dict[str, LabImage] = {}
        for cfg in images:
            self._images[cfg.name] = LabImage(
                name=cfg.name,
                tag=cfg.tag,
                display_name=cfg.display_name or cfg.name,
                prefix=Path(cfg.env) if cfg.env else base,
                container_image=cfg.container_image,
            )

    def __iter__(self):
        return iter(self._images.values())

    def __len__(self) -> int:
        return len(self._images)

    def names(self) -> list[str]:
        return list(self._images)

    def get(self, name: str) -> LabImage:
        """The image called *name*; KeyError names the known ones."""
        try:
            return self._images[name]
        except KeyError:
            raise KeyError(f"unknown image {name!r} (known: {', '.join(self._images)})") from None

    def default(self) -> LabImage:
        """The first image tagged "recommended" (the schema guarantees one exists)."""
        return next(i for i in self._images.values() if i.tag == "recommended")

    def by_tag(self) -> list[tuple[str, list[LabImage]]]:
        """Images grouped by tag, in menu order, empty tags left out."""
        groups = [(tag, [i for i in self._images.values() if i.tag == tag]) for tag in TAGS]
        return [(tag, images) for tag, images in groups if images]


def build_env(
    spec: str | Path, prefix: Path, *, base: Path | None = None, python: Path | None = None
) -> Path:
    """Build a lab environment at *prefix* from an image spec in ``images/<spec>/``.

    The new venv is layered on *base* (default: the environment sciplat runs in): it sees the
    base's packages through a ``.pth`` file, so it only installs what the spec's
    ``requirements.txt`` adds or pins differently. Register it in ``sciplat.yaml``::

        images:
          - {name: exp-2026-11, tag: experimental, env: /opt/sciplat/envs/exp-2026-11}
    """
    spec_dir = Path(spec) if Path(spec).is_dir() else SPECS_DIR / str(spec)
    requirements = spec_dir / "requirements.txt"
    if not requirements.is_file():
        raise FileNotFoundError(f"image spec {spec_dir} has no requirements.txt")
    base = Path(base or sys.prefix)
    interpreter = python or Path(sys.base_prefix) / "bin" / f"python3.{sys.version_info.minor}"
    subprocess.run([str(interpreter), "-m", "venv", str(prefix)], check=True)
    site = prefix / "lib" / f"python3.{sys.version_info.minor}" / "site-packages"
    base_site = base / "lib" / f"python3.{sys.version_info.minor}" / "site-packages"
    (site / "_sciplat_base.pth").write_text(f"{base_site}\n")
    lines = [
        ln
        for ln in requirements.read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if lines and spec_dir.resolve() != (SPECS_DIR / "recommended").resolve():
        subprocess.run(
            [str(prefix / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)],
            check=True,
        )
    subprocess.run(["chmod", "-R", "a+rX", str(prefix)], check=True)
    return prefix
