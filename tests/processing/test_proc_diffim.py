"""Alard-Lupton image differencing and DIASource detection on synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
from procsynth import render, star_field

from sciplat.pipelines.tasks import diffim, imaging


def _pair(seed: int, sigma_sci: float, sigma_tmpl: float, scale: float):
    rng = np.random.default_rng(seed)
    xy, flux = star_field(rng, nstars=70)
    science = render(rng, xy, flux, sigma_sci)
    # The template: same sky, another PSF, another photometric scale, much lower noise.
    template = render(rng, xy, flux, sigma_tmpl, sky_sigma=3.0, scale=scale)
    return rng, xy, flux, science, template


@pytest.mark.parametrize(("sigma_sci", "sigma_tmpl"), [(2.2, 1.5), (1.5, 2.1)])
def test_subtracting_a_scaled_psf_matched_template_leaves_noise(sigma_sci, sigma_tmpl) -> None:
    _, _, _, science, template = _pair(7, sigma_sci, sigma_tmpl, scale=0.8)
    sci_psf = imaging.measure_psf(science)
    tmpl_psf = imaging.measure_psf(template)
    sources = imaging.detect_and_measure(science, sci_psf)
    diff, kernel, _ = diffim.subtract_images(science, template, sci_psf, tmpl_psf, sources)
    assert kernel.convolve_science == (sigma_sci < sigma_tmpl)
    expected = 1 / 0.8 if not kernel.convolve_science else 0.8
    assert kernel.flux_scale == pytest.approx(expected, rel=0.01)
    inner = (slice(30, 370), slice(30, 370))
    z = diff.image[inner] / np.sqrt(diff.variance[inner])
    assert abs(float(np.mean(z))) < 0.05
    assert float(np.std(z)) == pytest.approx(1.0, abs=0.15)  # noise, no star residuals
    assert kernel.chi2_per_dof < 1.3
    assert len(diffim.detect_dia_sources(diff, sci_psf)) <= 2  # no false sources to speak of


def test_injected_transient_detected_with_position_and_flux() -> None:
    rng, _, _, science, template = _pair(8, 2.0, 1.6, scale=1.0)
    x0, y0, f0 = 151.4, 248.8, 4000.0
    from procsynth import add_gaussian

    extra = np.zeros(science.shape)
    add_gaussian(extra, x0, y0, f0, 2.0)
    science.image = science.image + extra + rng.normal(0, 1, extra.shape) * np.sqrt(extra)
    science.variance = science.variance + extra.astype(np.float32)
    sci_psf = imaging.measure_psf(science)
    tmpl_psf = imaging.measure_psf(template)
    sources = imaging.detect_and_measure(science, sci_psf)
    diff, _, diff_psf = diffim.subtract_images(science, template, sci_psf, tmpl_psf, sources)
    dia = diffim.detect_dia_sources(diff, diff_psf)
    d = np.hypot(dia["x"] - x0, dia["y"] - y0)
    assert d.min() < 0.3
    src = dia[int(np.argmin(d))]
    assert not src["isNegative"] and not src["isDipole"]
    assert abs(src["psfFlux"] - f0) < 3 * src["psfFluxErr"]


def test_misregistered_star_is_a_dipole() -> None:
    rng = np.random.default_rng(9)
    xy, flux = star_field(rng, nstars=60)
    science = render(rng, xy, flux, 2.0)
    moved = xy.copy()
    moved[0] = [200.0, 200.0]
    flux[0] = 5e4
    science = render(rng, np.vstack([xy[1:], [[201.5, 200.0]]]), np.append(flux[1:], 5e4), 2.0)
    template = render(rng, moved, flux, 1.6, sky_sigma=3.0)
    sci_psf = imaging.measure_psf(science)
    tmpl_psf = imaging.measure_psf(template)
    sources = imaging.detect_and_measure(science, sci_psf)
    diff, _, diff_psf = diffim.subtract_images(science, template, sci_psf, tmpl_psf, sources)
    dia = diffim.detect_dia_sources(diff, diff_psf)
    near = dia[np.hypot(dia["x"] - 200.75, dia["y"] - 200.0) < 3]
    assert len(near) == 1 and near["isDipole"][0]
