"""Association into DIAObjects in a real (SQLite) APDB."""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from lsst.sphgeom import Angle, Circle, LonLat, UnitVector3d

from sciplat.pipelines.tasks import association


def _dia(ra, dec, flux) -> Table:
    n = len(ra)
    t = Table()
    t["coord_ra"], t["coord_dec"] = np.asarray(ra, float), np.asarray(dec, float)
    t["x"] = t["y"] = np.zeros(n)
    t["psfFlux"] = np.asarray(flux, float)
    t["psfFluxErr"] = t["apFluxErr"] = np.full(n, 10.0)
    t["apFlux"] = t["psfFlux"]
    t["snr"] = t["psfFlux"] / 10
    t["isDipole"] = t["isNegative"] = t["flag_edge"] = t["flag_saturated"] = np.zeros(n, bool)
    t["bboxSize"] = np.full(n, 9)
    return t


def test_association_links_repeats_and_is_idempotent(tmp_path) -> None:
    config = association.create_apdb(tmp_path / "apdb")
    region = Circle(UnitVector3d(LonLat.fromDegrees(62.0, -37.0)), Angle.fromDegrees(0.1))
    ra = np.array([62.0, 62.01, 62.02])
    dec = np.array([-37.0, -37.01, -37.0])
    jitter = 0.2 / 3600
    with association.locked_apdb(config) as apdb:
        s1, o1, stored = association.associate(
            apdb,
            _dia(ra, dec, [100, 200, 300]),
            visit=2025050400001,
            detector=0,
            band="g",
            mjd=60800.1,
            region=region,
        )
        assert stored and len(o1) == 3
        # Second visit: two repeats (within 0.2") and one new source.
        visit2 = {
            "visit": 2025050400002,
            "detector": 0,
            "band": "r",
            "mjd": 60800.2,
            "region": region,
        }
        repeats = _dia(
            [62.0 + jitter, 62.01, 62.05], [-37.0, -37.01 - jitter, -37.02], [110, 190, 50]
        )
        s2, _, _ = association.associate(apdb, repeats, **visit2)
        assert list(s2["diaObjectId"][:2]) == list(s1["diaObjectId"][:2])
        assert s2["diaObjectId"][2] not in set(s1["diaObjectId"])
        objects = apdb.getDiaObjects(region).set_index("diaObjectId")
        assert len(objects) == 4
        first = objects.loc[s1["diaObjectId"][0]]
        assert first["nDiaSources"] == 2 and first["g_psfFluxNdata"] == 1
        assert first["r_psfFluxNdata"] == 1
        # Re-running visit 2 stores nothing new.
        s3, _, stored = association.associate(apdb, repeats, **visit2)
        assert not stored
        assert sorted(s3["diaSourceId"]) == sorted(s2["diaSourceId"])
        assert len(apdb.getDiaObjects(region)) == 4
