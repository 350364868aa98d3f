"""What every result writer gets: the FIELDs, a row-limited batch stream and the query's INFOs."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from sciplat.services.tap.votable.fields import VOField

__all__ = ["ResultStream", "RowLimiter", "prefetched"]


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


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def prefetched(chunks: Iterator[bytes], depth: int = 3) -> Iterator[bytes]:
    """*chunks* produced by a thread of their own, up to *depth* ahead of the consumer, so
    encoding the next part of a result overlaps sending the last one.

    When the consumer stops early (client gone: this generator is closed or collected), the
    producer stops at its next chunk and closes *chunks*, whose ``finally`` blocks then run.
    """
    pending: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name="tap-result", daemon=True).start()
    try:
        while True:
            item = pending.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
