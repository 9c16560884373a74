"""`Stream`: an async iterator of decoded chunks over one streamed response.

Generic over its chunk type: each resource's stream (`CompletionStream`, ...) is a
`Stream` of that resource's chunk model with a ``collect()`` of its own, kept in the
resource's module.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Mapping,
)
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

import aiohttp
import msgspec

from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    EnkryptError,
    StreamBusyError,
    StreamConsumedError,
    StreamError,
    raise_mapped,
)
from ._models._base import Answer
from ._responses import (
    check_no_error,
    decode_answer,
    excerpt,
    may_report_error,
    request_id_of,
)
from ._sse import ServerSentEvent, SSEDecoder
from ._transport import read_body, release

__all__ = ["Stream"]

ChunkT = TypeVar("ChunkT", bound=Answer)
_S = TypeVar("_S", bound="Stream[Any]")

#: Mid-stream failures: a timeout stays a timeout, a broken body is a StreamError.
_STREAM_ERRORS: Final[Mapping[type[BaseException], type[EnkryptError]]] = {
    asyncio.TimeoutError: APITimeoutError,
    TimeoutError: APITimeoutError,
    aiohttp.ClientPayloadError: StreamError,
    # A body aiohttp's pure-Python parser cannot frame (no C extensions).
    aiohttp.http_exceptions.HttpProcessingError: StreamError,
    aiohttp.ClientError: APIConnectionError,
    OSError: APIConnectionError,
}
#: After ``[DONE]``, how long to wait for the end of the body so the connection can
#: go back to the pool instead of being closed.
_DRAIN_TIMEOUT: Final = 1.0
_DRAIN_LIMIT: Final = 64 * 1024
_DONE: Final = b"[DONE]"


class _Status:
    """Whether a stream ended or is reading: shared with its reading generator.

    The generator holds this rather than the stream, so that a stream nobody
    references is freed, and its connection released, at once.
    """

    __slots__ = ("closed", "reading", "since")

    def __init__(self) -> None:
        self.closed = False
        self.reading = False  # the generator waits for data
        self.since = 0.0  # when its wait for data began (`time.monotonic`)


class _ReadTimeout:
    """A stream's read timeout: one timer for the whole stream.

    It takes over aiohttp's ``sock_read``, which re-arms a timer at every read
    of the body: when this timer expires, it fails the wait in progress if it
    began ``seconds`` ago or more, and otherwise sleeps until it could have.
    """

    __slots__ = ("_handle", "_loop", "_reader", "_seconds", "_status")

    def __init__(
        self, reader: aiohttp.StreamReader, status: _Status, seconds: float
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = reader
        self._status = status
        self._seconds = seconds
        self._handle = self._loop.call_later(seconds, self._expire)

    @classmethod
    def take_over(
        cls, response: aiohttp.ClientResponse, status: _Status
    ) -> _ReadTimeout | None:
        """Switch aiohttp's read timeout of ``response`` off; this one instead."""
        connection = response.connection
        protocol = None if connection is None else connection.protocol
        seconds = None if protocol is None else protocol.read_timeout
        if protocol is None or not seconds:
            return None
        # aiohttp reads it at each read: its timer armed last is dropped at
        # the next one, and a read that never comes is failed by either timer.
        protocol.read_timeout = None
        return cls(response.content, status, seconds)

    def _expire(self) -> None:
        status = self._status
        if status.closed:
            return
        delay = self._seconds
        if status.reading:
            delay -= time.monotonic() - status.since
            if delay <= 0:
                # As aiohttp's own: the read raises it, and it maps the same.
                self._reader.set_exception(
                    aiohttp.SocketTimeoutError("Timeout on reading data from socket")
                )
                return
        self._handle = self._loop.call_later(delay, self._expire)

    def cancel(self) -> None:
        self._handle.cancel()


class Stream(Generic[ChunkT]):
    """An async iterator of decoded chunks from one streamed response.

    Each ``data:`` event is decoded into ``ChunkT``; ``data: [DONE]`` ends the
    iteration. A body that ends without ``[DONE]`` raises `StreamError`, so a
    truncated answer is never mistaken for a complete one. Use it as
    ``async with`` so the connection is released however the loop ends; a loop
    left by ``break`` without it can be resumed by the next ``async for``.

    Attributes:
        response_headers: The HTTP response headers.
        request_id: The proxy's id for the request, when it sent one.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        decoder: msgspec.json.Decoder[ChunkT],
        *,
        max_event_size: int,
        max_response_size: int,
    ) -> None:
        self._response = response
        self._status = _Status()
        self.response_headers = response.headers
        self.request_id = request_id_of(response.headers)
        self._decoder = decoder
        answer_as_chunk = self._answer_as_chunk()
        if answer_as_chunk is None:

            def answer_as_chunk(data: bytes, request_id: str | None) -> ChunkT:
                return decode_answer(decoder, data, request_id, stream=True)

        # The chunks of the last read not taken yet: shared by every reader.
        self._pending: collections.deque[bytes | ChunkT] = collections.deque()
        self._items = _read_items(
            response,
            SSEDecoder(max_event_size=max_event_size),
            self._status,
            self.request_id,
            max_response_size,
            answer_as_chunk,
        )

    def _answer_as_chunk(self) -> Callable[[bytes, str | None], ChunkT] | None:
        """How a whole JSON answer to the stream request becomes its one chunk.

        None when the answer decodes as a chunk (their shapes are the same); a
        subclass whose chunks differ from its answers (chat: ``delta`` and
        ``message``) returns a function of the body and the request id. It must
        not hold the stream.
        """
        return None

    def __repr__(self) -> str:
        state = "closed" if self._status.closed else "open"
        return f"<{type(self).__name__} {state} request_id={self.request_id!r}>"

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    async def aclose(self) -> None:
        """Release the connection now (idempotent; safe from another task).

        An unread body is not drained: the connection is closed instead, so an
        abandoned stream never holds a pooled connection.
        """
        self._close()

    @property
    def closed(self) -> bool:
        """True once the stream finished, failed, or was closed."""
        return self._status.closed

    def __del__(self) -> None:
        # An abandoned stream gives its connection back when collected, quietly:
        # the pool must never run dry because a caller forgot `async with`.
        if not getattr(self, "_status", _CLOSED).closed:
            self._close()

    def _close(self) -> None:
        if not self._status.closed:
            self._status.closed = True
            release(self._response)

    def __aiter__(self: _S) -> _S:
        if self._status.closed:
            raise StreamConsumedError(
                "This stream was already consumed or closed; request a new one"
            )
        return self

    async def __anext__(self) -> ChunkT:
        if self._status.closed:
            raise StopAsyncIteration
        pending = self._pending
        if not pending and not await self._fill():
            raise StopAsyncIteration
        item = pending.popleft()
        if isinstance(item, bytes):
            return decode_answer(
                self._decoder, item, self.request_id, stream=True, chunk=True
            )
        return item

    async def _fill(self) -> bool:
        """Read the next chunks into the pending ones; False at the end."""
        # The generator marks each of its waits for data, so a second reader is
        # told apart before it reaches the generator mid-read.
        if self._status.reading:
            raise StreamBusyError(
                "Another task is already reading this stream: read a stream from "
                "one task only, and hand its chunks to others (an asyncio.Queue)"
            )
        try:
            self._pending.extend(await self._items.__anext__())
        except StopAsyncIteration:
            return False
        return True

    def _checked(self, item: bytes | ChunkT) -> bytes:
        if isinstance(item, bytes):
            return check_no_error(item, self.request_id, stream=True)
        return msgspec.json.encode(item)

    async def iter_data(self) -> AsyncIterator[bytes]:
        """The chunks as the JSON bytes of their events, exactly as received.

        For relaying a stream without decoding and re-encoding it (see
        `enkrypt_async.fastapi.EventSourceResponse`): each item is the data of one
        chunk event, as received. It is checked to report no error (a JSON
        object with a non-null top-level ``error``), and not parsed otherwise:
        the end of the stream, truncation and errors are handled as by ``async
        for``, but a chunk that is not JSON is passed on (``async for``
        decodes each one). It reads the same stream: chunks taken one way are
        not seen the other.
        A data value may hold LF characters (JSON whitespace sent as several
        ``data:`` lines).

        A whole JSON answer sent to the stream request (no event stream) is
        yielded as its one chunk, re-encoded in the chunk's shape.

        Raises:
            StreamError: The stream was truncated or reported an error.
            APITimeoutError: No data for longer than the read timeout.
            APIConnectionError: The connection failed mid-stream.
            StreamBusyError: Another task is reading this stream.
            StreamConsumedError: The stream was already consumed or closed.

        Examples:
            >>> async def forward(stream: Stream[Any], queue: Queue[bytes]) -> None:
            ...     async with stream:
            ...         async for data in stream.iter_data():
            ...             await queue.put(data)
        """
        self.__aiter__()  # a consumed or closed stream raises
        pending = self._pending
        while not self._status.closed and (pending or await self._fill()):
            yield self._checked(pending.popleft())

    async def iter_data_batches(self) -> AsyncIterator[list[bytes]]:
        """As `iter_data`, in lists: the chunks that arrived in one read together.

        A relay that writes each list at once makes one write per read of the
        upstream, not one per chunk, and delays nothing: each list is yielded
        as soon as its read completes. Never an empty list.

        Raises:
            StreamError: As `iter_data`; the chunks before a bad one in the same
                read are yielded first.
        """
        self.__aiter__()  # a consumed or closed stream raises
        pending = self._pending
        while not self._status.closed and (pending or await self._fill()):
            batch: list[Any] = list(pending)
            if type(batch[0]) is bytes and not may_report_error(b"".join(batch)):
                pending.clear()  # none of these chunks can report an error
            else:
                batch = self._take_checked()
            yield batch

    def _take_checked(self) -> list[bytes]:
        """The pending chunks, each checked, up to a bad one, which stays pending."""
        pending = self._pending
        batch: list[bytes] = []
        try:
            while pending:
                batch.append(self._checked(pending[0]))
                pending.popleft()
        except StreamError:
            if not batch:
                raise
        return batch


_CLOSED: Final = _Status()
_CLOSED.closed = True


async def _read_items(
    response: aiohttp.ClientResponse,
    sse: SSEDecoder,
    status: _Status,
    request_id: str | None,
    max_response_size: int,
    answer_as_chunk: Callable[[bytes, str | None], ChunkT],
) -> AsyncGenerator[list[bytes] | list[ChunkT], None]:
    """Read, frame and stop at ``[DONE]`` or an error; yield the chunks of each read.

    A chunk is the bytes of its event's data, left to the reader to decode or
    check; a whole JSON answer to the stream request is one decoded chunk. The
    chunks before an error or ``[DONE]`` in the same read are yielded first.
    Whatever ends it (``[DONE]``, an error, cancellation, being closed)
    releases the response: to the pool when its body was read to the end, else
    closed.
    """
    read_timeout: _ReadTimeout | None = None
    try:
        if response.content_type == "application/json":
            # A JSON answer to a stream request is one whole response.
            status.reading = True
            data = await read_body(response, max_response_size)
            status.reading = False
            yield [answer_as_chunk(data, request_id)]
            return
        reader = response.content
        read_timeout = _ReadTimeout.take_over(response, status)
        while True:
            status.reading = True
            status.since = time.monotonic()
            try:
                data = await reader.readany()
            except Exception as exc:  # map_exceptions, without a manager per read
                raise_mapped(exc, _STREAM_ERRORS, request_id=request_id)
            status.reading = False
            if not data:
                sse.close()  # spec: an unterminated event is dropped
                raise StreamError(
                    "The stream ended without 'data: [DONE]': the answer is truncated",
                    request_id=request_id,
                )
            chunks = sse.feed_data(data)
            failed: StreamError | None = None
            if chunks is None:
                chunks, failed = _data_of(sse.feed(data), request_id)
            done = _DONE in chunks
            if done:
                del chunks[chunks.index(_DONE) :]
            if b"" in chunks:  # an empty event is a keep-alive
                chunks = [chunk for chunk in chunks if chunk]
            if chunks:
                yield chunks
            if failed is not None:
                raise failed
            if done:
                status.reading = True
                status.since = time.monotonic()
                await _drain(reader)
                return
    except (StreamError, APIConnectionError) as exc:
        if status.closed:  # by `Stream.aclose` from another task
            raise StreamError(
                "The stream was closed while it was being read",
                request_id=request_id,
            ) from exc
        raise
    finally:
        # Cancellation included: a body not read to its end is closed, never
        # given back to the pool half-read.
        status.closed = True
        status.reading = False
        if read_timeout is not None:
            read_timeout.cancel()
        release(response)


def _data_of(
    events: list[ServerSentEvent], request_id: str | None
) -> tuple[list[bytes], StreamError | None]:
    """The data of the events that carry chunks, as `SSEDecoder.feed_data` gives.

    ``[DONE]`` whatever the event type, and nothing after it; ``event: error``
    ends the list and is returned as the error to raise after its chunks; other
    event types are skipped.
    """
    values: list[bytes] = []
    for event in events:
        if event.data == "[DONE]":
            values.append(_DONE)
            break
        if event.event == "error":
            error = StreamError(
                f"Error event in stream: {excerpt(event.data)}",
                request_id=request_id,
            )
            return values, error
        if event.event == "message":
            values.append(event.data.encode())
    return values, None


async def _drain(reader: aiohttp.StreamReader) -> None:
    """Read the end of a body after ``[DONE]``, so the connection can be reused."""
    if reader.at_eof():
        return
    # The answer is complete either way; on failure the connection is just not
    # reusable.
    with contextlib.suppress(asyncio.TimeoutError, aiohttp.ClientError, OSError):
        await asyncio.wait_for(_read_rest(reader), _DRAIN_TIMEOUT)


async def _read_rest(reader: aiohttp.StreamReader) -> None:
    drained = 0
    while drained <= _DRAIN_LIMIT:
        data = await reader.readany()
        if not data:
            return
        drained += len(data)
