"""Streams of Server-Sent-Event chunks over one aiohttp response.

`Stream` is generic over its chunk type so completions and, later, chat share one
implementation; `CompletionStream` adds `CompletionStream.collect`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping
from functools import partial
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
    map_exceptions,
)
from ._models import (
    Completion,
    CompletionChoice,
    Logprobs,
    PolicyDetections,
    Usage,
)
from ._responses import (
    DECODE_ERRORS,
    decode_body,
    error_details,
    error_in,
    excerpt,
    may_carry_error,
    request_id_of,
)
from ._sse import RawEvent, SSEDecoder
from ._transport import read_body, release

__all__ = ["CompletionStream", "Stream"]

ChunkT = TypeVar("ChunkT")

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
#: The most bytes of the first read (see `Stream._read`).
_FIRST_READ_SIZE: Final = 16 * 1024


def _stop_socket_timer(response: aiohttp.ClientResponse) -> None:
    """Hand the idle timeout of a streamed body from aiohttp to the stream.

    aiohttp re-arms its ``sock_read`` timer on every socket read, about once per
    event of a fast stream; a stream keeps one idle timer instead (`Stream._read`). With
    its ``read_timeout`` None, aiohttp's ``start_timeout`` drops the armed timer.
    On an aiohttp without these, its timer simply stays: the same deadline.
    """
    protocol: Any = getattr(response.connection, "protocol", None)
    if hasattr(protocol, "read_timeout") and hasattr(protocol, "start_timeout"):
        protocol.read_timeout = None
        protocol.start_timeout()


#: How early the idle timer may fire and still count as due (clock resolution).
_IDLE_SLACK: Final = 0.001


def _check_idle(ref: weakref.ReferenceType[Stream[Any]]) -> None:
    # The timer holds the stream weakly: an abandoned stream is collected (and its
    # connection released) at once, not when its idle timer would have fired.
    stream = ref()
    if stream is not None:
        stream._on_idle()


class Stream(Generic[ChunkT]):
    """An async iterator of decoded chunks from one streamed response.

    Each ``data:`` event is decoded into ``ChunkT``; ``data: [DONE]`` ends the
    iteration. A body that ends without ``[DONE]`` raises `StreamError`, so a
    truncated answer is never mistaken for a complete one. Use it as
    ``async with`` so the connection is released however the loop ends.

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
        read_timeout: float | None = None,
    ) -> None:
        self._response = response
        self._read_timeout = read_timeout
        # The idle timer, and the start and byte count of the read waiting now.
        self._idle_timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None
        self._waiting_bytes = 0
        self._first_read = True
        if read_timeout is not None:
            _stop_socket_timer(response)
        self._reader = response.content
        self._decoder = decoder
        self._sse = SSEDecoder(max_event_size=max_event_size)
        self._max_response_size = max_response_size
        # The raw JSON of plain events from one network read, decoded one per
        # chunk taken (a whole read decoded at once keeps hundreds of structs
        # alive and wakes the garbage collector); then events for the careful
        # path. Both in arrival order, `_ready` always before `_pending`.
        self._ready: deque[bytes] = deque()
        self._pending: deque[RawEvent] = deque()
        self._decode = decoder.decode
        # A JSON answer to a stream request is one whole response, not a stream.
        self._whole_json = response.content_type == "application/json"
        self._eof = False
        self._done = False
        self._closed = False
        self._busy = False  # a task is waiting in a read
        self.response_headers = response.headers
        self.request_id = request_id_of(response.headers)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {state} request_id={self.request_id!r}>"

    async def __aenter__(self) -> Stream[ChunkT]:
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
        return self._closed

    def __del__(self) -> None:
        # An abandoned stream gives its connection back when collected, quietly:
        # the pool must never run dry because a caller forgot `async with`.
        if not getattr(self, "_closed", True):
            self._stop_idle_timer()
            self._response.close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._done = True
            self._stop_idle_timer()
            release(self._response)

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def __aiter__(self) -> AsyncIterator[ChunkT]:
        if self._closed:
            raise StreamConsumedError(
                "This stream was already consumed or closed; request a new one"
            )
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[ChunkT]:
        # What `async for` runs: an async generator costs less per chunk than a
        # coroutine per `__anext__` call. Chunks that decode are taken here;
        # anything else (a read, an odd chunk, the end) is left to `__anext__`.
        ready = self._ready
        decode = self._decode
        while True:
            while ready:
                try:
                    chunk = decode(ready[0])
                except DECODE_ERRORS:
                    break
                ready.popleft()
                yield chunk
            try:
                chunk = await self.__anext__()
            except StopAsyncIteration:
                return
            yield chunk

    async def __anext__(self) -> ChunkT:
        ready = self._ready
        pending = self._pending
        while True:
            while ready:
                raw = ready.popleft()
                try:
                    return self._decode(raw)
                except DECODE_ERRORS:
                    chunk = self._decode_event(b"", raw)  # raises, or ends on [DONE]
                    if chunk is not None:
                        return chunk
            while pending:
                event, data, _, _ = pending.popleft()
                chunk = self._decode_event(event, data)
                if chunk is not None:
                    return chunk
            if self._done:
                await self._finish()
                raise StopAsyncIteration
            if self._eof:
                self._close()
                raise StreamError(
                    "The stream ended without 'data: [DONE]': the answer is truncated",
                    request_id=self.request_id,
                )
            if self._whole_json:
                return self._decode_whole(await self._read_whole())
            await self._read_events()

    def _claim(self) -> None:
        """Mark the stream as being read; a second reader gets `StreamBusyError`."""
        if self._busy:
            raise StreamBusyError(
                "Another task is already reading this stream: read a stream from "
                "one task only, and hand its chunks to others (an asyncio.Queue)"
            )
        self._busy = True

    async def _read_events(self) -> None:
        self._claim()
        try:
            with map_exceptions(_STREAM_ERRORS, request_id=self.request_id):
                data = await self._read()
            if data:
                values = self._sse._feed_plain(data, may_carry_error)
                if values is None:
                    self._queue(self._sse._feed_raw(data))
                else:
                    self._ready.extend(values)
            else:
                self._eof = True
                self._sse.close()  # spec: an unterminated event is dropped
        except BaseException as exc:
            # Cancellation included: a half-read body can never go back to the pool.
            was_closed = self._closed
            self._close()
            if was_closed and isinstance(exc, (StreamError, APIConnectionError)):
                raise StreamError(
                    "The stream was closed while it was being read",
                    request_id=self.request_id,
                ) from exc
            raise
        finally:
            self._busy = False

    async def _read(self) -> bytes:
        """The next bytes, waiting at most the read timeout for them.

        One idle timer per stream rather than aiohttp's per socket read (see
        `_stop_socket_timer`) or one per read: it is armed by the first read that
        waits and re-armed only when it fires, so a stream of many reads creates
        a timer or two. A read takes all that is buffered, which aiohttp's flow
        control bounds, except the first: a fast server may have sent hundreds of
        kilobytes already, and cutting them all up would delay the first chunk.
        """
        reader = self._reader
        read = reader.readany
        if self._first_read:
            self._first_read = False
            read = partial(reader.read, _FIRST_READ_SIZE)
        timeout = self._read_timeout
        if timeout is None:
            return await read()
        loop = asyncio.get_running_loop()
        self._waiting_since = now = loop.time()
        self._waiting_bytes = reader.total_bytes
        if self._idle_timer is None:
            self._idle_timer = loop.call_at(
                now + timeout, _check_idle, weakref.ref(self)
            )
        try:
            return await read()
        finally:
            self._waiting_since = None

    def _on_idle(self) -> None:
        """The idle timer fired: fail the read waiting now if it waited too long.

        Like aiohttp's own sock_read timer, the read fails with ServerTimeoutError;
        not when bytes arrived in this loop iteration and the read is resuming.
        With no read waiting, the next one arms a new timer.
        """
        self._idle_timer = None
        since = self._waiting_since
        timeout = self._read_timeout
        if (
            since is None
            or timeout is None
            or self._closed
            or self._reader.total_bytes != self._waiting_bytes
        ):
            return
        loop = asyncio.get_running_loop()
        due = since + timeout
        if due - loop.time() > _IDLE_SLACK:  # armed by an earlier read: not yet
            self._idle_timer = loop.call_at(due, _check_idle, weakref.ref(self))
            return
        self._reader.set_exception(
            aiohttp.ServerTimeoutError(
                f"No data for {timeout} s (Timeout.read) between events"
            )
        )

    def _queue(self, events: list[RawEvent]) -> None:
        """Queue the events of a read the fast path declined (the first, the last).

        Its leading plain ``data:`` events still take the fast decode; the rest
        take the careful path, which raises `StreamError` for an error event and
        pinpoints a bad chunk.
        """
        plain = 0
        for event, data, _, _ in events:
            if event or may_carry_error(data):
                break
            plain += 1
        self._ready.extend([data for _, data, _, _ in events[:plain]])
        self._pending.extend(events[plain:])

    async def _read_whole(self) -> bytes:
        self._claim()
        try:
            return await read_body(self._response, self._max_response_size)
        finally:
            self._busy = False
            self._done = True
            self._close()

    def _decode_whole(self, data: bytes) -> ChunkT:
        self._raise_if_error(data)
        return decode_body(self._decoder, data, self.request_id)

    def _decode_event(self, event_type: bytes, raw: bytes) -> ChunkT | None:
        if raw == _DONE:
            self._done = True
            self._ready.clear()
            self._pending.clear()
            return None
        event = event_type.decode("utf-8", "replace") if event_type else "message"
        data = raw.decode("utf-8", "replace")
        if event == "error":
            self._close()
            raise StreamError(
                f"Error event in stream: {excerpt(data)}", request_id=self.request_id
            )
        if event != "message" or not data:
            return None  # keep-alive or an event type this client does not know
        self._raise_if_error(data.encode())
        try:
            return self._decoder.decode(data)
        except DECODE_ERRORS as exc:
            self._close()
            raise StreamError(
                f"Malformed chunk in stream ({exc}): {excerpt(data)!r}",
                request_id=self.request_id,
            ) from exc

    def _raise_if_error(self, data: bytes) -> None:
        error = error_in(data)
        if error is None:
            return
        self._close()
        message, code, kind = error_details(error)
        raise StreamError(
            f"Error reported inside the stream: {message}",
            request_id=self.request_id,
            code=code,
            type=kind,
        )

    async def _finish(self) -> None:
        """After ``[DONE]``: read the end of the body so the connection is reused."""
        if self._closed:
            return
        self._claim()
        try:
            if not self._reader.at_eof():
                await asyncio.wait_for(self._drain(), _DRAIN_TIMEOUT)
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError):
            pass  # the answer is complete; the connection is just not reusable
        finally:
            self._busy = False
            self._close()

    async def _drain(self) -> None:
        drained = 0
        while drained <= _DRAIN_LIMIT:
            data = await self._reader.readany()
            if not data:
                return
            drained += len(data)


class CompletionStream(Stream[Completion]):
    """A stream of `Completion` chunks, as returned by ``create(..., stream=True)``.

    Examples:
        >>> async def main(client: EnkryptClient) -> None:
        ...     stream = await client.completions.create(prompt="Hi", stream=True)
        ...     async with stream:
        ...         async for chunk in stream:
        ...             print(chunk.choices[0].text, end="")
    """

    async def __aenter__(self) -> CompletionStream:
        return self

    async def collect(self) -> Completion:
        """Consume the rest of the stream and merge it into one `Completion`.

        Text is joined per choice index in arrival order; each choice keeps its
        last ``finish_reason``; ``usage`` and ``enkrypt_policy_detections`` come
        from whichever chunk carried them (the last one wins). Chunks already taken
        with ``async for`` are not included.

        Raises:
            StreamError: The stream was truncated or reported an error.
        """
        merger = _CompletionMerger()
        async with self:
            async for chunk in self:
                merger.add(chunk)
        return merger.result()


class _ChoiceParts:
    __slots__ = ("finish_reason", "logprobs", "seed", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.finish_reason: str | None = None
        self.seed: int | None = None
        self.logprobs: list[Logprobs] = []


class _CompletionMerger:
    """Folds completion chunks into one `Completion`."""

    def __init__(self) -> None:
        self.first: Completion | None = None
        self.last: Completion | None = None
        self.choices: dict[int, _ChoiceParts] = {}
        self.usage: Usage | None = None
        self.detections: PolicyDetections | None = None

    def add(self, chunk: Completion) -> None:
        if self.first is None:
            self.first = chunk
        self.last = chunk
        for choice in chunk.choices:
            parts = self.choices.get(choice.index)
            if parts is None:
                parts = self.choices[choice.index] = _ChoiceParts()
            parts.texts.append(choice.text)
            if choice.finish_reason is not None:
                parts.finish_reason = choice.finish_reason
            if choice.seed is not None:
                parts.seed = choice.seed
            if choice.logprobs is not None:
                parts.logprobs.append(choice.logprobs)
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.enkrypt_policy_detections is not None:
            self.detections = chunk.enkrypt_policy_detections

    def result(self) -> Completion:
        first = self.first or Completion()
        choices = [
            CompletionChoice(
                text="".join(parts.texts),
                index=index,
                finish_reason=parts.finish_reason,
                seed=parts.seed,
                logprobs=_merge_logprobs(parts.logprobs),
            )
            for index, parts in sorted(self.choices.items())
        ]
        return msgspec.structs.replace(
            first,
            choices=choices,
            usage=self.usage,
            enkrypt_policy_detections=self.detections,
        )


def _merge_logprobs(pieces: list[Logprobs]) -> Logprobs | None:
    if not pieces:
        return None
    if len(pieces) == 1:
        return pieces[0]
    merged: dict[str, list[object]] = {}
    for field in msgspec.structs.fields(Logprobs):
        values: list[object] = []
        for piece in pieces:
            value = getattr(piece, field.name)
            if isinstance(value, list):
                values.extend(value)
        merged[field.name] = values
    return msgspec.convert(merged, Logprobs)
