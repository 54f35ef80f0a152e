"""Read-ahead for one S3 object body: its next chunks are read in a worker thread while the loop sends the last.

Reading a chunk per `asyncio.to_thread` hop, only when the consumer asks for it, serialises the two halves of a
download: S3 is not read while the loop sends a chunk to the client, and the client's socket idles while the next
chunk is fetched. Here the next read starts as soon as the last one ends, as long as the window has room, so
both sides stay busy.

Invariants a reader must not break:

- **Bounded memory**: at most `depth` chunks of at most `chunk_size` bytes per stream, counting the chunk being
  read, those ready for the consumer and the one it is sending. A slot is taken when a read starts and given
  back only when the consumer asks for the chunk after the one it holds (`next_chunk`), so a stalled client
  stops the reads after `depth` chunks. Per process, every slot but a stream's first is borrowed from a shared
  `ReadAheadBudget`: many slow clients hold one chunk each, as a plain chunk-by-chunk reader would, plus at
  most the budget; a stream that finds the budget spent reads on demand until it frees up.
- **One call on the body at a time**: a botocore body is not thread-safe. Reads are chained (the next is
  submitted when the last has ended), and the close waits for the read in flight.
- **Always closed, never by the loop**: `stop` (which does not wait) schedules the close after the read in
  flight, so a consumer that is cancelled or dropped still leaves no open body and no read going on; `aclose`
  also waits for it, so after it the body is closed, as with the plain reader this replaces.
- **boto3 stays off the event loop**: every read and the close run in the loop's default executor, like the
  `asyncio.to_thread` calls of app/archive/storage.py; no thread is started or blocked per stream, so a slow
  client holds memory (the window) but no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from typing import Protocol

logger = logging.getLogger(__name__)


class Body(Protocol):
    """What the reader needs of a botocore `StreamingBody`."""

    def read(self, amt: int | None = ..., /) -> bytes: ...

    def close(self) -> None: ...


class ReadAheadBudget:
    """Bytes that the streams of a process may hold beyond one chunk each (shared; thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"need max_bytes >= 0, not {max_bytes}")
        self.max_bytes = max_bytes
        self._lent = 0
        self._lock = threading.Lock()

    @property
    def lent(self) -> int:
        return self._lent

    def borrow(self, size: int) -> bool:
        with self._lock:
            if self._lent + size > self.max_bytes:
                return False
            self._lent += size
            return True

    def give_back(self, size: int) -> None:
        with self._lock:
            self._lent -= size


class ReadAhead:
    """Chunks of `body`, read up to `depth` ahead; `await next_chunk()` until it returns b"", then `aclose()`.

    A failed read raises from the `next_chunk` that would have returned that chunk (the exception botocore
    raised, unchanged), after the chunks read before it; nothing is read after it.
    """

    def __init__(self, body: Body, *, chunk_size: int, depth: int, budget: ReadAheadBudget | None = None) -> None:
        if chunk_size <= 0 or depth < 1:
            raise ValueError(f"need chunk_size > 0 and depth >= 1, not {chunk_size}, {depth}")
        self._body = body
        self._chunk_size = chunk_size
        self._budget = budget
        self._loop = asyncio.get_running_loop()
        self._ready: deque[bytes] = deque()
        self._free = depth  # slots: chunks that may still be read, beside those ready, being read or held
        self._depth = depth
        self._borrowed = 0  # slots in use beyond the first, each `chunk_size` bytes of the budget
        self._holding = False  # the consumer holds a chunk (it is being sent) until it asks for the next
        self._reading: asyncio.Future[bytes] | None = None
        self._failure: BaseException | None = None
        self._at_end = False  # the body said b"", or failed: nothing more is read
        self._stopped = False
        self._closing = False
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._read_next()

    @property
    def reading(self) -> bool:
        """Whether a read of the body is in progress."""
        return self._reading is not None

    @property
    def closed(self) -> bool:
        """Whether the body has been closed (successfully or not)."""
        return self._closed.done()

    async def next_chunk(self) -> bytes:
        """The next chunk; b"" at the end, and after a failure was raised or `stop`."""
        if self._holding:
            self._holding = False
            self._release_slot()
            self._read_next()
        while True:
            if self._ready:
                self._holding = True
                return self._ready.popleft()
            if self._failure is not None:
                failure, self._failure = self._failure, None
                self._stopped = True
                raise failure
            if self._at_end or self._stopped:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def stop(self) -> None:
        """Read nothing more and close the body, after the read in flight if any; does not wait."""
        self._stopped = True
        self._ready.clear()
        self._holding = False
        self._wake()
        if self._reading is None:
            self._release_all()
            self._close()
        # Else `_read_done` gives the slots back and starts the close when the read in flight ends.

    async def aclose(self) -> None:
        """`stop`, then wait until the body is closed."""
        self.stop()
        # Shielded: a cancelled caller (a client gone) still leaves the close running to its end.
        await asyncio.shield(self._closed)

    def _read_next(self) -> None:
        if self._reading is not None or self._at_end or self._stopped or self._free == 0:
            return
        if self._free < self._depth:  # a slot is in use already: this one is read-ahead, from the budget
            if self._budget is not None and not self._budget.borrow(self._chunk_size):
                return  # tried again when the consumer frees a slot
            self._borrowed += 1
        self._free -= 1
        self._reading = self._loop.run_in_executor(None, self._body.read, self._chunk_size)
        self._reading.add_done_callback(self._read_done)

    def _read_done(self, reading: asyncio.Future[bytes]) -> None:
        self._reading = None
        if self._stopped:
            with contextlib.suppress(BaseException):
                reading.result()  # retrieved, so a failure is not reported as never retrieved
            self._release_all()
            self._close()
            return
        try:
            chunk = reading.result()
        except BaseException as error:  # the consumer raises it, in order
            self._failure = error
            self._at_end = True
            self._release_slot()
            self._close()
        else:
            if chunk:
                self._ready.append(chunk)
            else:
                self._at_end = True
                self._release_slot()
                self._close()
            self._read_next()
        self._wake()

    def _release_slot(self) -> None:
        self._free += 1
        if self._borrowed:
            self._borrowed -= 1
            if self._budget is not None:
                self._budget.give_back(self._chunk_size)

    def _release_all(self) -> None:
        """Every slot back (stopped: the chunks are dropped), the borrowed ones to the budget."""
        while self._free < self._depth:
            self._release_slot()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _close(self) -> None:
        """Start closing the body (once); only when no read is in flight."""
        if self._closing:
            return
        self._closing = True
        try:
            closing = self._loop.run_in_executor(None, self._body.close)
        except RuntimeError:
            # The executor is shut down (the loop is closing): nothing else can use this thread now.
            try:
                self._body.close()
            except Exception:
                logger.warning("closing an S3 body failed", exc_info=True)
            self._closed.set_result(None)
            return
        closing.add_done_callback(self._close_done)

    def _close_done(self, closing: asyncio.Future[None]) -> None:
        try:
            closing.result()
        except BaseException:
            # Nothing is left to read from it; the consumer has its chunks or its error already.
            logger.warning("closing an S3 body failed", exc_info=True)
        if not self._closed.done():
            self._closed.set_result(None)
