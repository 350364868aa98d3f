"""The simulated survey: size presets, camera geometry, the visit plan and per-detector WCS.

"SimCam" is a small LSST-like camera: square detectors at 0.2"/pixel laid out on a grid with
gaps. A survey is a list of 30 s visits in several of ugrizy spread over a few weeks, each with
a dithered pointing, a small rotation and its own seeing, sky level and zero point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from astropy.wcs import WCS

from sciplat.pipelines.sim.rng import rng_for

__all__ = [
    "BANDS",
    "FILTERS",
    "INSTRUMENT",
    "SIZES",
    "Detector",
    "SizePreset",
    "Survey",
    "Visit",
    "make_survey",
]

INSTRUMENT = "SimCam"
BANDS = ("u", "g", "r", "i", "z", "y")
#: physical_filter name for each band.
FILTERS = {b: f"{b}_sim" for b in BANDS}
#: Zero point (AB mag giving 1 electron) of a 30 s exposure at airmass 1 (LSST SMTN-002 + 30 s).
ZP30 = {"u": 30.21, "g": 32.20, "r": 32.05, "i": 31.86, "z": 31.47, "y": 30.51}
#: Dark-sky brightness, AB mag / arcsec^2 (SMTN-002).
SKY_MAG = {"u": 22.96, "g": 22.26, "r": 21.20, "i": 20.48, "z": 19.60, "y": 18.61}
#: Median seeing FWHM in arcsec relative to r (seeing ~ lambda^-0.2).
SEEING_SCALE = {"u": 1.15, "g": 1.08, "r": 1.0, "i": 0.95, "z": 0.92, "y": 0.90}
#: Filter edges in metres (approximate LSST throughputs, for ObsCore em_min/em_max).
BAND_EDGES_M = {
    "u": (320e-9, 400e-9),
    "g": (400e-9, 552e-9),
    "r": (552e-9, 691e-9),
    "i": (691e-9, 818e-9),
    "z": (818e-9, 922e-9),
    "y": (922e-9, 1060e-9),
}
PIXEL_SCALE = 0.2  # arcsec / pixel
EXPTIME = 30.0  # s
GAP_ARCSEC = 30.0
#: Centre of the simulated field (inside the DESC DC2 footprint, like DP0).
FIELD_RA = 62.0
FIELD_DEC = -37.0
START_MJD = 60800.0  # 2025-05-03


@dataclass(frozen=True)
class SizePreset:
    """How big a data preview is."""

    name: str
    detectors: int
    detector_pixels: int
    visits_per_band: dict[str, int]
    density: float  # truth objects per square degree (all types)
    survey_days: float
    images: bool = True
    object_rows: int = 0  # catalog-only sizes: number of Object rows to generate
    variables: int = 0
    transients: int = 0
    movers: int = 0


SIZES: dict[str, SizePreset] = {
    "tiny": SizePreset(
        name="tiny",
        detectors=2,
        detector_pixels=1024,
        visits_per_band={"g": 4, "r": 4, "i": 4},
        density=150_000,
        survey_days=24,
        variables=20,
        transients=6,
        movers=2,
    ),
    "small": SizePreset(
        name="small",
        detectors=4,
        detector_pixels=2048,
        visits_per_band={"u": 2, "g": 5, "r": 5, "i": 5, "z": 3, "y": 2},
        density=120_000,
        survey_days=40,
        variables=120,
        transients=25,
        movers=5,
    ),
}
#: The small survey's camera and cadence with more visits, catalogs only, 10M Objects.
SIZES["large"] = replace(
    SIZES["small"],
    name="large",
    visits_per_band={"u": 3, "g": 6, "r": 6, "i": 6, "z": 4, "y": 3},
    density=400_000,
    images=False,
    object_rows=10_000_000,
    variables=0,
    transients=0,
    movers=0,
)


@dataclass(frozen=True)
class Detector:
    """One detector: its id, name and the focal-plane position of its centre (arcsec)."""

    id: int
    name: str
    x_arcsec: float
    y_arcsec: float
    npix: int


@dataclass
class Visit:
    """One 30 s exposure (visit == exposure: one snap per visit)."""

    id: int
    band: str
    mjd_start: float
    ra: float  # boresight, deg
    dec: float
    rotation: float  # deg, sky angle of +y
    seeing: float  # FWHM arcsec
    sky_mag: float  # mag / arcsec^2
    zero_point: float  # AB mag for 1 electron in the exposure
    airmass: float
    seq_num: int
    night: int

    @property
    def physical_filter(self) -> str:
        return FILTERS[self.band]

    @property
    def mjd_mid(self) -> float:
        return self.mjd_start + EXPTIME / 2 / 86400

    @property
    def mjd_end(self) -> float:
        return self.mjd_start + EXPTIME / 86400

    @property
    def day_obs(self) -> int:
        """YYYYMMDD of the observing night (Rubin: local date at the start of the night)."""
        from astropy.time import Time

        return int(Time(self.mjd_start - 0.5, format="mjd").strftime("%Y%m%d"))

    @property
    def obs_id(self) -> str:
        return f"SC_O_{self.day_obs}_{self.seq_num:06d}"

    @property
    def sky_e_per_pixel(self) -> float:
        """Sky background in electrons per pixel."""
        return 10 ** (-0.4 * (self.sky_mag - self.zero_point)) * PIXEL_SCALE**2

    @property
    def njy_per_electron(self) -> float:
        """Calibration: nJy per electron (AB zero point 31.4 for nJy)."""
        return 10 ** (0.4 * (31.4 - self.zero_point))


@dataclass
class Survey:
    """The whole plan: preset, detectors, visits."""

    size: SizePreset
    seed: int
    detectors: list[Detector]
    visits: list[Visit]
    field_radius: float  # deg: every detector of every visit lies within this of the field centre
    ra: float = FIELD_RA
    dec: float = FIELD_DEC
    _wcs_cache: dict[tuple[int, int], WCS] = field(default_factory=dict, repr=False)

    @property
    def bands(self) -> list[str]:
        return [b for b in BANDS if b in self.size.visits_per_band]

    @property
    def mjd_range(self) -> tuple[float, float]:
        return self.visits[0].mjd_start, self.visits[-1].mjd_end

    def visit(self, visit_id: int) -> Visit:
        for v in self.visits:
            if v.id == visit_id:
                return v
        raise KeyError(visit_id)

    def detector(self, detector_id: int) -> Detector:
        return self.detectors[detector_id]

    def wcs(self, visit: Visit, detector: Detector) -> WCS:
        """TAN WCS of *detector* in *visit* (FITS 1-based pixel convention inside the WCS)."""
        key = (visit.id, detector.id)
        if key not in self._wcs_cache:
            self._wcs_cache[key] = detector_wcs(visit, detector)
        return self._wcs_cache[key]

    def corners(self, visit: Visit, detector: Detector) -> np.ndarray:
        """(4, 2) array of (ra, dec) of the detector corners: ll, ul, ur, lr."""
        n = detector.npix
        px = np.array([[-0.5, -0.5], [-0.5, n - 0.5], [n - 0.5, n - 0.5], [n - 0.5, -0.5]])
        return np.array(self.wcs(visit, detector).wcs_pix2world(px, 0))


def detector_wcs(visit: Visit, detector: Detector) -> WCS:
    """Gnomonic WCS: the boresight is the tangent point, the detector sits at its offset."""
    n = detector.npix
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [visit.ra, visit.dec]
    # Boresight pixel (1-based FITS): detector centre minus its focal-plane offset.
    centre = (n + 1) / 2
    w.wcs.crpix = [
        centre - detector.x_arcsec / PIXEL_SCALE,
        centre - detector.y_arcsec / PIXEL_SCALE,
    ]
    theta = math.radians(visit.rotation)
    scale = PIXEL_SCALE / 3600
    # +x towards east (RA decreases to the right on the sky: CD1_1 negative), rotated.
    w.wcs.cd = np.array(
        [
            [-scale * math.cos(theta), scale * math.sin(theta)],
            [scale * math.sin(theta), scale * math.cos(theta)],
        ]
    )
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    w.wcs.set()
    return w


def make_detectors(size: SizePreset) -> list[Detector]:
    """Detectors on a near-square grid, ids 0..n-1 row by row."""
    ncol = math.ceil(math.sqrt(size.detectors))
    nrow = math.ceil(size.detectors / ncol)
    pitch = size.detector_pixels * PIXEL_SCALE + GAP_ARCSEC
    out = []
    for i in range(size.detectors):
        row, col = divmod(i, ncol)
        out.append(
            Detector(
                id=i,
                name=f"R00_S{row}{col}",
                x_arcsec=(col - (ncol - 1) / 2) * pitch,
                y_arcsec=(row - (nrow - 1) / 2) * pitch,
                npix=size.detector_pixels,
            )
        )
    return out


def make_survey(size: SizePreset, seed: int) -> Survey:
    """The deterministic visit plan for *size* and *seed*."""
    rng = rng_for(seed, "survey")
    detectors = make_detectors(size)
    bands = [b for b in BANDS if b in size.visits_per_band]
    # Interleave bands so each band's visits spread over the whole survey.
    slots: list[tuple[float, str]] = []
    for band in bands:
        n = size.visits_per_band[band]
        for k in range(n):
            slots.append(((k + 0.5) / n + rng.uniform(-0.02, 0.02), band))
    slots.sort()
    n_visits = len(slots)
    half_fp = max(
        max(abs(d.x_arcsec), abs(d.y_arcsec)) + d.npix * PIXEL_SCALE / 2 for d in detectors
    )
    dither = 0.15 * size.detector_pixels * PIXEL_SCALE  # arcsec
    visits = []
    for frac, band in slots:
        night = int(frac * size.survey_days)
        mjd = START_MJD + night + 0.05 + rng.uniform(0, 0.3)  # ~01:00-08:00 UTC
        dra, ddec = rng.uniform(-dither, dither, size=2) / 3600
        airmass = float(1.0 + rng.exponential(0.15))
        seeing = float(0.7 * SEEING_SCALE[band] * airmass**0.6 * rng.lognormal(0, 0.15))
        visits.append(
            Visit(
                id=0,
                band=band,
                mjd_start=float(mjd),
                ra=FIELD_RA + dra / math.cos(math.radians(FIELD_DEC)),
                dec=FIELD_DEC + ddec,
                rotation=float(rng.uniform(-5, 5)),
                seeing=max(seeing, 0.45),
                sky_mag=float(SKY_MAG[band] + rng.normal(0, 0.15)),
                zero_point=float(ZP30[band] - 0.1 * (airmass - 1) + rng.normal(0, 0.03)),
                airmass=airmass,
                seq_num=0,
                night=night,
            )
        )
    visits.sort(key=lambda v: v.mjd_start)
    for k, v in enumerate(visits):
        # Rubin-style ids: YYYYMMDD of the night followed by a 5-digit sequence number.
        v.seq_num = k + 1
        v.id = v.day_obs * 100_000 + v.seq_num
    assert len(visits) == n_visits
    radius = (half_fp * math.sqrt(2) + dither * math.sqrt(2) + 10) / 3600
    return Survey(size=size, seed=seed, detectors=detectors, visits=visits, field_radius=radius)
