"""The notebook client: sciplat.get_sia_service(), get_datalink(), cutout() with a token."""

from __future__ import annotations

import pytest
from pyvo.dal import DALQueryError

import sciplat

pytestmark = pytest.mark.integration


@pytest.fixture
def platform(image_server, tokens):
    return sciplat.discovery(image_server.url, token=tokens["alice"])


def test_search_links_and_cutout(platform, visit_image):
    ra, dec = float(visit_image["s_ra"]), float(visit_image["s_dec"])
    sia = sciplat.get_sia_service(discovery=platform)
    found = sia.search(pos=(ra, dec, 0.001), calib_level=2)
    row = next(r for r in found if r["obs_publisher_did"] == visit_image["obs_publisher_did"])

    links = sciplat.get_datalink(row, discovery=platform)
    # (pyvo's bysemantics() downloads the IVOA vocabulary; the service needs no internet)
    this = next(link for link in links if link.semantics == "#this")
    assert this.content_type == "application/fits"

    hdus = sciplat.cutout(row, circle=(ra, dec, 0.002), discovery=platform)
    assert [h.name for h in hdus] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
    by_id = sciplat.cutout(
        visit_image["obs_publisher_did"],
        polygon=(ra, dec, ra + 0.003, dec, ra, dec + 0.003),
        discovery=platform,
    )
    assert by_id["IMAGE"].data.size > 0

    with pytest.raises(DALQueryError, match="does not overlap"):
        sciplat.cutout(row, circle=(10.0, 10.0, 0.01), discovery=platform)


def test_without_the_scope(image_server, tokens, visit_image):
    carol = sciplat.discovery(image_server.url, token=tokens["carol"])
    with pytest.raises(Exception, match=r"403|Forbidden|custom:image:read"):
        sciplat.get_sia_service(discovery=carol).search(pos=(62.0, -37.0, 0.01))
