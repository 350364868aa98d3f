"""GalSim rendering of one detector in one visit, and the calibration frames.

Each (visit, detector) gives two products, written by :mod:`sciplat.pipelines.butler_io`:

- ``raw``: what the camera reads out, in ADU: ``(electrons * flat) / gain + bias``, with
  Poisson noise, read noise, a bias level with column structure, a dead column and saturation.
- ``visit_image``: the instrument signature removed (bias subtracted, flat fielded), background
  subtracted and calibrated to nJy, with a variance plane and a mask plane (afw bit layout).

Objects are drawn as stamps (point sources as the PSF, bulge+disk galaxies convolved with it)
and added into the image; the PSF is an analytic double Gaussian, which keeps a 2k x 2k image
with a few thousand objects at a few seconds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import galsim
import numpy as np

from sciplat.pipelines.butler_io import MASK_PLANES, SimExposure
from sciplat.pipelines.sim.rng import rng_for, seed_for
from sciplat.pipelines.sim.skymodel import SkyModel
from sciplat.pipelines.sim.survey import EXPTIME, INSTRUMENT, PIXEL_SCALE, Detector, Survey, Visit

__all__ = [
    "DetectorProperties",
    "detector_properties",
    "make_bias",
    "make_flat",
    "render_visit_detector",
]

FULL_WELL = 100_000.0  # electrons
EDGE_PIXELS = 8
#: Galaxies fainter than this (AB mag in the visit's band) are drawn as analytic Gaussians.
FAINT_MAG = 23.0
_GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3, maximum_fft_size=4096)


@dataclass(frozen=True)
class DetectorProperties:
    """Electronic and optical signature of one detector (fixed for a seed)."""

    gain: float  # e-/ADU
    read_noise: float  # e-
    bias_level: float  # ADU
    dead_column: int


def detector_properties(seed: int, detector: Detector) -> DetectorProperties:
    rng = rng_for(seed, "detector", detector.id)
    return DetectorProperties(
        gain=float(rng.uniform(1.5, 1.8)),
        read_noise=float(rng.uniform(4.5, 6.5)),
        bias_level=float(rng.uniform(900, 1100)),
        dead_column=int(rng.integers(detector.npix // 8, detector.npix - detector.npix // 8)),
    )


@functools.lru_cache(maxsize=8)
def make_bias(seed: int, detector: Detector) -> np.ndarray:
    """Master bias (ADU): level plus column structure plus a gradient along the readout."""
    props = detector_properties(seed, detector)
    rng = rng_for(seed, "bias", detector.id)
    n = detector.npix
    columns = rng.normal(0, 2.0, n)
    rows = np.linspace(0, 3.0, n)[:, None]
    return (props.bias_level + columns[None, :] + rows).astype(np.float32)


@functools.lru_cache(maxsize=8)
def make_flat(seed: int, detector: Detector, band: str) -> np.ndarray:
    """Normalised flat: smooth vignetting-like falloff and 1 % pixel response non-uniformity."""
    rng = rng_for(seed, "flat", detector.id, band)
    n = detector.npix
    y, x = np.mgrid[0:n, 0:n] / n - 0.5
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    smooth = 1.0 - 0.08 * ((x - cx) ** 2 + (y - cy) ** 2)
    prnu = rng.normal(1.0, 0.01, (n, n))
    flat = smooth * prnu
    flat[:, detector_properties(seed, detector).dead_column] = 0.0
    flat /= np.median(flat)
    return flat.astype(np.float32)


def make_psf(fwhm: float) -> galsim.GSObject:
    """Double-Gaussian PSF (core + 10 % halo at twice the width) with the given FWHM.

    Analytic in Fourier space, so convolutions with galaxies stay cheap; the halo gives the
    wings a single Gaussian lacks.
    """
    core_sigma = fwhm / 2.3548 / 1.04  # the halo widens the composite FWHM by ~4 %
    core = galsim.Gaussian(sigma=core_sigma, flux=0.9, gsparams=_GSPARAMS)
    halo = galsim.Gaussian(sigma=2 * core_sigma, flux=0.1, gsparams=_GSPARAMS)
    return core + halo


def _stamp_size(flux_e: float, hlr_arcsec: float, fwhm: float) -> int:
    """Odd stamp size in pixels that holds the object down to ~1 e-/pixel wings."""
    extent = 2.5 * fwhm * (1 + 0.25 * math.log10(max(flux_e, 10.0))) + 6 * hlr_arcsec
    size = int(extent / PIXEL_SCALE) | 1
    return int(np.clip(size, 15, 401))


def _draw(
    image: galsim.ImageF,
    profile: galsim.GSObject,
    x: float,
    y: float,
    size: int,
    method: str = "auto",
) -> None:
    """Draw *profile* centred at 0-based pixel (x, y) into *image* (GalSim 1-based bounds).

    ``method="no_pixel"`` samples analytic profiles directly (no FFT); the PSF is at least
    ~1.5 pixels sigma, so skipping the pixel convolution changes the result negligibly.
    """
    ix, iy = round(x), round(y)
    stamp = galsim.ImageF(size, size, scale=PIXEL_SCALE)
    stamp.setCenter(ix + 1, iy + 1)
    profile.drawImage(image=stamp, offset=(x - ix, y - iy), add_to_image=False, method=method)
    overlap = stamp.bounds & image.bounds
    if overlap.isDefined():
        image[overlap] += stamp[overlap]


def _on_detector(x: np.ndarray, y: np.ndarray, npix: int, margin: float) -> np.ndarray:
    return (x > -margin) & (y > -margin) & (x < npix - 1 + margin) & (y < npix - 1 + margin)


def render_electrons(sky: SkyModel, survey: Survey, visit: Visit, detector: Detector) -> np.ndarray:
    """Noise-free image of the sources in electrons (no sky, no signatures)."""
    n = detector.npix
    wcs = survey.wcs(visit, detector)
    image = galsim.ImageF(n, n, scale=PIXEL_SCALE)
    fwhm = visit.seeing
    psf = make_psf(fwhm)
    per_e = 1.0 / visit.njy_per_electron
    margin = 40.0
    mjd = visit.mjd_mid

    # Stars (with proper motion and variability) and movers: point sources.
    points = []
    sra, sdec = sky.star_positions(mjd)
    mra, mdec = sky.mover_positions(mjd)
    tra, tdec = sky.transients["ra"], sky.transients["dec"]
    for ra, dec, flux in (
        (sra, sdec, sky.star_flux(visit.band, mjd)),
        (mra, mdec, sky.mover_flux(visit.band)),
        (tra, tdec, sky.transient_flux(visit.band, mjd)),
    ):
        if len(ra) == 0:
            continue
        x, y = wcs.wcs_world2pix(ra, dec, 0)
        sel = _on_detector(x, y, n, margin) & (flux > 0)
        points.extend(zip(x[sel], y[sel], flux[sel] * per_e, strict=True))
    for x, y, flux_e in points:
        size = _stamp_size(flux_e, 0.0, fwhm)
        _draw(image, psf.withFlux(float(flux_e)), x, y, size, method="no_pixel")

    g = sky.galaxies
    x, y = wcs.wcs_world2pix(g["ra"], g["dec"], 0)
    sel = np.flatnonzero(_on_detector(x, y, n, margin))
    flux_e = g[f"mag_{visit.band}"][sel]
    flux_e = 10 ** (-0.4 * (flux_e - visit.zero_point))
    faint = flux_e < 10 ** (-0.4 * (FAINT_MAG - visit.zero_point))
    core_sigma = fwhm / 2.3548 / 1.04
    for k, i in enumerate(sel):
        fe = float(flux_e[k])
        e1, e2 = float(g["e1"][i]), float(g["e2"][i])
        size = _stamp_size(fe, float(g["disk_hlr"][i]), fwhm)
        if faint[k]:
            # Faint galaxies: a sheared Gaussian of the same half-light radius convolved with
            # the double-Gaussian PSF is again a sum of two Gaussians, drawn without an FFT.
            sg = (
                float(g["bulge_frac"][i]) * float(g["bulge_hlr"][i])
                + (1 - float(g["bulge_frac"][i])) * float(g["disk_hlr"][i])
            ) / 1.1774
            prof = None
            for frac, sp in ((0.9, core_sigma), (0.1, 2 * core_sigma)):
                st = math.hypot(sg, sp)
                dilution = sg**2 / st**2
                comp = galsim.Gaussian(sigma=st, flux=fe * frac, gsparams=_GSPARAMS)
                comp = comp.shear(e1=e1 * dilution, e2=e2 * dilution)
                prof = comp if prof is None else prof + comp
            prof = prof.rotate(-visit.rotation * galsim.degrees)
            _draw(image, prof, x[i], y[i], size, method="no_pixel")
            continue
        bf = float(g["bulge_frac"][i])
        disk = galsim.Exponential(half_light_radius=float(g["disk_hlr"][i]), gsparams=_GSPARAMS)
        gal = disk.withFlux(fe * (1 - bf))
        if bf > 0.01:
            bulge = galsim.DeVaucouleurs(
                half_light_radius=float(g["bulge_hlr"][i]),
                trunc=8 * float(g["bulge_hlr"][i]),
                gsparams=_GSPARAMS,
            )
            gal = gal + bulge.withFlux(fe * bf)
        gal = gal.shear(e1=e1, e2=e2)
        # Rotate with the detector so shapes are fixed on the sky.
        gal = gal.rotate(-visit.rotation * galsim.degrees)
        _draw(image, galsim.Convolve(gal, psf, gsparams=_GSPARAMS), x[i], y[i], size)
    return image.array


def render_visit_detector(
    sky: SkyModel, survey: Survey, visit: Visit, detector: Detector
) -> tuple[SimExposure, SimExposure]:
    """(raw, visit_image) for one detector of one visit."""
    seed = survey.seed
    props = detector_properties(seed, detector)
    rng = np.random.default_rng(seed_for(seed, "noise", visit.id, detector.id))
    signal = render_electrons(sky, survey, visit, detector)
    flat = make_flat(seed, detector, visit.band)
    bias = make_bias(seed, detector)
    sky_e = visit.sky_e_per_pixel

    # Camera: photons -> electrons (flat response) -> saturation -> ADU with read noise.
    expected = (signal + sky_e) * flat
    electrons = rng.poisson(np.clip(expected, 0, None)).astype(np.float64)
    saturated = electrons >= FULL_WELL
    electrons = np.minimum(electrons, FULL_WELL)
    adu = electrons / props.gain + bias + rng.normal(0, props.read_noise / props.gain, bias.shape)
    raw_pixels = np.clip(np.round(adu), 0, 65535).astype(np.int32)

    wcs = survey.wcs(visit, detector)
    meta = _metadata(survey, visit, detector, props)
    raw = SimExposure(image=raw_pixels, wcs=wcs, metadata={**meta, "BUNIT": "adu"})

    # Instrument signature removal, background subtraction, photometric calibration.
    good_flat = np.where(flat > 0.05, flat, 1.0)
    image_e = (raw_pixels - bias) * props.gain / good_flat
    variance_e = np.clip(image_e, 0, None) + props.read_noise**2 / good_flat**2
    image_e -= sky_e
    mask = np.zeros(raw_pixels.shape, dtype=np.int32)
    mask[saturated | (raw_pixels >= 65535)] |= 1 << MASK_PLANES["SAT"]
    mask[flat <= 0.05] |= 1 << MASK_PLANES["BAD"] | 1 << MASK_PLANES["NO_DATA"]
    image_e[flat <= 0.05] = 0.0
    edge = np.zeros_like(mask, dtype=bool)
    edge[:EDGE_PIXELS, :] = edge[-EDGE_PIXELS:, :] = True
    edge[:, :EDGE_PIXELS] = edge[:, -EDGE_PIXELS:] = True
    mask[edge] |= 1 << MASK_PLANES["EDGE"]
    scale = visit.njy_per_electron
    calexp = SimExposure(
        image=(image_e * scale).astype(np.float32),
        variance=(variance_e * scale**2).astype(np.float32),
        mask=mask,
        wcs=wcs,
        metadata={**meta, "BUNIT": "nJy", "NJYPERE": (scale, "nJy per electron")},
    )
    return raw, calexp


def _metadata(survey: Survey, visit: Visit, detector: Detector, props: DetectorProperties):
    from astropy.time import Time

    return {
        "INSTRUME": INSTRUMENT,
        "TELESCOP": "sciplat simulated telescope",
        "ORIGIN": "sciplat data build (GalSim)",
        "OBSID": visit.obs_id,
        "VISIT": visit.id,
        "EXPOSURE": visit.id,
        "DETECTOR": detector.id,
        "DETNAME": detector.name,
        "BAND": visit.band,
        "FILTER": visit.physical_filter,
        "DAYOBS": str(visit.day_obs),
        "SEQNUM": visit.seq_num,
        "DATE-OBS": Time(visit.mjd_start, format="mjd", scale="tai").isot,
        "MJD-OBS": visit.mjd_start,
        "MJD-MID": visit.mjd_mid,
        "TIMESYS": "TAI",
        "EXPTIME": EXPTIME,
        "RA": visit.ra,
        "DEC": visit.dec,
        "ROTPA": visit.rotation,
        "AIRMASS": visit.airmass,
        "SEEING": (visit.seeing, "PSF FWHM, arcsec"),
        "SKYLEVEL": (visit.sky_e_per_pixel, "sky, electrons per pixel"),
        "MAGZERO": (visit.zero_point, "AB mag of 1 electron in the exposure"),
        "GAIN": props.gain,
        "RDNOISE": props.read_noise,
        "SIMSEED": survey.seed,
    }
