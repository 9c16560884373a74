"""A spec-exact, incremental Server-Sent-Events decoder (no I/O).

Follows WHATWG HTML, "Parsing an event stream" and "Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html); the rules, in
one test each, are in ``tests/test_sse.py``.

Why it works on bytes: CR, LF and ``:`` are ASCII, and in UTF-8 an ASCII byte is
never part of a multi-byte sequence and always ends an invalid one. So splitting
the raw bytes at line ends and decoding each line or block on its own gives
exactly the text, U+FFFD replacements included, that decoding the whole stream
first would give, and a character split across chunks decodes correctly because
only complete lines are decoded. The work per character is then done in C
(``bytes.split``, ``bytes.decode``), not in a Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._exceptions import StreamError

__all__ = ["SSEDecoder", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: immutable, compared by value.

    Attributes:
        event: The event type; ``"message"`` when no ``event`` field was given.
        data: The data lines joined with LF (the final LF removed).
        id: The last event id in force when the event was dispatched. It persists
            across events; ``None`` until an ``id`` field was accepted, ``""``
            after an empty ``id:``.
        retry: The valid ``retry`` value (milliseconds) given in the same block,
            else ``None``.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


def _event(
    event: bytes, data: bytes, last_id: str | None, retry: int | None
) -> ServerSentEvent:
    return ServerSentEvent(
        event.decode("utf-8", "replace") if event else "message",
        data.decode("utf-8", "replace"),
        last_id,
        retry,
    )


class SSEDecoder:
    r"""Turns the bytes of a ``text/event-stream`` body into events, incrementally.

    Feed it chunks exactly as they arrive (any size, empty ones too); each call
    returns the events completed so far. Call `close` at end of stream. Work and
    memory are linear in the input, however it is chunked.

    Examples:
        >>> decoder = SSEDecoder()
        >>> decoder.feed(b"event: greet\ndata: hel")
        []
        >>> decoder.feed(b"lo\nid: 7\n\n")
        [ServerSentEvent(event='greet', data='hello', id='7', retry=None)]
        >>> decoder.close()
        []

    Args:
        max_event_size: The most bytes one pending block (all its lines, each
            line ending counted as one byte, plus an unterminated line) may
            hold; past it `feed` raises `StreamError` and the decoder is closed.

    Raises:
        ValueError: If ``max_event_size`` is not positive.
    """

    __slots__ = (
        "_buf",
        "_closed",
        "_data",
        "_error",
        "_event",
        "_id_buf",
        "_last_id",
        "_max",
        "_retry",
        "_retry_in_block",
        "_size",
        "_skip_lf",
        "_started",
    )

    def __init__(self, *, max_event_size: int = 16 * 1024 * 1024) -> None:
        if max_event_size <= 0:
            raise ValueError(f"max_event_size must be > 0, got {max_event_size!r}")
        self._max = max_event_size
        self._buf = bytearray()  # the unterminated last line; never holds CR or LF
        self._size = 0  # bytes of the complete lines of the pending block
        self._data: list[bytes] = []  # data values of the pending block
        self._event = b""  # spec: the event type buffer
        self._id_buf: str | None = None  # spec: the last event ID buffer
        self._last_id: str | None = None  # spec: the last event ID string
        self._retry: int | None = None
        self._retry_in_block: int | None = None
        self._skip_lf = False  # the previous chunk ended with CR
        self._started = False  # the leading BOM was looked for
        self._closed = False
        # An oversized event found after others completed in the same feed: those
        # are returned first, and this is raised by the next call.
        self._error: StreamError | None = None

    @property
    def last_event_id(self) -> str | None:
        """The last event id set at a dispatch (blank line), or ``None``."""
        return self._last_id

    @property
    def retry(self) -> int | None:
        """The last accepted ``retry`` value in milliseconds, or ``None``."""
        return self._retry

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Decode the next chunk of the stream.

        Args:
            data: The next bytes received; may be empty or split anywhere.

        Returns:
            The events whose closing blank line arrived in this chunk, in order.

        Raises:
            ValueError: If the decoder was already closed.
            StreamError: If an event grew past ``max_event_size``. Events that
                completed before it in the same chunk are returned first, and
                the error is raised by the next call (`feed` or `close`).
        """
        if self._error is not None:
            self._raise_pending()
        if self._closed:
            raise ValueError("SSEDecoder.feed() called after close()")
        if not data:
            return []
        if self._skip_lf:
            # Spec: CRLF is one line ending, even when split across chunks.
            self._skip_lf = False
            if data[0] == 0x0A:
                data = data[1:]
        buf = self._buf
        if not self._started:
            # Spec: one leading BOM is dropped; it may arrive a byte at a time.
            buf += data
            if len(buf) < 3 and _BOM.startswith(buf):
                return []
            self._started = True
            if buf.startswith(_BOM):
                del buf[:3]
            data = bytes(buf)
            buf.clear()
        cr = data.rfind(b"\r")
        end = data.rfind(b"\n")
        end = (cr if cr > end else end) + 1
        if not end:  # no line ending: just buffer, cheaply
            buf += data
            if self._size + len(buf) > self._max:
                self._overflow()
                self._raise_pending()
            return []
        if buf:
            buf += data[:end]
            block = bytes(buf)
            buf.clear()
        else:
            block = data[:end]
        buf += data[end:]
        if cr >= 0:  # only complete lines are in `block`, and `buf` holds no CR
            # A CR ending the chunk ends its line now; an LF next is its partner.
            self._skip_lf = end == len(data) and cr == end - 1
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events = self._lines(block.split(b"\n"))
        if not self._error and self._size + len(buf) > self._max:
            self._overflow()
        if not events:
            self._raise_pending()
        return events

    def feed_data(self, data: bytes) -> list[bytes] | None:
        r"""`feed` for the usual read of an LLM stream: the events' data, as bytes.

        When ``data`` completes only events made of one ``data: `` line each (no
        other field, no comment, no CR) and no event is pending before it,
        returns their data undecoded, in order: each is what `feed` would give
        as ``event.data``, UTF-8 encoded, for an event of type ``"message"``.
        Otherwise returns None and consumes nothing: pass the same bytes to
        `feed`. Either way the decoder ends in the state `feed` alone would
        leave, so every later event is the same.

        Args:
            data: The next bytes received.

        Returns:
            The data of the events ``data`` completes, or None when `feed`
            must decode these bytes.

        Examples:
            >>> decoder = SSEDecoder()
            >>> decoder.feed_data(b'data: {"a": 1}\n\ndata: [DONE]\n\n')
            [b'{"a": 1}', b'[DONE]']
            >>> decoder.feed_data(b"event: ping\ndata: 1\n\n") is None
            True
        """
        if not self._started and not self._buf and data[:3] != _BOM[: len(data)]:
            self._started = True  # no BOM to drop: what `feed` would conclude
        end = data.rfind(b"\n\n") + 2
        if (
            end < 2
            or not self._started
            or self._closed
            or self._skip_lf
            or self._size
            or self._error is not None
            or data.find(b"\r") >= 0
            or data.find(b"\n", end) >= 0
        ):
            return None
        head = bytes(self._buf) + data[:end] if self._buf else data[:end]
        tail = data[end:]
        if len(head) > self._max or len(tail) > self._max:
            return None  # `feed` raises for the event past the limit
        if not head.startswith(b"data: "):
            return None
        values = head[6:-2].split(b"\n\ndata: ")
        # With no LF left in any value, every LF was in a separator or in the
        # final blank line: each event was exactly one "data: " line.
        if b"".join(values).find(b"\n") >= 0:
            return None
        self._buf[:] = tail
        self._last_id = self._id_buf  # spec: each blank line sets it
        return values

    def close(self) -> list[ServerSentEvent]:
        """Signal the end of the stream.

        Spec: an event without its closing blank line is discarded, and an ``id``
        in that block never becomes the last event id. A CR ending the stream
        already ended its line in `feed`, so nothing is ever dispatched here;
        the list is returned for symmetry with `feed`.

        Returns:
            The events completed by the end of the stream (always empty).

        Raises:
            StreamError: An event past ``max_event_size`` was found by the last
                `feed`, after the events it returned.
        """
        self._raise_pending()
        self._closed = True
        self._reset()
        return []

    def _lines(self, lines: list[bytes]) -> list[ServerSentEvent]:
        # `lines` ends with the empty piece after the last LF: not a line.
        lines.pop()
        events: list[ServerSentEvent] = []
        data = self._data
        size = self._size
        limit = self._max
        for line in lines:
            if line:
                size += len(line) + 1
                if size > limit:
                    self._overflow()
                    return events
                if line.startswith(b"data: "):  # the common case, kept short
                    data.append(line[6:])
                else:
                    self._field(line)
                continue
            # Spec: a blank line dispatches. The id string is set even when no
            # event follows; the id buffer itself is never reset.
            size = 0
            self._last_id = self._id_buf
            if data:
                text = b"\n".join(data) if len(data) > 1 else data[0]
                events.append(
                    _event(self._event, text, self._last_id, self._retry_in_block)
                )
                data.clear()
            self._event = b""
            self._retry_in_block = None
        self._size = size
        return events

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon:
            if not name:
                return  # spec: a line starting with ":" is a comment
            if value.startswith(b" "):  # spec: exactly one space, never a tab
                value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id" and b"\0" not in value:
            # Spec: an id containing U+0000 is ignored.
            self._id_buf = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            # bytes.isdigit() is ASCII-only and False when empty, exactly the
            # spec's "one or more ASCII digits"; int() alone accepts "+5", " 1".
            self._retry = self._retry_in_block = int(value)
        # Spec: any other field is ignored.

    def _reset(self) -> None:
        self._buf.clear()
        self._data.clear()
        self._size = 0
        self._event = b""
        self._retry_in_block = None

    def _overflow(self) -> None:
        self._closed = True
        self._reset()
        self._error = StreamError(
            f"server-sent event larger than max_event_size={self._max} bytes; "
            "raise SSEDecoder(max_event_size=...) if such events are expected"
        )

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error
