"""PSF-matched image differencing (Alard & Lupton 1998) and DIASource detection.

The matching kernel is a linear combination of Gaussians times polynomials (the Alard-Lupton
basis), fitted by weighted least squares on stamps around bright stars together with a
differential background; stamps that fit badly are rejected and the fit repeated. The image
with the narrower PSF is convolved ("auto" mode), so the kernel never has to deconvolve. The
kernel is constant over a detector (the detectors are small).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table, vstack
from scipy import signal

from sciplat.pipelines.butler_io import SimExposure
from sciplat.pipelines.tasks.imaging import (
    ProcessingError,
    PsfModel,
    _bits,
    _stamp,
    detect,
    measure_at,
)

__all__ = [
    "MatchingKernel",
    "alard_lupton_basis",
    "detect_dia_sources",
    "fit_matching_kernel",
    "subtract_images",
]


def alard_lupton_basis(
    size: int, sigmas: tuple[float, ...], degrees: tuple[int, ...]
) -> list[np.ndarray]:
    """Basis kernels G_sigma(x, y) x^i y^j, i + j <= degree, each with unit L2 norm."""
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    xs, ys = x / half, y / half
    basis = []
    for sigma, degree in zip(sigmas, degrees, strict=True):
        gauss = np.exp(-0.5 * (x**2 + y**2) / sigma**2)
        for i in range(degree + 1):
            for j in range(degree + 1 - i):
                k = gauss * xs**i * ys**j
                basis.append(k / np.sqrt((k**2).sum()))
    return basis


@dataclass
class MatchingKernel:
    """The fitted kernel, which image it convolves, the background term and fit quality."""

    kernel: np.ndarray
    background: float
    convolve_science: bool
    n_stamps: int
    chi2_per_dof: float

    @property
    def flux_scale(self) -> float:
        return float(self.kernel.sum())


def _kernel_geometry(sigma_to: float, sigma_from: float) -> tuple[int, tuple[float, ...]]:
    """Kernel size and basis widths from the two PSF widths (pixels)."""
    width = float(np.sqrt(max(sigma_to**2 - sigma_from**2, 0.25)))
    sigmas = (0.7 * width, 1.5 * width, 3.0 * width)
    size = int(np.clip(2 * np.ceil(3.0 * max(sigmas[1], width, 1.5)) + 1, 11, 35))
    return size, sigmas


def fit_matching_kernel(
    to_convolve: np.ndarray,
    reference: np.ndarray,
    variance: np.ndarray,
    positions: np.ndarray,
    *,
    sigma_to: float,
    sigma_from: float,
    degrees: tuple[int, ...] = (4, 2, 2),
    stamp_half: int = 15,
    bad: np.ndarray | None = None,
) -> tuple[np.ndarray, float, int, float]:
    """Fit K, b minimising sum((reference - K * to_convolve - b)^2 / variance) on stamps.

    Returns (kernel, background, number of stamps used, chi^2 per degree of freedom).
    """
    size, sigmas = _kernel_geometry(sigma_to, sigma_from)
    basis = alard_lupton_basis(size, sigmas, degrees)
    kh = size // 2
    rows, targets, weights, stamp_of = [], [], [], []
    for k, (x, y) in enumerate(positions):
        ref = _stamp(reference, x, y, stamp_half)
        big = _stamp(to_convolve, x, y, stamp_half + kh)
        var = _stamp(variance, x, y, stamp_half)
        if ref is None or big is None or var is None:
            continue
        if bad is not None and _stamp(bad, x, y, stamp_half + kh).any():
            continue
        cols = [signal.fftconvolve(big, b[::-1, ::-1], mode="valid").ravel() for b in basis]
        cols.append(np.ones(ref.size))
        rows.append(np.column_stack(cols))
        targets.append(ref.ravel())
        weights.append(1.0 / np.clip(var.ravel(), 1e-12, None))
        stamp_of.append(np.full(ref.size, k))
    if len(rows) < 5:
        raise ProcessingError(f"kernel fit: {len(rows)} usable stamps (need 5)")
    a_all = np.vstack(rows)
    b_all = np.concatenate(targets)
    w_all = np.concatenate(weights)
    s_all = np.concatenate(stamp_of)
    use = np.ones(len(b_all), dtype=bool)
    for _ in range(3):
        sw = np.sqrt(w_all[use])
        coef, *_ = np.linalg.lstsq(a_all[use] * sw[:, None], b_all[use] * sw, rcond=None)
        chi = (b_all - a_all @ coef) ** 2 * w_all
        per_stamp = {k: chi[s_all == k].mean() for k in np.unique(s_all)}
        values = np.array(list(per_stamp.values()))
        limit = np.median(values) + 3 * 1.4826 * np.median(np.abs(values - np.median(values)))
        good = {k for k, v in per_stamp.items() if v <= max(limit, 1.5)}
        new_use = np.isin(s_all, list(good))
        if (new_use == use).all():
            break
        use = new_use
    kernel = np.tensordot(coef[:-1], np.array(basis), axes=1)
    dof = max(int(use.sum()) - len(coef), 1)
    chi2 = float(((b_all[use] - a_all[use] @ coef) ** 2 * w_all[use]).sum() / dof)
    return kernel, float(coef[-1]), len(good), chi2


def _convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return signal.fftconvolve(image, kernel[::-1, ::-1], mode="same")


def _decorrelation_kernel(
    kernel: np.ndarray, var_ref: float, var_conv: float, shape: tuple[int, int]
) -> np.ndarray:
    """Fourier filter that whitens the noise of ref - K * conv (Reiss & Lupton 2016)."""
    padded = np.zeros(shape)
    kh = kernel.shape[0] // 2
    padded[: kernel.shape[0], : kernel.shape[1]] = kernel
    padded = np.roll(padded, (-kh, -kh), axis=(0, 1))
    k_hat = np.abs(np.fft.rfft2(padded))
    kappa = kernel.sum()
    return np.sqrt((var_ref + kappa**2 * var_conv) / (var_ref + k_hat**2 * var_conv))


def _apply_filter(image: np.ndarray, phi: np.ndarray) -> np.ndarray:
    return np.fft.irfft2(np.fft.rfft2(image) * phi, s=image.shape)


def _filter_stamp(phi: np.ndarray, size: int) -> np.ndarray:
    """The decorrelation filter as a small real-space kernel (for the PSF)."""
    full = np.fft.irfft2(phi, s=((phi.shape[0]), (phi.shape[1] - 1) * 2))
    half = size // 2
    return np.roll(full, (half, half), axis=(0, 1))[:size, :size]


def subtract_images(
    science: SimExposure,
    template: SimExposure,
    science_psf: PsfModel,
    template_psf: PsfModel,
    kernel_sources: Table,
) -> tuple[SimExposure, MatchingKernel, PsfModel]:
    """Difference image = science - K * template (or K * science - template), same WCS/shape.

    *template* must already be warped onto the science image's pixel grid. Returns the
    difference (variance propagated, masks combined), the kernel and the difference's PSF.
    """
    if science.shape != template.shape:
        raise ProcessingError("template is not on the science image's pixel grid")
    bad = science.mask_of("BAD", "SAT", "NO_DATA") | template.mask_of("BAD", "SAT", "NO_DATA")
    sel = (
        ~kernel_sources["flag_saturated"]
        & ~kernel_sources["flag_edge"]
        & (kernel_sources["snr"] > 20)
    )
    positions = np.column_stack([kernel_sources["x"][sel], kernel_sources["y"][sel]])
    convolve_science = science_psf.sigma < template_psf.sigma
    if convolve_science:
        to_conv, ref = science, template
        sig_to, sig_from = template_psf.sigma, science_psf.sigma
    else:
        to_conv, ref = template, science
        sig_to, sig_from = science_psf.sigma, template_psf.sigma
    var_fit = science.variance + template.variance
    kernel, bg, n, chi2 = fit_matching_kernel(
        to_conv.image.astype(np.float64),
        ref.image.astype(np.float64),
        var_fit,
        positions,
        sigma_to=sig_to,
        sigma_from=sig_from,
        bad=bad,
    )
    conv = _convolve(to_conv.image.astype(np.float64), kernel) + bg
    # diff = reference - K * to_conv, with the sign that keeps "science minus template".
    sign = -1.0 if convolve_science else 1.0
    diff = sign * (ref.image.astype(np.float64) - conv)
    good = ~bad
    var_ref = float(np.median(ref.variance[good]))
    var_conv = float(np.median(to_conv.variance[good]))
    decorr = _decorrelation_kernel(kernel, var_ref, var_conv, diff.shape)
    diff[bad] = 0.0
    diff = _apply_filter(diff, decorr)
    kappa = float(kernel.sum())
    # After decorrelation the noise is white again, with this per-pixel variance.
    variance = ref.variance.astype(np.float64) + kappa**2 * to_conv.variance
    psf_stamp = science_psf.stamp if not convolve_science else _convolve(science_psf.stamp, kernel)
    psf_stamp = np.clip(_convolve(psf_stamp, _filter_stamp(decorr, psf_stamp.shape[0])), 0, None)
    diff_psf = PsfModel(psf_stamp / psf_stamp.sum(), science_psf.apcorr)
    # Pixels within a kernel half-width of bad pixels are unreliable after convolution.
    from scipy import ndimage

    grown = ndimage.binary_dilation(bad, iterations=kernel.shape[0] // 2)
    mask = (science.mask | template.mask).astype(np.int32)
    mask[grown & ~bad] |= _bits("SUSPECT")
    diff[bad] = 0.0
    variance[bad] = np.inf
    exposure = SimExposure(
        image=diff.astype(np.float32),
        variance=np.where(np.isfinite(variance), variance, 0).astype(np.float32),
        mask=mask,
        wcs=science.wcs.deepcopy(),
        metadata={
            **science.metadata,
            "KSUM": (float(kernel.sum()), "matching kernel sum"),
            "KCONVSCI": (bool(convolve_science), "science image convolved"),
            "KCHI2": (chi2, "kernel fit chi2 per dof"),
            "KNSTAMP": n,
        },
    )
    return exposure, MatchingKernel(kernel, bg, convolve_science, n, chi2), diff_psf


def detect_dia_sources(
    difference: SimExposure, psf: PsfModel, *, threshold: float = 5.0, dipole_pixels: float = 0
) -> Table:
    """Positive and negative detections on a difference image; close +/- pairs become dipoles.

    Columns as :func:`~sciplat.pipelines.tasks.imaging.measure_at` plus ``isNegative``,
    ``isDipole``, ``dipoleFluxDiff``, ``dipoleLength``, ``bboxSize``.
    """
    dipole_pixels = dipole_pixels or 2.0 * psf.fwhm
    tables = []
    for sign in (1.0, -1.0):
        signed = SimExposure(
            image=(sign * difference.image).astype(np.float32),
            variance=np.where(difference.mask_of("BAD", "NO_DATA"), 1e30, difference.variance),
            mask=difference.mask,
            wcs=difference.wcs,
        )
        found = detect(signed, threshold=threshold)
        table = measure_at(signed, psf, found)
        table["psfFlux"] *= sign
        table["apFlux"] *= sign
        table["isNegative"] = np.full(len(table), sign < 0)
        table["bboxSize"] = (
            np.maximum(found["xmax"] - found["xmin"], found["ymax"] - found["ymin"]).astype(
                np.int32
            )
            + 1
            if len(found)
            else np.zeros(0, dtype=np.int32)
        )
        tables.append(table)
    both = vstack(tables)
    n = len(both)
    both["isDipole"] = np.zeros(n, dtype=bool)
    both["dipoleFluxDiff"] = np.full(n, np.nan)
    both["dipoleLength"] = np.full(n, np.nan)
    keep = np.ones(n, dtype=bool)
    pos = np.flatnonzero(~both["isNegative"])
    neg = np.flatnonzero(both["isNegative"])
    for i in pos:
        if len(neg) == 0:
            break
        d = np.hypot(both["x"][neg] - both["x"][i], both["y"][neg] - both["y"][i])
        j = neg[np.argmin(d)]
        if d.min() < dipole_pixels and keep[j]:
            # One source with a positive and a negative lobe (a moved or mis-registered object).
            both["isDipole"][i] = True
            both["dipoleFluxDiff"][i] = both["psfFlux"][i] - both["psfFlux"][j]
            both["dipoleLength"][i] = d.min()
            both["x"][i] = 0.5 * (both["x"][i] + both["x"][j])
            both["y"][i] = 0.5 * (both["y"][i] + both["y"][j])
            keep[j] = False
    both = both[keep]
    if difference.wcs is not None and len(both):
        ra, dec = difference.wcs.wcs_pix2world(both["x"], both["y"], 0)
        both["coord_ra"], both["coord_dec"] = ra, dec
    both["id"] = np.arange(len(both), dtype=np.int64)
    return both
