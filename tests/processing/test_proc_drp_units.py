"""Data-release steps on synthetic images with known answers: coadd noise, coadd PSF, forced
photometry, multi-band detection, the sky map, and the release's data query."""

from __future__ import annotations

import numpy as np
import pytest
from procsynth import add_gaussian, render, tan_wcs

from sciplat.pipelines.butler_io import SimExposure
from sciplat.pipelines.drp import measure, skymap
from sciplat.pipelines.drp.release import ReleaseError, release_where
from sciplat.pipelines.tasks.imaging import PsfModel


def _noise(rng: np.random.Generator, n: int, sigma: float, wcs=None) -> SimExposure:
    return SimExposure(
        image=rng.normal(0, sigma, (n, n)).astype(np.float32),
        variance=np.full((n, n), sigma**2, dtype=np.float32),
        mask=np.zeros((n, n), dtype=np.int32),
        wcs=wcs or tan_wcs(n),
    )


def test_coadd_of_n_exposures_has_sqrt_n_lower_noise() -> None:
    rng = np.random.default_rng(1)
    n, sigma = 200, 10.0
    for count in (4, 9):
        images = [_noise(rng, n, sigma) for _ in range(count)]
        result, weights = measure.coadd(iter(images), tan_wcs(n), (n, n))
        inner = result.image[10:-10, 10:-10]
        assert np.std(inner) == pytest.approx(sigma / np.sqrt(count), rel=0.05)
        assert np.median(result.variance[10:-10, 10:-10]) == pytest.approx(sigma**2 / count)
        assert len(weights) == count and all(w > 0 for w in weights)


def test_coadd_weights_by_inverse_variance_and_flags_no_data() -> None:
    rng = np.random.default_rng(2)
    n = 120
    quiet, noisy = _noise(rng, n, 5.0), _noise(rng, n, 20.0)
    quiet.image[:] += 100.0
    noisy.image[:] += 200.0
    far = _noise(rng, n, 5.0, wcs=tan_wcs(n, ra=70.0))  # elsewhere on the sky
    result, weights = measure.coadd([quiet, noisy, far], tan_wcs(n), (n, n))
    # (100/25 + 200/400) / (1/25 + 1/400) = 105.9
    assert np.median(result.image[10:-10, 10:-10]) == pytest.approx(105.88, abs=1.0)
    assert weights[2] == 0.0
    empty, w = measure.coadd([far], tan_wcs(n), (n, n))
    assert w == [0.0] and empty.mask_of("NO_DATA").all()


def test_coadd_psf_is_the_weighted_mean_of_input_psfs() -> None:
    narrow, wide = PsfModel.gaussian(1.5, 25), PsfModel.gaussian(3.0, 25)
    wide.apcorr = 1.1
    psf = measure.coadd_psf([narrow, wide], [3.0, 1.0])
    assert psf.stamp.sum() == pytest.approx(1.0)
    assert np.allclose(psf.stamp, 0.75 * narrow.stamp + 0.25 * wide.stamp)
    assert psf.apcorr == pytest.approx(1.025)
    assert narrow.sigma < psf.sigma < wide.sigma
    with pytest.raises(Exception, match="no input image"):
        measure.coadd_psf([narrow], [0.0])


def test_forced_photometry_recovers_injected_flux_within_errors() -> None:
    rng = np.random.default_rng(3)
    n, sigma_psf, flux = 160, 2.0, 3000.0
    psf = PsfModel.gaussian(sigma_psf, 25)
    pulls = []
    for _ in range(40):
        x, y = rng.uniform(60, 100, 2)
        exposure = render(rng, np.array([[x, y]]), np.array([flux]), sigma_psf, n=n)
        ra, dec = exposure.wcs.wcs_pix2world([x], [y], 0)
        out = measure.forced_photometry(exposure, psf, ra, dec)
        assert out["inside"][0] and not out["edge"][0]
        assert out["x"][0] == pytest.approx(x, abs=1e-6)
        pulls.append((out["psfFlux"][0] - flux) / out["psfFluxErr"][0])
    pulls = np.array(pulls)
    assert abs(np.mean(pulls)) < 0.5  # unbiased
    assert 0.7 < np.std(pulls) < 1.3  # errors right


def test_forced_photometry_off_the_image_and_at_the_edge() -> None:
    rng = np.random.default_rng(4)
    exposure = _noise(rng, 100, 5.0)
    ra, dec = exposure.wcs.wcs_pix2world([50.0, 2.0, 500.0], [50.0, 50.0, 50.0], 0)
    out = measure.forced_photometry(exposure, PsfModel.gaussian(2.0, 25), ra, dec)
    assert list(out["inside"]) == [True, True, False]
    assert np.isfinite(out["psfFlux"][0])
    assert out["edge"][1] and np.isnan(out["psfFlux"][1])  # the PSF stamp does not fit
    assert np.isnan(out["psfFlux"][2])


def test_multiband_detection_finds_what_no_single_band_does() -> None:
    rng = np.random.default_rng(5)
    n, sigma_psf, sky = 160, 2.0, 10.0
    # Peak pixel S/N 1.9 in each band: sep (5 sigma, filtered) finds such a source in one band
    # only a few percent of the time, and always in the three bands' detection image.
    flux = 1.9 * sky * 2 * np.pi * sigma_psf**2
    bands = {}
    for b in "gri":
        truth = np.zeros((n, n))
        add_gaussian(truth, 80.0, 80.0, flux, sigma_psf)
        bands[b] = SimExposure(
            image=(truth + rng.normal(0, sky, truth.shape)).astype(np.float32),
            variance=np.full((n, n), sky**2, dtype=np.float32),
            mask=np.zeros((n, n), dtype=np.int32),
            wcs=tan_wcs(n),
        )

    def found_near_centre(table) -> bool:
        return bool(np.any(np.hypot(table["x"] - 80, table["y"] - 80) < 2))

    # sep thresholds are per pixel: the source's peak pixel is what counts.
    single = [measure.detect_multiband(bands[b], sigma_psf, threshold=5.0) for b in "gri"]
    combined = measure.detection_image(list(bands.values()))
    assert np.median(combined.variance) == pytest.approx(sky**2 / 3)
    found = measure.detect_multiband(combined, sigma_psf, threshold=5.0)
    assert found_near_centre(found)
    assert not any(found_near_centre(t) for t in single)
    psfs = {b: PsfModel.gaussian(sigma_psf, 25) for b in "gri"}
    centre = found[np.argmin(np.hypot(found["x"] - 80, found["y"] - 80))]
    per_band = measure.measure_bands(found[[list(found).index(centre)]], bands, psfs)
    for b in "gri":
        m = per_band[b]
        assert abs(m["psfFlux"][0] - flux) < 4 * m["psfFluxErr"][0]


def test_kron_flux_of_a_bright_star_matches_its_psf_flux() -> None:
    rng = np.random.default_rng(6)
    exposure = render(rng, np.array([[80.0, 80.0]]), np.array([2e5]), 2.0, n=160, sky_sigma=5)
    found = measure.detect_multiband(exposure, 2.0, threshold=5)
    psf = PsfModel.gaussian(2.0, 25)
    m = measure.measure_bands(found, {"r": exposure}, {"r": psf})["r"]
    i = int(np.argmax(m["psfFlux"]))
    assert m["psfFlux"][i] == pytest.approx(2e5, rel=0.02)
    assert m["kronFlux"][i] == pytest.approx(2e5, rel=0.05)
    assert m["extendedness"][i] == 0.0


def test_patch_inner_boxes_partition_the_tract() -> None:
    rng = np.random.default_rng(7)
    wcs = skymap.tract_wcs()
    x = rng.uniform(0, skymap.TRACT_PIXELS - 1, 2000)
    y = rng.uniform(0, skymap.TRACT_PIXELS - 1, 2000)
    ra, dec = wcs.wcs_pix2world(x, y, 0)
    owners = np.array(
        [skymap.patch_geometry(p).contains(ra, dec) for p in range(skymap.PATCHES**2)]
    )
    assert (owners.sum(axis=0) == 1).all()  # every position belongs to exactly one patch
    middle = skymap.patch_geometry(skymap.PATCHES**2 // 2)
    centre = middle.wcs().wcs_pix2world([[(middle.shape[1] - 1) / 2, (middle.shape[0] - 1) / 2]], 0)
    assert centre[0] == pytest.approx([62.0, -37.0], abs=1e-6)  # the field's centre
    assert middle.shape == (skymap.PATCH_PIXELS + 2 * skymap.BORDER,) * 2
    with pytest.raises(ValueError, match="no patch 99"):
        skymap.patch_geometry(99)


def test_regions_select_patches_and_bad_regions_are_refused() -> None:
    middle = skymap.PATCHES**2 // 2
    assert skymap.patches_overlapping(skymap.parse_region("62.0,-37.0,0.01")) == [middle]
    assert len(skymap.patches_overlapping(skymap.parse_region("62.0,-37.0,1.0"))) == 9
    assert skymap.patches_overlapping(skymap.parse_region("200,30,0.1")) == []
    for bad in ("62,-37", "a,b,c", "62,-95,1", "62,-37,0"):
        with pytest.raises(ValueError, match="region"):
            skymap.parse_region(bad)


class _Visit:
    def __init__(self, id: int, physical_filter: str) -> None:
        self.id, self.physical_filter = id, physical_filter


class _Registry:
    """The one registry call release_where makes (the DRP run test covers the real one)."""

    def query_dimension_records(self, element: str, instrument: str) -> list[_Visit]:
        return [_Visit(1, "g_sim"), _Visit(2, "r_sim")]


def test_release_query_and_refusals() -> None:
    reg = _Registry()
    where = release_where(reg, bands=["r"], region="62,-37,0.01", visits=[2])
    assert "band IN ('r')" in where and "patch IN (4)" in where and "visit IN (2)" in where
    assert "skymap='sciplat'" in where
    with pytest.raises(ReleaseError, match=r"band\(s\) \['u'\].*\['g', 'r'\]"):
        release_where(reg, bands=["u"])
    with pytest.raises(ReleaseError, match=r"visit\(s\) \[7\] are not in the Butler repo"):
        release_where(reg, visits=[7])
    with pytest.raises(ReleaseError, match="overlaps no patch"):
        release_where(reg, region="200,30,0.1")
    with pytest.raises(ReleaseError, match="expected RA,DEC,RADIUS"):
        release_where(reg, region="nowhere")


def test_recovered_fraction_bins_by_expected_snr() -> None:
    import pandas as pd

    from sciplat.pipelines.validation import recovered_fraction

    recovery = pd.DataFrame(
        {"expected_snr": [2.0, 4.0, 12.0, 15.0, 30.0, 60.0],
         "recovered": [False, True, True, False, True, True]}
    )  # fmt: skip
    table = recovered_fraction(recovery, [0, 5, 20, 1e9])
    assert table["n"].tolist() == [2, 2, 2]
    assert table["recovered"].tolist() == [1, 1, 2]
    assert table["fraction"].tolist() == [0.5, 0.5, 1.0]


def test_object_truth_match_finds_the_nearest_object_within_an_arcsecond() -> None:
    import pandas as pd

    from sciplat.pipelines.validation import object_truth_match

    class Sky:
        galaxies = {"ra": np.array([62.0]), "dec": np.array([-37.0]), "mag_r": np.array([22.0])}
        stars = {"ra": np.array([62.01]), "dec": np.array([-37.0]), "mag_r": np.array([20.0])}

    objects = pd.DataFrame(
        {"objectId": [7, 8], "coord_ra": [62.0, 62.02], "coord_dec": [-37.0 + 0.5 / 3600, -37.0],
         "r_psfFlux": [100.0, 200.0], "r_cModelFlux": [150.0, 250.0]}
    )  # fmt: skip
    out = object_truth_match(objects, Sky(), band="r")
    assert out["objectId"].tolist() == [7, 0]  # the star has no Object within 1"
    assert out["cModelFlux"][0] == 150.0 and np.isnan(out["psfFlux"][1])
    assert out["true_flux"][1] == pytest.approx(10 ** (-0.4 * (20.0 - 31.4)))
