"""Storage: the data preview's Butler repository, read-only.

Dataset IDs (``ivo://sciplat/dp?<butler dataset UUID>``, ObsCore ``obs_publisher_did``) are
looked up in the Butler registry and never joined to a path: an ID that is not a UUID, or a
UUID the registry does not know, is refused before the filesystem is touched. File locations
come from the datastore (local files or objects in an S3 store), and are checked to lie inside
the datastore's root.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sciplat.services.common.errors import NotFoundError, ServiceError, UsageError
from sciplat.services.images.locations import FileLocation

__all__ = [
    "CALIBRATION_TYPES",
    "DID_PREFIX",
    "DataUnavailableError",
    "DatasetInfo",
    "ImageRepository",
    "did_for",
    "parse_did",
]

log = logging.getLogger(__name__)

#: Prefix of every dataset's publisher DID; the query part is the Butler dataset UUID.
DID_PREFIX = "ivo://sciplat/dp?"
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
#: Calibration products linked from the images they calibrate, with their semantics.
CALIBRATION_TYPES = {"bias": "#bias", "dark": "#dark", "flat": "#flat"}


class DataUnavailableError(ServiceError):
    """The data preview is not there (not built yet, or being rebuilt): HTTP 503."""

    status_code = 503
    error_code = "ServiceUnavailable"


def parse_did(did: str) -> uuid.UUID:
    """The dataset UUID of a publisher DID; a :class:`UsageError` for anything else."""
    text = did.strip()
    if not text.startswith(DID_PREFIX):
        raise UsageError(f"Unknown dataset ID {did!r}: IDs look like {DID_PREFIX}<uuid>")
    key = text[len(DID_PREFIX) :]
    if not _UUID_RE.match(key):
        raise UsageError(f"Unknown dataset ID {did!r}: {key!r} is not a dataset UUID")
    return uuid.UUID(key)


def did_for(dataset_id: uuid.UUID | str) -> str:
    return f"{DID_PREFIX}{dataset_id}"


@dataclass(frozen=True)
class DatasetInfo:
    """One Butler dataset as the services see it."""

    id: uuid.UUID
    dataset_type: str
    data_id: dict[str, Any]
    run: str
    location: FileLocation
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def did(self) -> str:
        return did_for(self.id)

    @property
    def size(self) -> int:
        return self.location.size


class ImageRepository:
    """Read-only access to the Butler repo under ``<dataset>/butler``.

    The Butler is opened on first use (so the service starts before the data is built) and
    resolved datasets are cached (they never change for a given UUID).
    """

    #: Seconds a related-dataset query is answered from memory.
    FIND_TTL = 300.0

    def __init__(self, root: Path, *, cache_size: int = 4096) -> None:
        self.root = Path(root)
        self._butler: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[uuid.UUID, DatasetInfo] = OrderedDict()
        self._cache_size = cache_size
        self._found: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, list]] = {}
        self._run_cache: tuple[float, list[str]] | None = None
        self._datastore_root: Any = None

    @property
    def butler(self) -> Any:
        with self._lock:
            if self._butler is None:
                if not (self.root / "butler.yaml").exists():
                    raise DataUnavailableError(
                        "The image repository is not available (the data preview is not built)"
                    )
                from lsst.daf.butler import Butler

                self._butler = Butler.from_config(str(self.root), writeable=False)
                self._datastore_root = self._root_of(self._butler)
            return self._butler

    def _root_of(self, butler: Any) -> Any:
        """The datastore's root (a ``ResourcePath``): files outside it are never served."""
        from lsst.resources import ResourcePath

        root = getattr(getattr(butler, "_datastore", None), "root", None)  # FileDatastore
        return root if root is not None else ResourcePath(self.root, forceDirectory=True)

    def close(self) -> None:
        with self._lock:
            if self._butler is not None:
                self._butler.close()
                self._butler = None

    def resolve(self, did: str) -> DatasetInfo:
        """The dataset with publisher DID *did*; NotFoundError if the registry does not know it."""
        dataset_id = parse_did(did)
        cached = self._cache.get(dataset_id)
        if cached is not None:
            self._cache.move_to_end(dataset_id)
            return cached
        info = self._lookup(dataset_id)
        if info is None:
            raise NotFoundError(f"Unknown dataset ID {did!r}")
        self._cache[dataset_id] = info
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return info

    def _lookup(self, dataset_id: uuid.UUID) -> DatasetInfo | None:
        butler = self.butler
        with self._lock:
            ref = butler.get_dataset(dataset_id)
            if ref is None:
                return None
            return self._info(butler, ref)

    def _info(self, butler: Any, ref: Any) -> DatasetInfo:
        uri = butler.getURI(ref)
        location = FileLocation(str(uri), 0)
        if not location.within(self._datastore_root):
            raise NotFoundError(f"Dataset {ref.id} is not stored in this repository")
        try:
            location = FileLocation.of(uri)
        except FileNotFoundError:
            raise NotFoundError(f"The file of dataset {ref.id} is missing") from None
        try:
            data_id = dict(butler.registry.expandDataId(ref.dataId).mapping)
        except Exception:  # an unexpandable data ID still has its required keys
            data_id = dict(ref.dataId.required)
        return DatasetInfo(
            id=ref.id,
            dataset_type=ref.datasetType.name,
            data_id={k: v for k, v in data_id.items() if isinstance(v, str | int | float)},
            run=ref.run,
            location=location,
        )

    def find(self, dataset_type: str, data_id: dict[str, Any]) -> list[DatasetInfo]:
        """Datasets of *dataset_type* matching the keys of *data_id* it has, in any RUN
        collection; answers are kept for :attr:`FIND_TTL` seconds (a Butler query costs
        ~0.1 s, and what the data preview holds changes only when it is rebuilt)."""
        key = (dataset_type, tuple(sorted((k, str(v)) for k, v in data_id.items())))
        now = time.monotonic()
        cached = self._found.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self._find(dataset_type, data_id)
        if len(self._found) > 4 * self._cache_size:
            self._found.clear()
        self._found[key] = (now + self.FIND_TTL, found)
        return found

    def _find(self, dataset_type: str, data_id: dict[str, Any]) -> list[DatasetInfo]:
        butler = self.butler
        with self._lock:
            try:
                dtype = butler.get_dataset_type(dataset_type)
            except Exception:
                return []
            names = set(dtype.dimensions.names)
            where = {k: v for k, v in data_id.items() if k in names}
            if dataset_type == "raw" and "exposure" in names and "visit" in data_id:
                where.setdefault("exposure", data_id["visit"])
            required = set(dtype.dimensions.required) - {"instrument"}
            if not required.issubset(where):
                return []
            try:
                refs = butler.query_datasets(
                    dtype,
                    collections=self._runs(butler),
                    find_first=False,
                    data_id=where,
                    explain=False,
                )
            except Exception as exc:  # e.g. calibration collections needing a timespan
                log.debug("query for %s %s failed: %s", dataset_type, where, exc)
                return []
            seen: dict[uuid.UUID, DatasetInfo] = {}
            for ref in refs:
                if ref.id in seen:
                    continue
                try:
                    seen[ref.id] = self._info(butler, ref)
                except NotFoundError as exc:  # a related file missing: leave its link out
                    log.warning("%s", exc.message)
            return list(seen.values())

    def _runs(self, butler: Any) -> list[str]:
        """Every RUN collection (calibration collections would need a validity time)."""
        from lsst.daf.butler import CollectionType

        now = time.monotonic()
        if self._run_cache is None or self._run_cache[0] < now:
            runs = list(butler.collections.query("*", collection_types={CollectionType.RUN}))
            self._run_cache = (now + self.FIND_TTL, runs)
        return self._run_cache[1]

    def calibrations(self, info: DatasetInfo) -> list[tuple[str, DatasetInfo]]:
        """(semantics, dataset) of the calibration frames that apply to *info*."""
        if info.dataset_type in CALIBRATION_TYPES:
            return []
        found = []
        for dataset_type, semantics in CALIBRATION_TYPES.items():
            found.extend((semantics, d) for d in self.find(dataset_type, info.data_id))
        return found

    def raws(self, info: DatasetInfo) -> list[DatasetInfo]:
        """The raw exposures an image was processed from (its progenitors)."""
        if info.dataset_type == "raw" or "visit" not in info.data_id:
            return []
        return self.find("raw", info.data_id)
