"""Data Release Production as ``lsst.pipe.base`` PipelineTasks (after ``isr`` and ``calibrate``).

``makeCoadd`` (skymap, tract, patch, band) -> ``measureCoadd`` (skymap, tract, patch) ->
``forcedPhot`` (visit, detector); ``writeSource`` (visit, detector) formats the calibrated
single-visit sources. Catalog outputs already have the columns of our felis ``dp1`` tables
(``object_patch`` -> Object, ``source`` -> Source, ``forced_source`` -> ForcedSource).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table, vstack
from lsst.pex.config import Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as ct

from sciplat.pipelines.butler_io import SimExposure
from sciplat.pipelines.catalogs import REF_BAND_ORDER, _ebv, ccd_visit_id
from sciplat.pipelines.drp import cmodel, measure, skymap
from sciplat.pipelines.schema import BANDS
from sciplat.pipelines.sim.skymodel import njy_to_mag
from sciplat.pipelines.sim.survey import PIXEL_SCALE
from sciplat.pipelines.tasks import imaging
from sciplat.pipelines.tasks.prompt import (
    IMAGE,
    VISIT_DIMS,
    psf_from_array,
    visit_detector,
    visit_input,
    visit_output,
)

__all__ = [
    "ForcedPhotTask",
    "MakeCoaddTask",
    "MeasureCoaddTask",
    "WriteSourceTask",
    "object_id",
]

PATCH_DIMS = ("skymap", "tract", "patch")
OBJECT_ID_BASE = 3 * 10**15
MAG_ERR = 2.5 / np.log(10)


def object_id(tract: int, patch: int, index: np.ndarray) -> np.ndarray:
    """Deterministic objectIds: the same inputs give the same ids on a re-run."""
    return OBJECT_ID_BASE + (tract * 1000 + patch) * 10**6 + np.asarray(index, dtype=np.int64)


def _key(ref: Any, *names: str) -> tuple:
    return tuple(ref.dataId[n] for n in names)


# -- coadds -------------------------------------------------------------------------------


class MakeCoaddConnections(PipelineTaskConnections, dimensions=(*PATCH_DIMS, "band")):
    images = visit_input(
        "preliminary_visit_image",
        doc="Calibrated visit images overlapping the patch in this band",
        multiple=True,
        deferLoad=True,
    )
    psfs = visit_input("visit_psf", "NumpyArray", doc="Their PSFs", multiple=True)
    deep_coadd = ct.Output(
        "deep_coadd", IMAGE, dimensions=(*PATCH_DIMS, "band"), doc="Coadd of the patch (nJy)"
    )
    deep_coadd_psf = ct.Output(
        "deep_coadd_psf",
        "NumpyArray",
        dimensions=(*PATCH_DIMS, "band"),
        doc="Position-dependent coadd PSF (measure.CoaddPsf.to_array)",
    )


class MakeCoaddConfig(PipelineTaskConfig, pipelineConnections=MakeCoaddConnections):
    psf_cell = Field[int](
        doc="Cell size (pixels) on which the coadd PSF records which inputs cover the patch.",
        default=16,
    )


class MakeCoaddTask(PipelineTask):
    """Warp the calibrated visits onto the patch grid and coadd them (inverse variance)."""

    ConfigClass = MakeCoaddConfig
    _DefaultName = "makeCoadd"

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        data_id = butlerQC.quantum.dataId
        psfs = {_key(ref, "visit", "detector"): butlerQC.get(ref) for ref in inputRefs.psfs}
        handles = []
        for ref in sorted(inputRefs.images, key=lambda r: _key(r, "visit", "detector")):
            handles.append((_key(ref, "visit", "detector"), butlerQC.get(ref)))
        outputs = self.run(
            [h for _, h in handles],
            [psf_from_array(psfs[k]) for k, _ in handles],
            [k for k, _ in handles],
            patch=int(data_id["patch"]),
            band=str(data_id["band"]),
        )
        butlerQC.put(outputs, outputRefs)

    def run(
        self,
        images: list[Any],
        psfs: list[imaging.PsfModel],
        inputs: list[tuple[int, int]],
        *,
        patch: int,
        band: str,
    ) -> Struct:
        geometry = skymap.patch_geometry(patch)
        wcs = geometry.wcs()
        # One image in memory at a time: deferred handles are read as they are warped.
        loaded = (h.get() if hasattr(h, "get") else h for h in images)
        result, weights, maps = measure.coadd_with_coverage(
            loaded, wcs, geometry.shape, coverage_bin=self.config.psf_cell
        )
        if not any(weights):
            raise imaging.ProcessingError("no calibrated visit image overlaps this patch")
        coadd_psf = measure.CoaddPsf(list(psfs), maps, self.config.psf_cell)
        psf = coadd_psf.mean
        used = [k for k, w in zip(inputs, weights, strict=True) if w > 0]
        result.metadata.update(
            {
                "BAND": band,
                "SKYMAP": skymap.SKYMAP,
                "TRACT": geometry.tract,
                "PATCH": patch,
                "NINPUTS": len(used),
                "PSFSIGMA": (psf.sigma, "mean coadd PSF Gaussian-equivalent sigma, pixels"),
                **{f"INP{i:04d}": f"{v}/{d}" for i, (v, d) in enumerate(used)},
            }
        )
        self.log.info("patch %d %s: %d inputs, PSF FWHM %.2f px", patch, band, len(used), psf.fwhm)
        return Struct(deep_coadd=result, deep_coadd_psf=coadd_psf.to_array())


# -- multi-band detection and measurement ---------------------------------------------------


class MeasureCoaddConnections(PipelineTaskConnections, dimensions=PATCH_DIMS):
    coadds = ct.Input(
        "deep_coadd", IMAGE, dimensions=(*PATCH_DIMS, "band"), multiple=True, doc="Band coadds"
    )
    psfs = ct.Input(
        "deep_coadd_psf",
        "NumpyArray",
        dimensions=(*PATCH_DIMS, "band"),
        multiple=True,
        doc="Coadd PSFs",
    )
    object_patch = ct.Output(
        "object_patch",
        "ArrowAstropy",
        dimensions=PATCH_DIMS,
        doc="Objects whose centre is in the patch's inner box (dp1.Object columns)",
    )


class MeasureCoaddConfig(PipelineTaskConfig, pipelineConnections=MeasureCoaddConnections):
    detection_threshold = Field[float](doc="Detection threshold (sigma).", default=5.0)


class MeasureCoaddTask(PipelineTask):
    """Detect on the multi-band detection image; measure every band at the same positions."""

    ConfigClass = MeasureCoaddConfig
    _DefaultName = "measureCoadd"

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        data_id = butlerQC.quantum.dataId
        coadds = {str(ref.dataId["band"]): butlerQC.get(ref) for ref in inputRefs.coadds}
        psfs = {
            str(ref.dataId["band"]): measure.CoaddPsf.from_array(butlerQC.get(ref))
            for ref in inputRefs.psfs
        }
        out = self.run(coadds, psfs, tract=int(data_id["tract"]), patch=int(data_id["patch"]))
        butlerQC.put(out, outputRefs)

    def run(
        self,
        coadds: dict[str, SimExposure],
        psfs: dict[str, imaging.PsfModel | measure.CoaddPsf],
        *,
        tract: int,
        patch: int,
    ) -> Struct:
        bands = [b for b in BANDS if b in coadds]
        detection = measure.detection_image([coadds[b] for b in bands])
        sigma = float(np.mean([psfs[b].sigma for b in bands]))
        found = measure.detect_multiband(
            detection, sigma, threshold=self.config.detection_threshold
        )
        geometry = skymap.patch_geometry(patch, tract)
        found = found[geometry.contains(found["coord_ra"], found["coord_dec"])]
        shapes = cmodel.fit_shapes(
            detection, found, measure.detection_psf_at([psfs[b] for b in bands])
        )
        per_band = measure.measure_bands(found, {b: coadds[b] for b in bands}, psfs, shapes)
        table = object_columns(found, per_band, tract=tract, patch=patch, psf_sigma=sigma)
        self.log.info("patch %d: %d objects in %s", patch, len(table), "".join(bands))
        return Struct(object_patch=table)


def object_columns(
    found: Table,
    per_band: dict[str, dict[str, np.ndarray]],
    *,
    tract: int,
    patch: int,
    psf_sigma: float,
) -> Table:
    """dp1.Object columns (all but ``<band>_inputCount``, known once forced photometry ran)."""
    n = len(found)
    nan = np.full(n, np.nan)
    t = Table()
    t["objectId"] = object_id(tract, patch, np.arange(n))
    t["parentObjectId"] = np.zeros(n, dtype=np.int64)
    t["coord_ra"] = np.asarray(found["coord_ra"], dtype=np.float64)
    t["coord_dec"] = np.asarray(found["coord_dec"], dtype=np.float64)
    snr = np.clip(np.asarray(found["snr"], dtype=np.float64), 1.0, None)
    pos_err = np.clip(psf_sigma * PIXEL_SCALE / snr, 0.003, None) / 3600
    t["coord_raErr"] = pos_err.astype(np.float32)
    t["coord_decErr"] = pos_err.astype(np.float32)
    t["tract"] = np.full(n, tract, dtype=np.int64)
    t["patch"] = np.full(n, patch, dtype=np.int64)
    ref_band = np.full(n, "", dtype=object)
    ref_ext = nan.copy()
    for b in reversed(REF_BAND_ORDER):
        if b in per_band:
            have = np.isfinite(per_band[b]["psfFlux"])
            ref_band = np.where(have, b, ref_band)
            ref_ext = np.where(have, per_band[b]["extendedness"], ref_ext)
    t["refBand"] = ref_band.astype(str)
    t["refExtendedness"] = ref_ext
    blend = np.asarray(found["from_blend"], dtype=bool)
    t["detect_isPrimary"] = np.ones(n, dtype=bool)
    t["detect_isIsolated"] = ~blend
    t["detect_fromBlend"] = blend
    t["deblend_nChild"] = np.zeros(n, dtype=np.int32)
    t["shape_xx"] = np.asarray(found["ixx"], dtype=np.float32)
    t["shape_yy"] = np.asarray(found["iyy"], dtype=np.float32)
    t["shape_xy"] = np.asarray(found["ixy"], dtype=np.float32)
    t["ebv"] = _ebv(t["coord_ra"], t["coord_dec"]) if n else np.zeros(0, dtype=np.float32)
    for b in BANDS:
        m = per_band.get(b)
        if m is None:
            m = {
                "psfFlux": nan, "psfFluxErr": nan, "cModelFlux": nan, "cModelFluxErr": nan,
                "extendedness": nan,
            }  # fmt: skip
        for kind, flux_key in (("psf", "psfFlux"), ("cModel", "cModelFlux")):
            flux, err = m[flux_key], m[f"{flux_key}Err"]
            t[f"{b}_{kind}Flux"] = flux
            t[f"{b}_{kind}FluxErr"] = err
            t[f"{b}_{kind}Mag"] = njy_to_mag(flux)
            with np.errstate(divide="ignore", invalid="ignore"):
                t[f"{b}_{kind}MagErr"] = np.where(flux > 0, MAG_ERR * err / np.abs(flux), np.nan)
            flag = f"{b}_psfFlux_flag" if kind == "psf" else f"{b}_cModel_flag"
            t[flag] = ~np.isfinite(flux)
        t[f"{b}_extendedness"] = m["extendedness"]
        t[f"{b}_blendedness"] = nan
    for column in t.colnames:
        if column.endswith("Flux") or column.endswith("FluxErr"):
            t[column].unit = "nJy"
    return t


# -- forced photometry ------------------------------------------------------------------------


class ForcedPhotConnections(PipelineTaskConnections, dimensions=VISIT_DIMS):
    exposure = visit_input("preliminary_visit_image", doc="Calibrated visit image")
    psf = visit_input("visit_psf", "NumpyArray", doc="Its PSF")
    objects = ct.Input(
        "object_patch",
        "ArrowAstropy",
        dimensions=PATCH_DIMS,
        multiple=True,
        doc="Objects of the patches overlapping this detector",
    )
    forced_source = visit_output(
        "forced_source",
        "ArrowAstropy",
        doc="Forced PSF photometry of every object on this image (dp1.ForcedSource columns)",
    )


class ForcedPhotConfig(PipelineTaskConfig, pipelineConnections=ForcedPhotConnections):
    pass


class ForcedPhotTask(PipelineTask):
    """PSF-fit fluxes at the coadd objects' positions on one calibrated visit image."""

    ConfigClass = ForcedPhotConfig
    _DefaultName = "forcedPhot"

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        out = self.run(**inputs, **visit_detector(data_id))
        butlerQC.put(out, outputRefs)

    def run(
        self,
        exposure: SimExposure,
        psf: np.ndarray,
        objects: list[Table],
        *,
        visit: int,
        detector: int,
    ) -> Struct:
        objs = vstack([o for o in objects if len(o)]) if any(len(o) for o in objects) else None
        band = str(exposure.metadata.get("BAND"))
        if objs is None:
            return Struct(forced_source=forced_columns(Table(), {}, band, visit, detector))
        fp = measure.forced_photometry(
            exposure, psf_from_array(psf), objs["coord_ra"], objs["coord_dec"]
        )
        table = forced_columns(objs, fp, band, visit, detector)
        self.log.info("visit %d detector %d: %d forced measurements", visit, detector, len(table))
        return Struct(forced_source=table)


def forced_columns(
    objs: Table, fp: dict[str, np.ndarray], band: str, visit: int, detector: int
) -> Table:
    """dp1.ForcedSource rows of the objects on the image; ``psfDiffFlux`` is this visit's
    forced flux minus the object's coadd PSF flux in the band."""
    t = Table()
    if not len(objs):
        for name, dtype in FORCED_DTYPES.items():
            t[name] = np.zeros(0, dtype=dtype)
        return t
    sel = np.flatnonzero(fp["inside"])
    o = objs[sel]
    flux, err = fp["psfFlux"][sel], fp["psfFluxErr"][sel]
    ref, ref_err = np.asarray(o[f"{band}_psfFlux"]), np.asarray(o[f"{band}_psfFluxErr"])
    n = len(sel)
    t["objectId"] = np.asarray(o["objectId"], dtype=np.int64)
    t["parentObjectId"] = np.asarray(o["parentObjectId"], dtype=np.int64)
    t["coord_ra"] = np.asarray(o["coord_ra"], dtype=np.float64)
    t["coord_dec"] = np.asarray(o["coord_dec"], dtype=np.float64)
    t["visit"] = np.full(n, visit, dtype=np.int64)
    t["detector"] = np.full(n, detector, dtype=np.int64)
    t["band"] = np.full(n, band)
    t["psfFlux"] = flux
    t["psfFluxErr"] = err
    t["psfFlux_flag"] = ~np.isfinite(flux)
    t["psfDiffFlux"] = flux - ref
    t["psfDiffFluxErr"] = np.sqrt(err**2 + ref_err**2)
    t["psfDiffFlux_flag"] = ~np.isfinite(t["psfDiffFlux"])
    t["pixelFlags_saturated"] = fp["saturated"][sel]
    t["pixelFlags_edge"] = fp["edge"][sel]
    t["tract"] = np.asarray(o["tract"], dtype=np.int64)
    t["patch"] = np.asarray(o["patch"], dtype=np.int64)
    for column in ("psfFlux", "psfFluxErr", "psfDiffFlux", "psfDiffFluxErr"):
        t[column].unit = "nJy"
    return t


FORCED_DTYPES = {
    "objectId": np.int64, "parentObjectId": np.int64, "coord_ra": np.float64,
    "coord_dec": np.float64, "visit": np.int64, "detector": np.int64, "band": "U1",
    "psfFlux": np.float64, "psfFluxErr": np.float64, "psfFlux_flag": bool,
    "psfDiffFlux": np.float64, "psfDiffFluxErr": np.float64, "psfDiffFlux_flag": bool,
    "pixelFlags_saturated": bool, "pixelFlags_edge": bool, "tract": np.int64, "patch": np.int64,
}  # fmt: skip


# -- single-visit sources ---------------------------------------------------------------------


class WriteSourceConnections(PipelineTaskConnections, dimensions=VISIT_DIMS):
    sources = visit_input("preliminary_source", "ArrowAstropy", doc="Calibrated sources")
    psf = visit_input("visit_psf", "NumpyArray", doc="The image's PSF")
    source = visit_output("source", "ArrowAstropy", doc="dp1.Source rows of this image")


class WriteSourceConfig(PipelineTaskConfig, pipelineConnections=WriteSourceConnections):
    pass


class WriteSourceTask(PipelineTask):
    """The calibrated single-visit sources in the dp1.Source columns."""

    ConfigClass = WriteSourceConfig
    _DefaultName = "writeSource"

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        physical_filter = str(data_id.records["visit"].physical_filter)
        out = self.run(**inputs, **visit_detector(data_id), physical_filter=physical_filter)
        butlerQC.put(out, outputRefs)

    def run(
        self, sources: Table, psf: np.ndarray, *, visit: int, detector: int, physical_filter: str
    ) -> Struct:
        sigma = psf_from_array(psf).sigma
        s = sources
        n = len(s)
        snr = np.clip(np.abs(np.asarray(s["snr"], dtype=np.float64)), 1.0, None)
        pos_err = np.clip(sigma / snr, 0.01, None)
        size = (np.asarray(s["ixx"]) + np.asarray(s["iyy"])) / 2
        t = Table()
        t["sourceId"] = ccd_visit_id(visit, detector) * 10_000 + np.asarray(s["id"], np.int64)
        t["visit"] = np.full(n, visit, dtype=np.int64)
        t["detector"] = np.full(n, detector, dtype=np.int32)
        t["band"] = np.full(n, physical_filter.split("_")[0])
        t["physical_filter"] = np.full(n, physical_filter)
        t["parentSourceId"] = np.zeros(n, dtype=np.int64)
        for a, b in (("coord_ra", "coord_ra"), ("coord_dec", "coord_dec"), ("ra", "coord_ra"),
                     ("dec", "coord_dec")):  # fmt: skip
            t[a] = np.asarray(s[b], dtype=np.float64)
        t["raErr"] = pos_err * PIXEL_SCALE / 3600
        t["decErr"] = pos_err * PIXEL_SCALE / 3600
        t["x"] = np.asarray(s["x"], dtype=np.float64)
        t["y"] = np.asarray(s["y"], dtype=np.float64)
        t["xErr"] = pos_err
        t["yErr"] = pos_err
        t["psfFlux"] = np.asarray(s["psfFlux"], dtype=np.float64)
        t["psfFluxErr"] = np.asarray(s["psfFluxErr"], dtype=np.float64)
        t["psfFlux_flag"] = ~np.isfinite(t["psfFlux"])
        t["calibFlux"] = np.asarray(s["apFlux"], dtype=np.float64)
        t["calibFluxErr"] = np.asarray(s["apFluxErr"], dtype=np.float64)
        t["ap12Flux"] = np.full(n, np.nan)  # not measured (our aperture is 3 PSF FWHM)
        t["ap12FluxErr"] = np.full(n, np.nan)
        t["sky"] = np.full(n, np.nan)  # subtracted; not recorded per source
        # Second moments well above the PSF's (sigma^2 per axis) mean a resolved source.
        t["extendedness"] = (size > 1.5 * sigma**2).astype(np.float64)
        t["ixx"] = np.asarray(s["ixx"], dtype=np.float64)
        t["iyy"] = np.asarray(s["iyy"], dtype=np.float64)
        t["ixy"] = np.asarray(s["ixy"], dtype=np.float64)
        t["pixelFlags_saturated"] = np.asarray(s["flag_saturated"], dtype=bool)
        t["pixelFlags_edge"] = np.asarray(s["flag_edge"], dtype=bool)
        t["detect_isPrimary"] = ~t["pixelFlags_edge"]
        return Struct(source=t)
