"""Batch processing: the mini data release (Data Release Production).

``drp`` (``pipelines/pipelines/drp.yaml``) calibrates every visit with the prompt pipeline's
``isr`` and ``calibrate`` tasks, coadds each band on the patches of a tract/patch sky map
(:mod:`.skymap`), detects objects on a multi-band detection image and measures them in every
band (:mod:`.measure`), and runs forced photometry at the object positions on every visit.
:mod:`.release` turns the outputs into the Object, Source and ForcedSource tables of the data
preview (Parquet, DuckDB or PostgreSQL, TAP_SCHEMA) and the coadds into ObsCore.
"""
