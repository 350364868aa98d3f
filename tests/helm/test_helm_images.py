"""Container images: Dockerfiles generated from (and checked against) the environment specs.

No image is built here (no Docker on this machine); what is checked is that each Dockerfile is
the one generated from its spec, that its package set is the spec's, and that every image the
chart deploys has a Dockerfile and a tag in the spawn menu's grammar.
"""

from __future__ import annotations

import shutil
from datetime import date

import pytest
from chartdocs import VALUES_FILES

from sciplat.config import Settings
from sciplat.helmchart import CHART_DIR, load_values
from sciplat.images import dockerfiles
from sciplat.images.dockerfiles import (
    check,
    image_tag,
    installed_packages,
    requirements,
    spec_for_image,
    tag_class,
)


def chart_lab_images() -> list[tuple[str, str]]:
    """(container_image, menu tag) of every lab image in values.yaml and the ci values."""
    out = []
    for path in [CHART_DIR / "values.yaml", *VALUES_FILES]:
        images = load_values([path]).get("sciplat", {}).get("images", [])
        out += [(i["container_image"], i.get("tag", "release")) for i in images]
    return out


def test_dockerfiles_are_generated_and_match_their_specs():
    assert check() == []


@pytest.mark.parametrize(("container_image", "menu_tag"), chart_lab_images())
def test_every_catalogue_image_has_a_dockerfile_with_its_spec_packages(container_image, menu_tag):
    spec = spec_for_image(container_image)
    dockerfile = (dockerfiles.IMAGES_DIR / spec / "Dockerfile").read_text()
    assert set(installed_packages(dockerfile)) == set(requirements(spec))
    # the container tag is a build of the menu class the spawner shows it under
    assert tag_class(container_image.rpartition(":")[2]) == menu_tag


def test_service_images_used_by_the_chart_exist():
    values = load_values([CHART_DIR / "values.yaml"])
    names = {values[c]["image"]["name"] for c in ("api", "portal", "workers", "alerts")}
    names |= {values["postgresql"]["image"]["name"]}
    names |= {values["jupyterhub"]["hub"]["image"]["name"].rsplit("/", 1)[1]}
    names |= {values["dask-gateway"]["gateway"]["image"]["name"].rsplit("/", 1)[1]}
    assert names == {"services", "postgres", "hub"}
    for name in names:
        assert (dockerfiles.IMAGES_DIR / name / "Dockerfile").is_file()
    lab = values["dask-gateway"]["gateway"]["backend"]["image"]
    assert spec_for_image(f"{lab['name']}:{lab['tag']}") == "recommended"  # workers = lab


def test_drift_between_spec_and_dockerfile_is_reported(tmp_path, monkeypatch):
    copy = tmp_path / "images"
    shutil.copytree(dockerfiles.IMAGES_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(dockerfiles, "IMAGES_DIR", copy)
    assert check() == []
    with open(copy / "recommended" / "requirements.txt", "a") as f:
        f.write("astroquery>=0.4\n")
    problems = check()
    assert "images/recommended/Dockerfile is stale" in problems
    assert any("misses ['astroquery>=0.4']" in p for p in problems)
    dockerfiles.write()
    assert check() == []
    assert '"astroquery>=0.4"' in (copy / "recommended" / "Dockerfile").read_text()


def test_tag_scheme_matches_the_menu():
    assert image_tag("recommended") == "recommended"
    assert image_tag("release", version="1.0.0") == "r1_0_0"
    assert image_tag("weekly", when=date(2026, 11, 21)) == "w_2026_47"
    assert image_tag("daily", when=date(2026, 11, 21)) == "d_2026_11_21"
    assert image_tag("experimental", name="gpu") == "exp_gpu"
    for cls in ("recommended", "release", "weekly", "daily"):
        tag = image_tag(cls, version="2.3.4", when=date(2027, 1, 1))
        assert tag_class(tag) == cls
        assert (
            cls in Settings.model_json_schema()["$defs"]["ImageConfig"]["properties"]["tag"]["enum"]
        )
    with pytest.raises(ValueError, match="none of the menu's forms"):
        tag_class("latest")
    with pytest.raises(ValueError, match=r"X\.Y\.Z"):
        image_tag("release", version="v1")
    with pytest.raises(ValueError, match="not a sciplat lab image"):
        spec_for_image("docker.io/jupyter/base-notebook:recommended")


def test_services_image_carries_the_portal_npm_packages_where_the_portal_looks(
    tmp_path, monkeypatch
):
    from sciplat.services.portal.app import aladin_path

    text = (dockerfiles.IMAGES_DIR / "services" / "Dockerfile").read_text()
    for package in dockerfiles.PORTAL_NPM:
        assert f"--prefix /opt/sciplat/node {package}" in text
    assert (
        "COPY --from=portal-npm /opt/sciplat/node/node_modules /opt/sciplat/node/node_modules"
        in (text)
    )
    # the image's layout is the one aladin_path() resolves under the default prefix
    monkeypatch.setenv("SCIPLAT_PREFIX", str(tmp_path))
    js = tmp_path / "node" / "node_modules" / "aladin-lite" / "dist" / "aladin.js"
    assert aladin_path() is None
    js.parent.mkdir(parents=True)
    js.write_text("/* aladin */")
    assert aladin_path() == js
    # one npm spec for both shapes: the local setup installs the same package
    monkeypatch.setattr(dockerfiles, "SETUP_SH", tmp_path / "setup.sh")
    (tmp_path / "setup.sh").write_text("npm install --prefix x aladin-lite@2\n")
    assert "scripts/setup.sh does not install aladin-lite@3 as the image does" in check()
