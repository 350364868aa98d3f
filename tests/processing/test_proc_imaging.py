"""Single-image steps on synthetic images with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from procsynth import add_gaussian, render, star_field, tan_wcs

from sciplat.pipelines.butler_io import SimExposure
from sciplat.pipelines.tasks import imaging


def test_isr_removes_bias_gain_and_flat() -> None:
    rng = np.random.default_rng(1)
    n = 64
    signal_e = np.full((n, n), 500.0)
    flat = rng.uniform(0.9, 1.1, (n, n)).astype(np.float32)
    flat[:, 20] = 0.0  # a dead column
    bias = (1000 + rng.normal(0, 2, n)[None, :] + np.zeros((n, n))).astype(np.float32)
    gain = 1.6
    adu = np.round(signal_e * flat / gain + bias).astype(np.int32)
    meta = {"GAIN": gain, "RDNOISE": 5.0}
    out = imaging.isr(
        SimExposure(image=adu, metadata=meta, wcs=tan_wcs(n)),
        SimExposure(image=bias),
        SimExposure(image=flat),
    )
    good = ~out.mask_of("BAD", "EDGE")
    assert np.allclose(out.image[good], 500.0, atol=1.0)  # rounding to ADU only
    assert out.mask_of("BAD")[:, 20].all() and not out.mask_of("BAD")[:, 21].any()
    assert out.mask_of("EDGE")[0].all()
    assert np.allclose(out.variance[good], 500.0 / flat[good] + 25 / flat[good] ** 2, rtol=0.01)


def test_isr_refuses_mismatched_calibrations() -> None:
    with pytest.raises(imaging.ProcessingError, match="differ in shape"):
        imaging.isr(
            SimExposure(image=np.zeros((8, 8), np.int32)),
            SimExposure(image=np.zeros((8, 9))),
            SimExposure(image=np.ones((8, 8))),
        )


def test_psf_and_injected_point_source_position_and_flux() -> None:
    rng = np.random.default_rng(2)
    sigma = 1.7
    xy, flux = star_field(rng)
    exposure = render(rng, xy, flux, sigma)
    psf = imaging.measure_psf(exposure)
    assert psf.sigma == pytest.approx(sigma, rel=0.08)
    # Inject one source at a known sub-pixel position into empty sky.
    x0, y0, f0 = 201.3, 198.6, 3000.0
    clean = render(rng, np.array([[x0, y0]]), np.array([f0]), sigma)
    table = imaging.detect_and_measure(clean, psf)
    assert len(table) == 1
    src = table[0]
    assert abs(src["x"] - x0) < 0.15 and abs(src["y"] - y0) < 0.15
    assert abs(src["psfFlux"] - f0) < 3 * src["psfFluxErr"]
    # The optimal PSF-fit error for sky (100 e-^2) plus source Poisson variance.
    model = np.zeros((41, 41))
    add_gaussian(model, 20.3, 19.6, 1.0, sigma)
    expected = np.sqrt(1.0 / (model**2 / (100.0 + f0 * model)).sum())
    assert src["psfFluxErr"] == pytest.approx(expected, rel=0.1)


def test_background_is_removed() -> None:
    rng = np.random.default_rng(3)
    exposure = render(rng, np.zeros((0, 2)), np.zeros(0), 1.5)
    yy, xx = np.mgrid[0:400, 0:400]
    exposure.image += (200 + 0.2 * xx + 0.1 * yy).astype(np.float32)
    imaging.subtract_background(exposure)
    assert abs(float(np.mean(exposure.image))) < 1.0
    assert float(np.std(exposure.image)) < 11.0  # the noise (10) is what is left


def test_astrometric_and_photometric_calibration_recover_truth() -> None:
    rng = np.random.default_rng(4)
    sigma = 1.6
    xy, flux = star_field(rng, nstars=80)
    exposure = render(rng, xy, flux, sigma)
    true_wcs = exposure.wcs
    ra, dec = true_wcs.wcs_pix2world(xy[:, 0], xy[:, 1], 0)
    # The image comes with a WCS off by 0.3 arcsec and slightly rotated.
    wrong = true_wcs.deepcopy()
    wrong.wcs.crval = [wrong.wcs.crval[0] + 0.3 / 3600, wrong.wcs.crval[1] - 0.2 / 3600]
    theta = np.radians(0.05)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    wrong.wcs.cd = wrong.wcs.cd @ rot
    wrong.wcs.set()
    exposure.wcs = wrong
    psf = imaging.measure_psf(exposure)
    sources = imaging.detect_and_measure(exposure, psf)
    fixed, stats = imaging.fit_astrometry(wrong, sources, ra, dec)
    got_ra, got_dec = fixed.wcs_pix2world(xy[:, 0], xy[:, 1], 0)
    err = np.hypot((got_ra - ra) * np.cos(np.radians(dec)), got_dec - dec) * 3600
    assert np.median(err) < 0.01  # arcsec; was ~0.4 before the fit
    assert stats["astrom_matches"] >= 40
    sources["coord_ra"], sources["coord_dec"] = fixed.wcs_pix2world(sources["x"], sources["y"], 0)
    njy_per_e = 2.5
    scale, pstats = imaging.fit_zero_point(sources, ra, dec, flux * njy_per_e)
    assert scale == pytest.approx(njy_per_e, rel=0.01)
    assert pstats["photo_scatter_mag"] < 0.02


def test_astrometry_refuses_without_matches() -> None:
    rng = np.random.default_rng(5)
    xy, flux = star_field(rng)
    exposure = render(rng, xy, flux, 1.5)
    sources = imaging.detect_and_measure(exposure, imaging.measure_psf(exposure))
    with pytest.raises(imaging.ProcessingError, match="reference matches"):
        imaging.fit_astrometry(exposure.wcs, sources, np.array([10.0]), np.array([10.0]))


def test_warp_round_trip_preserves_flux_and_position() -> None:
    rng = np.random.default_rng(6)
    image = np.zeros((200, 200))
    add_gaussian(image, 100.2, 99.7, 1e4, 2.0)
    src = SimExposure(
        image=image.astype(np.float32),
        variance=np.ones((200, 200), np.float32),
        mask=np.zeros((200, 200), np.int32),
        wcs=tan_wcs(200),
    )
    target = tan_wcs(200)
    target.wcs.crpix = [target.wcs.crpix[0] + 7.5, target.wcs.crpix[1] - 3.25]
    target.wcs.set()
    out = imaging.warp(src, target, (200, 200))
    yy, xx = np.mgrid[0:200, 0:200]
    total = out.image.sum()
    assert total == pytest.approx(1e4, rel=0.01)
    assert (out.image * xx).sum() / total == pytest.approx(107.7, abs=0.05)
    assert (out.image * yy).sum() / total == pytest.approx(96.45, abs=0.05)
    assert out.mask_of("NO_DATA")[:, :5].all()
    del rng
