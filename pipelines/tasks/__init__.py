"""Science tasks of the prompt (alert) and batch (data release) pipelines.

The numerical work lives in plain functions (:mod:`.imaging`, :mod:`.diffim`,
:mod:`.association`, :mod:`.alerts`) so that it can be tested on synthetic images with known
answers; :mod:`.prompt` wraps them as ``lsst.pipe.base`` PipelineTasks that read and write
through the Butler.
"""
