"""Composite-model fluxes against GalSim bulge+disk galaxies, and the position-dependent coadd
PSF against stars on a coadd whose inputs have different seeing in different places."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from procsynth import add_gaussian, tan_wcs

from sciplat.pipelines.butler_io import SimExposure
from sciplat.pipelines.drp import cmodel, measure
from sciplat.pipelines.tasks.imaging import PsfModel


def _exposure(image: np.ndarray, sky: float, wcs=None) -> SimExposure:
    n = image.shape[0]
    return SimExposure(
        image=image.astype(np.float32),
        variance=np.full(image.shape, sky**2, dtype=np.float32),
        mask=np.zeros(image.shape, dtype=np.int32),
        wcs=wcs or tan_wcs(n),
    )


def _match(found, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices into *found* of the detection nearest each truth position (within 2 px)."""
    d = np.hypot(found["x"][:, None] - xy[:, 0], found["y"][:, None] - xy[:, 1])
    nearest = np.argmin(d, axis=0)
    ok = d[nearest, np.arange(len(xy))] < 2
    return nearest[ok], np.flatnonzero(ok)


@pytest.fixture(scope="module")
def galaxies() -> dict:
    """Bright bulge+disk galaxies (GalSim, as the data preview draws them) and stars."""
    rng = np.random.default_rng(11)
    n, sigma, sky = 520, 2.0, 5.0
    image = galsim.ImageD(n, n, scale=1.0)
    psf = galsim.Gaussian(sigma=sigma)
    truth = []
    for x in range(60, n - 59, 100):
        for y in range(60, n - 59, 100):
            flux = 10 ** rng.uniform(4.2, 5.0)
            bulge_frac = rng.uniform(0.0, 0.9)
            disk_hlr = rng.uniform(1.5, 5.0)  # pixels
            bulge_hlr = disk_hlr * rng.uniform(0.25, 0.6)
            gal = galsim.Exponential(half_light_radius=disk_hlr).withFlux(flux * (1 - bulge_frac))
            gal += galsim.DeVaucouleurs(half_light_radius=bulge_hlr, trunc=8 * bulge_hlr).withFlux(
                flux * bulge_frac
            )
            gal = gal.shear(e1=rng.uniform(-0.3, 0.3), e2=rng.uniform(-0.3, 0.3))
            offset = galsim.PositionD(*rng.uniform(-0.5, 0.5, 2))
            stamp = galsim.Convolve(gal, psf).drawImage(nx=161, ny=161, scale=1.0, offset=offset)
            stamp.setCenter(x + 1, y + 1)
            bounds = stamp.bounds & image.bounds
            image[bounds] += stamp[bounds]
            truth.append((x + offset.x, y + offset.y, flux))
    stars = np.array([(x + 0.3, y - 0.2, 3e4) for x in range(110, n - 59, 100) for y in (110, 410)])
    pixels = image.array.copy()
    for x, y, f in stars:
        add_gaussian(pixels, x, y, f, sigma)
    pixels += rng.normal(0, sky, pixels.shape)
    exposure = _exposure(pixels, sky)
    found = measure.detect_multiband(exposure, sigma, threshold=5.0)
    model_psf = PsfModel.gaussian(sigma, 25)
    shapes = cmodel.fit_shapes(exposure, found, lambda x, y: model_psf)
    per_band = measure.measure_bands(found, {"r": exposure}, {"r": model_psf}, shapes)["r"]
    return {"found": found, "m": per_band, "galaxies": np.array(truth), "stars": stars}


def test_cmodel_flux_of_bulge_disk_galaxies_matches_truth(galaxies: dict) -> None:
    m, truth = galaxies["m"], galaxies["galaxies"]
    i, k = _match(galaxies["found"], truth[:, :2])
    assert len(i) >= 0.9 * len(truth)
    ratio = m["cModelFlux"][i] / truth[k, 2]
    kron = m["kronFlux"][i] / truth[k, 2]
    psf = m["psfFlux"][i] / truth[k, 2]
    # The model flux is a total flux: within 3% of truth, where Kron misses its wings and the
    # PSF flux most of the galaxy.
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03)
    assert abs(np.median(ratio) - 1) < abs(np.median(kron) - 1)
    assert np.median(psf) < 0.8
    assert np.percentile(np.abs(ratio - 1), 80) < 0.1
    assert np.all(np.isfinite(m["cModelFluxErr"][i]) & (m["cModelFluxErr"][i] > 0))
    frac = m["fracDev"][i]
    assert np.all((frac >= 0) & (frac <= 1))


def test_cmodel_flux_of_a_star_is_its_psf_flux(galaxies: dict) -> None:
    m, stars = galaxies["m"], galaxies["stars"]
    i, k = _match(galaxies["found"], stars[:, :2])
    assert len(i) == len(stars)
    assert m["cModelFlux"][i] == pytest.approx(m["psfFlux"][i], rel=0.02)
    assert m["cModelFlux"][i] == pytest.approx(stars[k, 2], rel=0.03)


def test_model_profiles_are_normalised_to_their_total_flux() -> None:
    for kind in ("exp", "dev"):
        large = cmodel.profile(kind, 2.0, 0.7, 0.3, 40, 0.2, -0.1)
        small = cmodel.profile(kind, 2.0, 0.7, 0.3, 8, 0.2, -0.1)
        assert large.sum() == pytest.approx(1.0, abs=0.01)
        assert 0.5 < small.sum() < large.sum()  # the rest lies outside the small stamp


def _shifted_stars(sky_xy, wcs_in, wcs_out, n, sigma, flux, rng, noise):
    """An input image on *wcs_in* of stars at the grid positions *sky_xy* of *wcs_out*."""
    ra, dec = wcs_out.wcs_pix2world(sky_xy[:, 0], sky_xy[:, 1], 0)
    x, y = wcs_in.wcs_world2pix(ra, dec, 0)
    pixels = np.zeros((n, n))
    for xi, yi in zip(x, y, strict=True):
        if 10 < xi < n - 10 and 10 < yi < n - 10:
            add_gaussian(pixels, xi, yi, flux, sigma)
    return _exposure(pixels + rng.normal(0, noise, pixels.shape), noise, wcs_in)


def test_coadd_psf_follows_the_inputs_covering_each_position() -> None:
    """A narrow-PSF input covers the left of the grid and a wide one the right (both cover the
    middle): PSF fluxes with the coadd PSF at each position are unbiased everywhere, while one
    mean PSF for the whole coadd biases them by several percent where only one input is."""
    rng = np.random.default_rng(12)
    n_grid, n_in, flux, noise = 400, 260, 2e5, 2.0
    grid = tan_wcs(n_grid)
    scale = 0.2 / 3600
    left = tan_wcs(n_in, ra=62.0 + 70 * scale / np.cos(np.radians(37.0)))
    right = tan_wcs(n_in, ra=62.0 - 70 * scale / np.cos(np.radians(37.0)))
    xy = np.array([(x, y) for x in range(80, 330, 25) for y in (100, 200, 300)], dtype=float)
    xy += rng.uniform(-0.5, 0.5, xy.shape)
    inputs = [
        _shifted_stars(xy, left, grid, n_in, 1.6, flux, rng, noise),
        _shifted_stars(xy, right, grid, n_in, 2.6, flux, rng, noise),
    ]
    psfs = [PsfModel.gaussian(1.6, 25), PsfModel.gaussian(2.6, 25)]
    image, weights, maps = measure.coadd_with_coverage(
        inputs, grid, (n_grid, n_grid), coverage_bin=16
    )
    assert maps.shape == (2, 25, 25) and all(w > 0 for w in weights)
    coadd_psf = measure.CoaddPsf(psfs, maps, 16)
    assert coadd_psf.at(70, 200).sigma == pytest.approx(1.6, abs=0.05)  # only the left input
    assert coadd_psf.at(330, 200).sigma == pytest.approx(2.6, abs=0.05)  # only the right
    assert 1.7 < coadd_psf.at(200, 200).sigma < 2.5  # both
    again = measure.CoaddPsf.from_array(coadd_psf.to_array())
    assert np.allclose(again.at(70, 200).stamp, coadd_psf.at(70, 200).stamp)
    assert np.allclose(again.maps, coadd_psf.maps)
    with pytest.raises(Exception, match="not a coadd PSF"):
        measure.CoaddPsf.from_array(np.zeros(30))

    found = measure.detect_multiband(image, 2.0, threshold=5.0)
    i, k = _match(found, xy)
    assert len(i) == len(xy)
    found = found[i]
    local = measure.measure_bands(found, {"r": image}, {"r": coadd_psf})["r"]["psfFlux"] / flux
    mean = measure.measure_bands(found, {"r": image}, {"r": coadd_psf.mean})["r"]["psfFlux"]
    mean = mean / flux
    edge = (xy[k, 0] < 110) | (xy[k, 0] > 290)  # one input only
    assert np.median(np.abs(local - 1)) < 0.01
    assert np.max(np.abs(local[edge] - 1)) < 0.02
    assert np.max(np.abs(mean[edge] - 1)) > 0.05  # the single-PSF bias this removes
