"""What every result writer gets: the FIELDs, a row-limited batch stream and the query's INFOs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from sciplat.services.tap.votable.fields import VOField

__all__ = ["ResultStream", "RowLimiter"]


class RowLimiter:
    """Yields at most *maxrec* rows of *batches*; :attr:`overflow` is set if more existed."""

    def __init__(self, batches: Iterator[pa.RecordBatch], maxrec: int | None) -> None:
        self._batches = batches
        self.maxrec = maxrec
        self.rows = 0
        self.overflow = False
        #: Set when the stream broke off (timeout, database error): the message for users.
        self.error: str | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self._batches:
                if self.maxrec is not None and self.rows + batch.num_rows > self.maxrec:
                    keep = self.maxrec - self.rows
                    if keep:
                        self.rows += keep
                        yield batch.slice(0, keep)
                    self.overflow = True
                    return
                self.rows += batch.num_rows
                if batch.num_rows:
                    yield batch
        except Exception as exc:
            from sciplat.services.common.errors import ServiceError

            self.error = exc.message if isinstance(exc, ServiceError) else "query failed"
            if not isinstance(exc, ServiceError):
                import logging

                logging.getLogger("sciplat.services.tap").exception("result stream failed")
        finally:
            close = getattr(self._batches, "close", None)
            if close is not None:
                close()


@dataclass
class ResultStream:
    """A result ready to be written in some format."""

    fields: list[VOField]
    rows: RowLimiter
    #: INFO elements before the table (name -> value), e.g. QUERY, request id.
    infos: dict[str, str] = field(default_factory=dict)
    schema: pa.Schema | None = None
