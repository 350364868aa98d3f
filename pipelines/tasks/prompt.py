"""Prompt processing (Alert Production) as ``lsst.pipe.base`` PipelineTasks.

``isr`` (exposure, detector) -> ``calibrate`` (visit, detector) -> ``subtract`` (visit,
detector, against ``template_coadd``) -> ``associate`` (APDB + alert packets); ``makeTemplate``
(physical_filter) coadds calibrated visits into the templates. Dataset types and pipelines are
in ``pipelines/pipelines/*.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from astropy.table import Table, vstack
from astropy.wcs import WCS
from lsst.pex.config import Field
from lsst.pipe.base import (
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    Struct,
)
from lsst.pipe.base import connectionTypes as ct

from sciplat.pipelines.butler_io import SimExposure
from sciplat.pipelines.drp.measure import coadd
from sciplat.pipelines.tasks import alerts as alert_mod
from sciplat.pipelines.tasks import association, diffim, imaging

__all__ = [
    "AssociateTask",
    "CalibrateTask",
    "IsrTask",
    "MakeTemplateTask",
    "SubtractTask",
]

IMAGE = "SimExposure"
VISIT_DIMS = ("instrument", "visit", "detector")


def visit_input(name: str, storage_class: str = IMAGE, doc: str = "", **kwargs: Any) -> Any:
    """A connection to one dataset per (instrument, visit, detector)."""
    return ct.Input(name, storage_class, dimensions=VISIT_DIMS, doc=doc, **kwargs)


def visit_detector(data_id: Any) -> dict[str, int]:
    """``visit=``, ``detector=`` keyword arguments of a quantum's data id."""
    return {"visit": int(data_id["visit"]), "detector": int(data_id["detector"])}


def visit_output(name: str, storage_class: str = IMAGE, doc: str = "") -> Any:
    """An output per (instrument, visit, detector)."""
    return ct.Output(name, storage_class, dimensions=VISIT_DIMS, doc=doc)


# -- ISR --------------------------------------------------------------------------------------


class IsrConnections(PipelineTaskConnections, dimensions=("instrument", "exposure", "detector")):
    raw = ct.Input("raw", IMAGE, dimensions=("instrument", "exposure", "detector"), doc="Raw ADU")
    bias = ct.PrerequisiteInput(
        "bias", IMAGE, dimensions=("instrument", "detector"), isCalibration=True, doc="Master bias"
    )
    flat = ct.PrerequisiteInput(
        "flat",
        IMAGE,
        dimensions=("instrument", "detector", "physical_filter"),
        isCalibration=True,
        doc="Master flat",
    )
    post_isr_image = ct.Output(
        "post_isr_image", IMAGE, dimensions=("instrument", "exposure", "detector"), doc="electrons"
    )


class IsrConfig(PipelineTaskConfig, pipelineConnections=IsrConnections):
    saturation_electrons = Field[float](doc="Full well (electrons).", default=100_000.0)


class IsrTask(PipelineTask):
    """Bias, gain and flat correction with variance and mask planes."""

    ConfigClass = IsrConfig
    _DefaultName = "isr"

    def run(self, raw: SimExposure, bias: SimExposure, flat: SimExposure) -> Struct:
        out = imaging.isr(raw, bias, flat, saturation_electrons=self.config.saturation_electrons)
        return Struct(post_isr_image=out)


# -- calibrate --------------------------------------------------------------------------------


class CalibrateConnections(PipelineTaskConnections, dimensions=VISIT_DIMS):
    post_isr_image = ct.Input(
        "post_isr_image",
        IMAGE,
        dimensions=("instrument", "exposure", "detector"),
        multiple=True,
        doc="ISR'd exposure(s) of the visit (one snap)",
    )
    ref_cat = ct.PrerequisiteInput(
        "ref_cat", "ArrowAstropy", dimensions=("htm7",), multiple=True, doc="Reference stars"
    )
    preliminary_visit_image = visit_output(
        "preliminary_visit_image", doc="Background-subtracted, calibrated image (nJy)"
    )
    visit_psf = visit_output("visit_psf", "NumpyArray", doc="PSF stamp")
    preliminary_source = visit_output(
        "preliminary_source", "ArrowAstropy", doc="Sources with calibrated positions and fluxes"
    )


class CalibrateConfig(PipelineTaskConfig, pipelineConnections=CalibrateConnections):
    detection_threshold = Field[float](doc="Detection threshold (sigma).", default=5.0)
    background_box = Field[int](doc="Background mesh size (pixels).", default=128)


class CalibrateTask(PipelineTask):
    """Background, PSF, detection/measurement, astrometric and photometric calibration."""

    ConfigClass = CalibrateConfig
    _DefaultName = "calibrate"

    def run(self, post_isr_image: list[SimExposure], ref_cat: list[Table]) -> Struct:
        exposure = post_isr_image[0]
        imaging.subtract_background(exposure, box=self.config.background_box)
        psf = imaging.measure_psf(exposure)
        sources = imaging.detect_and_measure(
            exposure, psf, threshold=self.config.detection_threshold
        )
        refs = vstack(ref_cat) if ref_cat else Table()
        if len(refs) == 0:
            raise imaging.ProcessingError("no reference stars overlap this detector (ref_cat)")
        mjd = float(exposure.metadata.get("MJD-MID", exposure.metadata.get("MJD-OBS", 0.0)))
        ref_ra, ref_dec = imaging.refcat_at_epoch(refs, mjd)
        band = str(exposure.metadata.get("BAND", "r"))
        wcs, astrom = imaging.fit_astrometry(exposure.wcs, sources, ref_ra, ref_dec)
        exposure.wcs = wcs
        sources["coord_ra"], sources["coord_dec"] = wcs.wcs_pix2world(sources["x"], sources["y"], 0)
        scale, photo = imaging.fit_zero_point(
            sources, ref_ra, ref_dec, np.asarray(refs[f"{band}_flux"], dtype=np.float64)
        )
        imaging.apply_photometric_calibration(exposure, scale)
        for column in ("psfFlux", "psfFluxErr", "apFlux", "apFluxErr"):
            sources[column] = sources[column] * scale
            sources[column].unit = "nJy"
        exposure.metadata.update(
            {
                "PSFSIGMA": (psf.sigma, "PSF Gaussian-equivalent sigma, pixels"),
                "APCORR": psf.apcorr,
                "ASTRMS": (astrom["astrom_rms_arcsec"], "astrometric RMS vs refcat, arcsec"),
                "ASTNMAT": astrom["astrom_matches"],
                "PHOSCAT": (photo["photo_scatter_mag"], "photometric scatter vs refcat, mag"),
                "PHONMAT": photo["photo_matches"],
            }
        )
        self.log.info(
            "%d sources; PSF FWHM %.2f px; astrometry %.3f arcsec (%d stars); %.4f nJy/e",
            len(sources),
            psf.fwhm,
            astrom["astrom_rms_arcsec"],
            astrom["astrom_matches"],
            scale,
        )
        return Struct(
            preliminary_visit_image=exposure,
            visit_psf=np.append(psf.stamp.ravel(), psf.apcorr),
            preliminary_source=sources,
        )


def psf_from_array(array: np.ndarray) -> imaging.PsfModel:
    """Inverse of the ``visit_psf`` encoding (flattened stamp + aperture correction)."""
    n = round(float(np.sqrt(array.size - 1)))
    return imaging.PsfModel(
        np.asarray(array[:-1], dtype=np.float64).reshape(n, n), float(array[-1])
    )


# -- templates --------------------------------------------------------------------------------


class MakeTemplateConnections(
    PipelineTaskConnections, dimensions=("instrument", "physical_filter")
):
    preliminary_visit_image = visit_input(
        "preliminary_visit_image", doc="Calibrated images to coadd", multiple=True
    )
    template_coadd = ct.Output(
        "template_coadd",
        IMAGE,
        dimensions=("instrument", "physical_filter"),
        doc="Inverse-variance weighted coadd on the field's tangent-plane grid",
    )


class MakeTemplateConfig(PipelineTaskConfig, pipelineConnections=MakeTemplateConnections):
    pixel_scale = Field[float](doc="Coadd pixel scale (arcsec).", default=0.2)


def coadd_grid(images: list[SimExposure], pixel_scale: float) -> tuple[WCS, tuple[int, int]]:
    """A TAN grid (north up) covering all *images* (the single 'tract' of the field)."""
    corners = []
    for im in images:
        ny, nx = im.shape
        cx = np.array([0, nx - 1, nx - 1, 0], dtype=float)
        cy = np.array([0, 0, ny - 1, ny - 1], dtype=float)
        corners.append(np.column_stack(im.wcs.wcs_pix2world(cx, cy, 0)))
    pts = np.vstack(corners)
    ra0, dec0 = float(np.mean(pts[:, 0])), float(np.mean(pts[:, 1]))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.cd = np.array([[-pixel_scale / 3600, 0], [0, pixel_scale / 3600]])
    wcs.wcs.crpix = [1.0, 1.0]
    wcs.wcs.set()
    x, y = wcs.wcs_world2pix(pts[:, 0], pts[:, 1], 0)
    x0, y0 = np.floor(x.min()) - 8, np.floor(y.min()) - 8
    wcs.wcs.crpix = [1.0 - x0, 1.0 - y0]
    wcs.wcs.set()
    return wcs, (int(np.ceil(y.max() - y0)) + 9, int(np.ceil(x.max() - x0)) + 9)


class MakeTemplateTask(PipelineTask):
    """Coadd calibrated visits of one filter into a template (inverse-variance weights)."""

    ConfigClass = MakeTemplateConfig
    _DefaultName = "makeTemplate"

    def run(self, preliminary_visit_image: list[SimExposure]) -> Struct:
        images = preliminary_visit_image
        if not images:
            raise imaging.ProcessingError("no calibrated images to coadd")
        wcs, shape = coadd_grid(images, self.config.pixel_scale)
        template, _ = coadd(images, wcs, shape)
        meta = {
            "BUNIT": "nJy",
            "NINPUTS": len(images),
            "BAND": images[0].metadata.get("BAND"),
            "FILTER": images[0].metadata.get("FILTER"),
        }
        template.metadata.update(meta)
        return Struct(template_coadd=template)


# -- image differencing -----------------------------------------------------------------------


class SubtractConnections(PipelineTaskConnections, dimensions=VISIT_DIMS):
    science = visit_input("preliminary_visit_image")
    science_psf = visit_input("visit_psf", "NumpyArray")
    sources = visit_input("preliminary_source", "ArrowAstropy")
    template = ct.PrerequisiteInput(
        "template_coadd", IMAGE, dimensions=("instrument", "physical_filter"), doc="Template"
    )
    difference_image = visit_output("difference_image")
    template_matched = visit_output("template_matched")
    dia_source_detected = visit_output(
        "dia_source_detected", "ArrowAstropy", doc="DIASources before association"
    )


class SubtractConfig(PipelineTaskConfig, pipelineConnections=SubtractConnections):
    detection_threshold = Field[float](doc="DIASource threshold (sigma).", default=5.0)


class SubtractTask(PipelineTask):
    """Warp the template, fit an Alard-Lupton kernel, subtract, detect DIASources."""

    ConfigClass = SubtractConfig
    _DefaultName = "subtract"

    def run(
        self, science: SimExposure, science_psf: np.ndarray, sources: Table, template: SimExposure
    ) -> Struct:
        warped = imaging.warp(template, science.wcs, science.shape)
        if warped.mask_of("NO_DATA").mean() > 0.5:
            raise imaging.ProcessingError("template_coadd covers less than half of this detector")
        psf = psf_from_array(science_psf)
        template_psf = imaging.measure_psf(warped)
        diff, kernel, diff_psf = diffim.subtract_images(science, warped, psf, template_psf, sources)
        dia = diffim.detect_dia_sources(diff, diff_psf, threshold=self.config.detection_threshold)
        self.log.info(
            "kernel sum %.3f from %d stamps (chi2/dof %.2f); %d DIASources (%d dipoles)",
            kernel.flux_scale,
            kernel.n_stamps,
            kernel.chi2_per_dof,
            len(dia),
            int(np.sum(dia["isDipole"])),
        )
        return Struct(difference_image=diff, template_matched=warped, dia_source_detected=dia)


# -- association and alerts -------------------------------------------------------------------


class AssociateConnections(PipelineTaskConnections, dimensions=VISIT_DIMS):
    dia_source_detected = visit_input("dia_source_detected", "ArrowAstropy")
    science = visit_input("preliminary_visit_image")
    difference_image = visit_input("difference_image")
    template_matched = visit_input("template_matched")
    dia_source = visit_output(
        "dia_source", "ArrowAstropy", doc="DIASources with their DIAObject ids"
    )
    alerts = visit_output(
        "alert_packets", "ArrowTable", doc="Avro alert packets (diaSourceId, alert bytes)"
    )


class AssociateConfig(PipelineTaskConfig, pipelineConnections=AssociateConnections):
    apdb_config = Field[str](doc="APDB configuration file (apdb.yaml).", default="")
    alert_archive = Field[str](
        doc="Directory of the alert archive (Avro files per visit/detector); empty: none.",
        default="",
    )
    radius_arcsec = Field[float](doc="Association radius (arcsec).", default=1.0)


class AssociateTask(PipelineTask):
    """Associate DIASources into DIAObjects in the APDB and write alert packets."""

    ConfigClass = AssociateConfig
    _DefaultName = "associate"

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        region = data_id.region
        outputs = self.run(**inputs, **visit_detector(data_id), region=region)
        butlerQC.put(outputs, outputRefs)

    def run(
        self,
        dia_source_detected: Table,
        science: SimExposure,
        difference_image: SimExposure,
        template_matched: SimExposure,
        visit: int,
        detector: int,
        region: Any,
    ) -> Struct:
        if not self.config.apdb_config:
            raise imaging.ProcessingError("associate: config.apdb_config (apdb.yaml) is not set")
        mjd = float(science.metadata.get("MJD-MID", science.metadata.get("MJD-OBS")))
        band = str(science.metadata.get("BAND"))
        with association.locked_apdb(self.config.apdb_config) as apdb:
            sources, objects, stored = association.associate(
                apdb,
                dia_source_detected,
                visit=visit,
                detector=detector,
                band=band,
                mjd=mjd,
                region=region,
                radius_arcsec=self.config.radius_arcsec,
            )
            from astropy.time import Time

            history = apdb.getDiaSources(
                region,
                list(sources["diaObjectId"]) if len(sources) else [],
                Time(mjd, format="mjd", scale="tai"),
                start_time=Time(mjd - 365, format="mjd", scale="tai"),
            )
        schema = alert_mod.alert_schema()
        packets = alert_mod.make_alerts(
            sources, objects, history, science, difference_image, template_matched, schema
        )
        payloads = alert_mod.serialize_alerts(packets, schema)
        table = pa.table(
            {
                "diaSourceId": pa.array([p["diaSourceId"] for p in packets], pa.int64()),
                "alert": pa.array(payloads, pa.binary()),
            }
        )
        if self.config.alert_archive:
            from sciplat.pipelines.tasks.archive import AlertArchive

            AlertArchive(Path(self.config.alert_archive)).write(visit, detector, packets, schema)
        self.log.info(
            "%d DIASources -> %d DIAObjects (%s); %d alerts",
            len(sources),
            len(objects),
            "stored" if stored else "already in the APDB",
            len(packets),
        )
        return Struct(dia_source=Table.from_pandas(_arrow_safe(sources)), alerts=table)


def _arrow_safe(frame: Any) -> Any:
    """APDB frames can hold object columns (None for NULL): make them numeric or text."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            numeric = pd.to_numeric(out[column], errors="coerce")
            if numeric.notna().any() or out[column].isna().all():
                out[column] = numeric.astype(np.float64)
            else:
                out[column] = out[column].astype(str)
    return out
