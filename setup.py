"""Map each top-level code directory onto a ``sciplat.<area>`` subpackage.

``hub/`` -> ``sciplat.hub``, ``services/`` -> ``sciplat.services``, ... (ARCHITECTURE.md,
"Layout"). Everything else lives in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

AREAS = {
    "hub": "hub",
    "services": "services",
    "pipelines": "pipelines",
    "kernels": "kernels",
    "images": "images",
    "notebooks": "notebooks",
    "labextension": "lab-extensions",
}

# Namespace discovery: data-only folders (templates/, static/, notebooks/tutorials/, kernels/lsst/)
# are packages too, so a non-editable install carries their files (package-data in pyproject).
# Build trees of the lab extension's TypeScript package are not Python.
SKIP = ["*__pycache__*", "*node_modules*", "*.egg-info*", "*-*"]


def subpackages(directory: str) -> list[str]:
    return find_namespace_packages(directory, exclude=SKIP)


packages = ["sciplat", *(f"sciplat.{p}" for p in subpackages("sciplat"))]
package_dir = {"sciplat": "sciplat"}
for area, directory in AREAS.items():
    packages += [f"sciplat.{area}", *(f"sciplat.{area}.{p}" for p in subpackages(directory))]
    package_dir[f"sciplat.{area}"] = directory

setup(packages=packages, package_dir=package_dir)
