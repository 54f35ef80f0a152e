"""The read-ahead of archived downloads (app/archive/readahead.py, through `ObjectStream.iter_chunks`): bytes
in order, at most `depth` chunks held, one call on the body at a time, the body closed and the reads over on
every way out (a client gone included), errors unchanged."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ReadTimeoutError
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from app.archive.readahead import ReadAhead, ReadAheadBudget
from app.archive.storage import ObjectStream
from app.videos.service import ContentStream

if TYPE_CHECKING:
    from botocore.response import StreamingBody

CHUNK = 1024
WITHIN = 5.0  # seconds the worker threads get to do what a test waits for


class FakeBody:
    """A StreamingBody stand-in that checks the reader's discipline: no read after close, no two calls at once."""

    def __init__(self, data: bytes, *, fail_at_read: int | None = None) -> None:
        self.data = data
        self.position = 0
        self.reads = 0  # reads that returned bytes
        self.closed = False
        self.fail_at_read = fail_at_read
        self.error = ReadTimeoutError(endpoint_url="http://s3.test/bucket/key")
        self.violations: list[str] = []
        self._busy = threading.Lock()
        # Cleared to hold a read in progress (a slow S3), set to let it finish.
        self.flowing = threading.Event()
        self.flowing.set()
        self.in_read = threading.Event()
        self.active = 0  # calls in progress

    @property
    def idle(self) -> bool:
        return self.active == 0

    def read(self, amt: int | None = None, /) -> bytes:
        if not self._busy.acquire(blocking=False):
            self.violations.append("read while another call was in progress")
        self.active += 1
        try:
            if self.closed:
                self.violations.append("read after close")
            self.in_read.set()
            self.flowing.wait(WITHIN)
            if self.fail_at_read is not None and self.reads + 1 == self.fail_at_read:
                raise self.error
            size = len(self.data) - self.position if amt is None else amt
            chunk = self.data[self.position : self.position + size]
            self.position += len(chunk)
            if chunk:
                self.reads += 1
            return chunk
        finally:
            self.active -= 1
            self._busy.release()

    def close(self) -> None:
        if not self._busy.acquire(blocking=False):
            self.violations.append("close while a read was in progress")
        try:
            self.closed = True
        finally:
            self._busy.release()


def open_stream(body: FakeBody, *, budget: ReadAheadBudget | None = None) -> ObjectStream:
    return ObjectStream(
        cast("StreamingBody", body),
        content_length=len(body.data),
        content_type="video/mp4",
        etag="etag",
        read_ahead_budget=budget,
    )


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(int(WITHIN / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def settle() -> None:
    """Time for reads that are not held up to run ahead as far as they may."""
    await asyncio.sleep(0.1)


async def test_the_bytes_come_in_order_in_chunks_and_the_body_is_closed_at_the_end() -> None:
    data = bytes(range(256)) * 41  # 10 chunks and a short one
    body = FakeBody(data)
    stream = open_stream(body)
    chunks = [chunk async for chunk in stream.iter_chunks(CHUNK, read_ahead=3)]
    await asyncio.wait_for(stream.aclose(), WITHIN)
    assert b"".join(chunks) == data
    assert [len(chunk) for chunk in chunks] == [CHUNK] * 10 + [len(data) - 10 * CHUNK]
    assert body.closed
    assert not body.violations


@pytest.mark.parametrize("depth", [1, 2, 4])
async def test_a_stalled_consumer_holds_at_most_depth_chunks(depth: int) -> None:
    """The memory bound: the chunk being sent plus those read ahead never exceed `depth`."""
    body = FakeBody(b"x" * CHUNK * 20)
    stream = open_stream(body)
    chunks = stream.iter_chunks(CHUNK, read_ahead=depth)
    for received in range(1, 6):
        await anext(chunks)  # held (being sent) until the next is asked for
        await settle()
        assert body.reads == received + depth - 1
    await chunks.aclose()
    await asyncio.wait_for(stream.aclose(), WITHIN)
    assert not body.violations


async def test_the_default_bound_is_read_ahead_chunks_of_read_chunk_bytes() -> None:
    from app.archive.storage import READ_AHEAD_CHUNKS

    body = FakeBody(b"x" * CHUNK * 20)
    stream = open_stream(body)
    chunks = stream.iter_chunks(CHUNK)
    await anext(chunks)
    await settle()
    assert body.reads == READ_AHEAD_CHUNKS
    await chunks.aclose()
    await asyncio.wait_for(stream.aclose(), WITHIN)


async def test_aclose_mid_stream_closes_the_body_and_stops_reading() -> None:
    body = FakeBody(b"x" * CHUNK * 50)
    stream = open_stream(body)
    chunks = stream.iter_chunks(CHUNK, read_ahead=2)
    await anext(chunks)
    await anext(chunks)
    await asyncio.wait_for(stream.aclose(), WITHIN)
    assert body.closed
    assert body.idle
    reads = body.reads
    await settle()
    assert body.reads == reads  # nothing read after the close
    assert not body.violations


async def test_aclose_during_a_slow_read_waits_for_it_then_closes() -> None:
    """A botocore body is not thread-safe: the close must come after the read in progress, never beside it."""
    body = FakeBody(b"x" * CHUNK * 50)
    stream = open_stream(body)
    chunks = stream.iter_chunks(CHUNK, read_ahead=2)
    await anext(chunks)
    await settle()
    body.flowing.clear()
    body.in_read.clear()
    await anext(chunks)  # frees a slot: the next read starts, and hangs
    await eventually(body.in_read.is_set)
    closing = asyncio.ensure_future(stream.aclose())
    await settle()
    assert not closing.done()
    assert not body.closed
    body.flowing.set()
    await asyncio.wait_for(closing, WITHIN)
    assert body.closed
    assert body.idle
    assert body.reads == 3  # the slow read was let finish; nothing after it
    assert not body.violations


async def test_stop_does_not_wait_for_a_hanging_read_and_the_close_follows_it() -> None:
    body = FakeBody(b"x" * CHUNK * 50)
    body.flowing.clear()
    reader = ReadAhead(body, chunk_size=CHUNK, depth=2)
    await eventually(body.in_read.is_set)
    reader.stop()  # returns at once; the close waits for the read
    assert reader.reading
    assert not body.closed
    assert await reader.next_chunk() == b""
    body.flowing.set()
    await asyncio.wait_for(reader.aclose(), WITHIN)
    assert body.closed
    assert reader.closed
    assert not reader.reading
    assert body.reads == 1
    assert not body.violations


async def test_a_cancelled_aclose_still_closes_the_body() -> None:
    """The route's finally runs in a cancelled task when the client went away: the close must not depend on it."""
    body = FakeBody(b"x" * CHUNK * 50)
    stream = open_stream(body)
    chunks = stream.iter_chunks(CHUNK, read_ahead=2)
    await anext(chunks)
    body.flowing.clear()
    await anext(chunks)
    await eventually(body.in_read.is_set)
    closing = asyncio.ensure_future(stream.aclose())
    await settle()
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    body.flowing.set()
    await eventually(lambda: body.closed)
    assert body.idle
    assert not body.violations


async def test_a_failed_read_raises_botocores_error_after_the_good_chunks_and_closes_the_body() -> None:
    body = FakeBody(b"x" * CHUNK * 10, fail_at_read=3)
    stream = open_stream(body)
    received: list[bytes] = []
    with pytest.raises(ReadTimeoutError) as raised:
        async for chunk in stream.iter_chunks(CHUNK, read_ahead=4):
            received.append(chunk)
    assert raised.value is body.error
    assert len(received) == 2
    await eventually(lambda: body.closed)
    await asyncio.wait_for(stream.aclose(), WITHIN)
    assert body.reads == 2  # nothing read after the failure
    assert not body.violations


async def test_a_consumer_that_stops_early_stops_the_reads_even_without_aclose() -> None:
    body = FakeBody(b"x" * CHUNK * 50)
    stream = open_stream(body)
    async for _chunk in stream.iter_chunks(CHUNK, read_ahead=3):
        break
    await eventually(lambda: body.closed and body.idle)
    assert body.reads <= 3
    await asyncio.wait_for(stream.aclose(), WITHIN)  # still fine afterwards
    assert not body.violations


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_a_client_that_disconnects_mid_download_closes_the_body_and_stops_reading(spec_version: str) -> None:
    """The content route's path: ContentStream over iter_chunks, sent by StreamingResponse, and the client goes
    away after two chunks: ASGI 2.3 (uvicorn today) says so through `receive`, and starlette cancels the
    sending; 2.4 makes the server's send raise OSError."""
    body = FakeBody(b"x" * CHUNK * 100)
    content = ContentStream.archived(open_stream(body), content_type="video/mp4", chunk_size=CHUNK)
    response = StreamingResponse(content.iterate(), media_type="video/mp4")
    gone = asyncio.Event()
    sent = 0

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal sent
        if message["type"] == "http.response.body":
            sent += 1
            if sent > 2:
                gone.set()
                if spec_version == "2.4":
                    raise OSError("client disconnected")
                await asyncio.sleep(WITHIN)  # a send blocked on a client that reads no more

    async def receive() -> MutableMapping[str, Any]:
        await gone.wait()
        if spec_version == "2.4":
            await asyncio.Event().wait()  # 2.4: the disconnect shows up as the failing send
        return {"type": "http.disconnect"}

    scope: dict[str, Any] = {"type": "http", "asgi": {"spec_version": spec_version}}
    call: Awaitable[None] = response(scope, receive, send)
    if spec_version == "2.4":
        with pytest.raises(ClientDisconnect):
            await call
    else:
        await asyncio.wait_for(call, WITHIN)
    del response, content, call
    gc.collect()  # what refcounting does at once in the server: the response and its generators are dropped
    await eventually(lambda: body.closed and body.idle)
    reads = body.reads
    assert reads <= 3 + 4
    await settle()
    assert body.reads == reads
    assert not body.violations


async def test_the_process_budget_bounds_read_ahead_across_streams_and_comes_back() -> None:
    """Many slow clients: each holds its own chunk, and all of them together at most the budget beyond that."""
    budget = ReadAheadBudget(3 * CHUNK)
    bodies = [FakeBody(b"x" * CHUNK * 20) for _ in range(4)]
    streams = [open_stream(body, budget=budget) for body in bodies]
    readers = [stream.iter_chunks(CHUNK, read_ahead=4) for stream in streams]
    for reader in readers:  # one after the other: the first takes the whole budget
        await anext(reader)
        await settle()
    assert budget.lent == 3 * CHUNK
    assert [body.reads for body in bodies] == [4, 1, 1, 1]  # one chunk each, three more read ahead in all
    # A stream without read-ahead still moves, chunk by chunk, as a plain reader would.
    assert await anext(readers[3]) == b"x" * CHUNK
    await settle()
    assert bodies[3].reads == 2
    # Dropped streams give their share back, whatever state they stopped in.
    for reader, stream in zip(readers, streams, strict=True):
        await reader.aclose()
        await asyncio.wait_for(stream.aclose(), WITHIN)
    assert budget.lent == 0
    assert all(body.closed and not body.violations for body in bodies)


async def test_the_budget_comes_back_at_the_end_and_after_a_failure() -> None:
    budget = ReadAheadBudget(8 * CHUNK)
    whole = open_stream(FakeBody(b"x" * CHUNK * 10), budget=budget)
    assert len(b"".join([chunk async for chunk in whole.iter_chunks(CHUNK, read_ahead=4)])) == 10 * CHUNK
    assert budget.lent == 0
    failing = open_stream(FakeBody(b"x" * CHUNK * 10, fail_at_read=4), budget=budget)
    with pytest.raises(ReadTimeoutError):
        async for _chunk in failing.iter_chunks(CHUNK, read_ahead=4):
            pass
    assert budget.lent == 0
    await asyncio.wait_for(whole.aclose(), WITHIN)
    await asyncio.wait_for(failing.aclose(), WITHIN)


async def test_open_object_streams_share_the_storages_budget() -> None:
    from app.archive.storage import READ_AHEAD_BUDGET_BYTES, ArchiveStorage
    from app.core.config import S3Settings

    storage = ArchiveStorage(S3Settings(), client=cast("Any", object()))
    assert storage.read_ahead_budget.max_bytes == READ_AHEAD_BUDGET_BYTES


async def test_depth_and_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        ReadAhead(FakeBody(b""), chunk_size=CHUNK, depth=0)
    with pytest.raises(ValueError, match="chunk_size"):
        ReadAhead(FakeBody(b""), chunk_size=0, depth=1)
