"""The sky model with truth: stars, galaxies, periodic variables, transients and movers.

Everything is vectorised numpy, drawn from independent deterministic streams
(:func:`~sciplat.pipelines.sim.rng.rng_for`), so a seed gives the same sky every time and the
``large`` size can draw tens of millions of objects in chunks.

Fluxes are AB in nJy (``flux = 10**(-0.4 * (mag - 31.4))``); positions are ICRS degrees at the
reference epoch :data:`~sciplat.pipelines.sim.survey.START_MJD`; sizes are half-light radii in
arcsec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sciplat.pipelines.sim.rng import rng_for
from sciplat.pipelines.sim.survey import BANDS, START_MJD, Survey

__all__ = [
    "MOVER_ID_BASE",
    "STAR_ID_BASE",
    "TRANSIENT_ID_BASE",
    "SkyModel",
    "draw_static",
    "mag_to_njy",
    "make_sky",
    "njy_to_mag",
]

#: Truth ids: galaxies count from 1, stars from 10**10, transients 2*10**10, movers 3*10**10.
STAR_ID_BASE = 10**10
TRANSIENT_ID_BASE = 2 * 10**10
MOVER_ID_BASE = 3 * 10**10
STAR_FRACTION = 0.12
RISE_DAYS = 12.0
DECLINE_MAG_PER_DAY = 0.06
TRANSIENT_COLOUR = {"u": 0.6, "g": 0.1, "r": 0.0, "i": 0.25, "z": 0.35, "y": 0.45}


def mag_to_njy(mag: np.ndarray | float) -> np.ndarray:
    return np.power(10.0, -0.4 * (np.asarray(mag, dtype=np.float64) - 31.4))


def njy_to_mag(flux: np.ndarray | float) -> np.ndarray:
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1.0)) + 31.4, np.nan)


def _power_law_mags(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float):
    """Magnitudes with dN/dm ~ 10**(slope * m) between *lo* and *hi* (inverse CDF)."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + rng.uniform(size=n) * (b - a)) / slope


def _uniform_in_cap(rng: np.random.Generator, n: int, ra0: float, dec0: float, radius: float):
    """*n* points uniform on the sphere within *radius* deg of (ra0, dec0)."""
    cos_r = math.cos(math.radians(radius))
    z = rng.uniform(cos_r, 1.0, size=n)  # cos of the distance from the centre
    phi = rng.uniform(0, 2 * math.pi, size=n)
    rho = np.arccos(z)
    # Rotate from the pole to (ra0, dec0).
    d0, a0 = math.radians(dec0), math.radians(ra0)
    sin_d = np.sin(d0) * np.cos(rho) + np.cos(d0) * np.sin(rho) * np.cos(phi)
    dec = np.arcsin(np.clip(sin_d, -1, 1))
    y = np.sin(phi) * np.sin(rho) * np.cos(d0)
    x = np.cos(rho) - np.sin(d0) * sin_d
    ra = a0 + np.arctan2(y, x)
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _uniform_in_box(rng, n: int, ra_range: tuple[float, float], dec_range: tuple[float, float]):
    """*n* points uniform on the sphere in an RA/Dec box."""
    s0, s1 = np.sin(np.radians(dec_range[0])), np.sin(np.radians(dec_range[1]))
    dec = np.degrees(np.arcsin(rng.uniform(s0, s1, size=n)))
    ra = rng.uniform(ra_range[0], ra_range[1], size=n) % 360.0
    return ra, dec


@dataclass
class SkyModel:
    """Truth tables as column dicts (numpy arrays)."""

    galaxies: dict[str, np.ndarray]
    stars: dict[str, np.ndarray]
    transients: dict[str, np.ndarray]
    movers: dict[str, np.ndarray]

    # -- time-dependent truth -------------------------------------------------------------
    def star_positions(self, mjd: float) -> tuple[np.ndarray, np.ndarray]:
        """Star positions at *mjd* including proper motion."""
        s = self.stars
        years = (mjd - START_MJD) / 365.25
        dec = s["dec"] + s["pm_dec"] * years / 3.6e6
        ra = s["ra"] + s["pm_ra"] * years / 3.6e6 / np.cos(np.radians(s["dec"]))
        return ra, dec

    def star_flux(self, band: str, mjd: float) -> np.ndarray:
        """Star fluxes (nJy) at *mjd*: periodic variables vary, the rest are constant."""
        s = self.stars
        mag = s[f"mag_{band}"].copy()
        var = s["is_variable"]
        if var.any():
            phase = ((mjd - START_MJD) / s["period"][var] + s["phase"][var]) % 1.0
            # RR Lyrae-like sawtooth: fast rise (first 15 % of the period), slow decline.
            shape = np.where(phase < 0.15, phase / 0.15, 1 - (phase - 0.15) / 0.85)
            mag[var] += s["amplitude"][var] * (0.5 - shape)
        return mag_to_njy(mag)

    def transient_flux(self, band: str, mjd: float) -> np.ndarray:
        """Supernova-like light curve: zero before explosion, quadratic rise, linear mag decline."""
        t = self.transients
        dt = mjd - t["mjd_explosion"]
        peak = mag_to_njy(t["peak_mag_r"] + TRANSIENT_COLOUR[band])
        rise = peak * np.clip(dt / RISE_DAYS, 0, 1) ** 2
        after = dt > RISE_DAYS
        decline = peak * 10 ** (-0.4 * DECLINE_MAG_PER_DAY * np.clip(dt - RISE_DAYS, 0, None))
        return np.where(dt <= 0, 0.0, np.where(after, decline, rise))

    def mover_positions(self, mjd: float) -> tuple[np.ndarray, np.ndarray]:
        """Linear sky motion of the solar-system objects."""
        m = self.movers
        dt = mjd - m["mjd_ref"]
        dec = m["dec_ref"] + m["v_dec"] * dt
        ra = m["ra_ref"] + m["v_ra"] * dt / np.cos(np.radians(m["dec_ref"]))
        return ra % 360.0, dec

    def mover_flux(self, band: str) -> np.ndarray:
        return mag_to_njy(self.movers[f"mag_{band}"])


def draw_static(
    rng: np.random.Generator,
    n: int,
    ra: np.ndarray,
    dec: np.ndarray,
    id_offset: int = 0,
    faint_limit: float = 26.0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split *n* positions into galaxies and stars and give them magnitudes, colours, shapes.

    Returns (galaxies, stars) column dicts. Ids are ``id_offset + index`` (stars add
    :data:`STAR_ID_BASE`), so chunks drawn with different offsets never collide.
    """
    is_star = rng.uniform(size=n) < STAR_FRACTION
    idx = np.arange(n, dtype=np.int64) + id_offset

    # Galaxies: i-band counts, red sequence / blue cloud colours, bulge+disk.
    g_sel = ~is_star
    ng = int(g_sel.sum())
    imag = _power_law_mags(rng, ng, 18.0, faint_limit, 0.33)
    red = rng.uniform(size=ng) < 0.3
    gr = np.where(red, rng.normal(0.85, 0.08, ng), rng.normal(0.45, 0.12, ng))
    ug = np.where(red, rng.normal(1.7, 0.15, ng), rng.normal(0.95, 0.2, ng))
    ri = np.where(red, rng.normal(0.45, 0.06, ng), rng.normal(0.25, 0.08, ng))
    iz = np.where(red, rng.normal(0.30, 0.05, ng), rng.normal(0.12, 0.06, ng))
    zy = np.where(red, rng.normal(0.15, 0.04, ng), rng.normal(0.05, 0.05, ng))
    mags_g = {"i": imag, "r": imag + ri, "z": imag - iz}
    mags_g["g"] = mags_g["r"] + gr
    mags_g["u"] = mags_g["g"] + ug
    mags_g["y"] = mags_g["z"] - zy
    bulge_frac = np.where(red, rng.uniform(0.5, 0.95, ng), rng.uniform(0.0, 0.3, ng))
    disk_hlr = np.clip(0.9 * 10 ** (-0.12 * (imag - 20)) * rng.lognormal(0, 0.3, ng), 0.1, 6.0)
    bulge_hlr = np.clip(disk_hlr * rng.uniform(0.25, 0.6, ng), 0.05, 3.0)
    emod = np.clip(rng.rayleigh(0.2, ng), 0, 0.7)
    beta = rng.uniform(0, math.pi, ng)
    redshift = np.clip(0.08 + 0.17 * (imag - 18) + rng.normal(0, 0.15, ng), 0.01, 3.5)
    galaxies = {
        "id": idx[g_sel] + 1,
        "ra": ra[g_sel],
        "dec": dec[g_sel],
        "redshift": redshift,
        "bulge_frac": bulge_frac,
        "disk_hlr": disk_hlr,
        "bulge_hlr": bulge_hlr,
        "e1": emod * np.cos(2 * beta),
        "e2": emod * np.sin(2 * beta),
    }
    for b in BANDS:
        galaxies[f"mag_{b}"] = mags_g[b]

    # Stars: r-band counts, main-sequence-like colour locus, a few with large proper motion.
    ns = int(is_star.sum())
    rmag = _power_law_mags(rng, ns, 16.0, faint_limit - 0.5, 0.18)
    gr = np.clip(rng.gamma(2.0, 0.3, ns) + 0.15, 0.15, 1.6)
    ri = np.where(gr > 1.3, 0.45 + 2.0 * (gr - 1.3), 0.42 * gr - 0.05) + rng.normal(0, 0.03, ns)
    mags_s = {"r": rmag, "g": rmag + gr, "i": rmag - ri}
    mags_s["u"] = mags_s["g"] + np.clip(0.9 + 1.1 * (gr - 0.3), 0.7, 2.8)
    mags_s["z"] = mags_s["i"] - (0.35 * ri + 0.01)
    mags_s["y"] = mags_s["z"] - (0.2 * ri + 0.01)
    high_pm = rng.uniform(size=ns) < 0.05
    pm_scale = np.where(high_pm, 200.0, 6.0)
    stars = {
        "id": idx[is_star] + STAR_ID_BASE,
        "ra": ra[is_star],
        "dec": dec[is_star],
        "pm_ra": rng.normal(0, 1, ns) * pm_scale,
        "pm_dec": rng.normal(0, 1, ns) * pm_scale,
        "is_variable": np.zeros(ns, dtype=bool),
        "period": np.full(ns, np.nan),
        "amplitude": np.zeros(ns),
        "phase": np.zeros(ns),
    }
    for b in BANDS:
        stars[f"mag_{b}"] = mags_s[b]
    return galaxies, stars


def make_sky(survey: Survey) -> SkyModel:
    """The sky of the survey's field (image sizes): static sky, variables, transients, movers."""
    size, seed = survey.size, survey.seed
    rng = rng_for(seed, "sky")
    area = 2 * math.pi * (1 - math.cos(math.radians(survey.field_radius))) * (180 / math.pi) ** 2
    n = int(size.density * area)
    ra, dec = _uniform_in_cap(rng, n, survey.ra, survey.dec, survey.field_radius)
    galaxies, stars = draw_static(rng, n, ra, dec)

    # Periodic variables: some of the brighter stars.
    vrng = rng_for(seed, "variables")
    candidates = np.flatnonzero(stars["mag_r"] < 23.0)
    chosen = vrng.choice(candidates, size=min(size.variables, len(candidates)), replace=False)
    stars["is_variable"][chosen] = True
    stars["period"][chosen] = vrng.uniform(0.3, 8.0, len(chosen))
    stars["amplitude"][chosen] = vrng.uniform(0.2, 1.0, len(chosen))
    stars["phase"][chosen] = vrng.uniform(0, 1, len(chosen))

    # Transients: in galaxies, exploding in the second half of the survey.
    trng = rng_for(seed, "transients")
    t0, t1 = survey.mjd_range
    hosts = np.flatnonzero(galaxies["mag_i"] < 23.5)
    nt = min(size.transients, len(hosts))
    host_idx = trng.choice(hosts, size=nt, replace=False)
    offset = trng.normal(0, 1, (2, nt)) * galaxies["disk_hlr"][host_idx] / 3600
    transients = {
        "id": np.arange(nt, dtype=np.int64) + TRANSIENT_ID_BASE + 1,
        "host_id": galaxies["id"][host_idx],
        "ra": galaxies["ra"][host_idx] + offset[0] / np.cos(np.radians(galaxies["dec"][host_idx])),
        "dec": galaxies["dec"][host_idx] + offset[1],
        "mjd_explosion": trng.uniform(t0 + 0.5 * (t1 - t0), t0 + 0.8 * (t1 - t0), nt),
        "peak_mag_r": trng.uniform(19.5, 22.0, nt),
    }

    # Movers: fast solar-system objects crossing the field during a late visit.
    mrng = rng_for(seed, "movers")
    late = [v for v in survey.visits if v.mjd_start > t0 + 0.6 * (t1 - t0)] or survey.visits[-1:]
    nm = size.movers
    ref_visits = [late[int(k)] for k in mrng.integers(0, len(late), nm)]
    speed = mrng.uniform(0.4, 1.0, nm)  # deg/day
    angle = mrng.uniform(0, 2 * math.pi, nm)
    mr = mrng.uniform(19.0, 21.5, nm)
    rad = 0.3 * survey.field_radius * np.sqrt(mrng.uniform(size=nm))
    pa = mrng.uniform(0, 2 * math.pi, nm)
    movers = {
        "id": np.arange(nm, dtype=np.int64) + MOVER_ID_BASE + 1,
        "mjd_ref": np.array([v.mjd_mid for v in ref_visits]),
        "ra_ref": np.array([v.ra for v in ref_visits])
        + rad * np.cos(pa) / math.cos(math.radians(survey.dec)),
        "dec_ref": np.array([v.dec for v in ref_visits]) + rad * np.sin(pa),
        "v_ra": speed * np.cos(angle),
        "v_dec": speed * np.sin(angle),
    }
    # Solar colours (asteroid-like).
    for b, c in zip(BANDS, (1.6, 0.45, 0.0, -0.12, -0.15, -0.17), strict=True):
        movers[f"mag_{b}"] = mr + c
    return SkyModel(galaxies=galaxies, stars=stars, transients=transients, movers=movers)
