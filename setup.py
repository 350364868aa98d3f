"""Map each top-level code directory onto a ``sciplat.<area>`` subpackage.

``hub/`` -> ``sciplat.hub``, ``services/`` -> ``sciplat.services``, ... (ARCHITECTURE.md,
"Layout"). Everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

AREAS = {
    "hub": "hub",
    "services": "services",
    "pipelines": "pipelines",
    "kernels": "kernels",
    "images": "images",
    "notebooks": "notebooks",
    "labextension": "lab-extensions",
}

packages = ["sciplat", *(f"sciplat.{p}" for p in find_packages("sciplat"))]
package_dir = {"sciplat": "sciplat"}
for area, directory in AREAS.items():
    packages += [f"sciplat.{area}", *(f"sciplat.{area}.{p}" for p in find_packages(directory))]
    package_dir[f"sciplat.{area}"] = directory

setup(packages=packages, package_dir=package_dir)
