"""A fast loopback HTTP/1.1 server with pre-built answers (run in its own process).

``python -m benchmarks._server [--port 0]`` prints ``PORT <n>`` once listening on
127.0.0.1 and serves until killed. It is a bare `asyncio.Protocol`: requests are
split on the blank line and ``Content-Length``, and answered with bytes built
once at start-up, so the client is what the benchmark measures:

- ``POST .../completions``: the ~9 KB reference completion (keep-alive);
- with ``"stream": true`` in the body: 2,048 SSE chunks, one HTTP chunk each
  (``Transfer-Encoding: chunked``, as a proxy flushing each event sends them), the
  last carrying the detections, then ``data: [DONE]``; all written at once;
- with the idle marker in the prompt: the stream's headers and first chunk, then
  nothing until the client hangs up (for the open-streams memory figure);
- with the paced marker: 256 chunks written one at a time, 0.5 ms apart, so a
  client reads them one by one as it would an LLM's tokens;
- ``POST .../chat/completions`` with ``"stream": true``: 2,048
  ``chat.completion.chunk`` events in OpenAI's format, one HTTP chunk each, the
  last carrying the finish reason and the detections, then ``data: [DONE]``; all
  written at once (a chat request without ``stream`` gets a 404).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from typing import Final

from ._payloads import (
    IDLE_MARKER,
    PACED_GAP_S,
    PACED_MARKER,
    chat_stream_events,
    completion_body,
    paced_events,
    stream_events,
)

_CONTENT_LENGTH: Final = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED: Final = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)
_STREAM: Final = re.compile(rb'"stream"\s*:\s*true')
_IDLE: Final = IDLE_MARKER.encode()
_PACED: Final = PACED_MARKER.encode()


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Answers:
    """Every response, serialised once."""

    def __init__(self) -> None:
        body = completion_body()
        self.completion = (
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: application/json\r\n"
            b"x-request-id: bench-completion\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = (
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\n"
            b"x-request-id: bench-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        events = stream_events()
        self.stream = head + b"".join(map(_http_chunk, events)) + b"0\r\n\r\n"
        self.chat_stream = (
            head + b"".join(map(_http_chunk, chat_stream_events())) + b"0\r\n\r\n"
        )
        self.idle = head + _http_chunk(events[0])
        self.stream_head = head
        self.paced = [_http_chunk(event) for event in paced_events()]
        self.paced[-1] += b"0\r\n\r\n"
        self.not_found = (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            b'Content-Length: 21\r\n\r\n{"error":"not found"}'
        )


class HTTPProtocol(asyncio.Protocol):
    """One connection: parse requests as they complete, answer each at once."""

    def __init__(self, answers: Answers) -> None:
        self._answers = answers
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._idle = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while not self._idle:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[: end + 2])
            start = end + 4
            if _CHUNKED.search(head):
                stop = buf.find(b"\r\n0\r\n\r\n", start - 2)
                if stop < 0:
                    return
                body = bytes(buf[start:stop])
                stop += 7
            else:
                match = _CONTENT_LENGTH.search(head)
                stop = start + (int(match.group(1)) if match else 0)
                if len(buf) < stop:
                    return
                body = bytes(buf[start:stop])
            del buf[:stop]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        line = head[: head.find(b"\r\n")]
        if not (line.startswith(b"POST ") and b"/completions " in line):
            transport.write(self._answers.not_found)
        elif b"/chat/completions " in line:
            stream = _STREAM.search(body) is not None
            answers = self._answers
            transport.write(answers.chat_stream if stream else answers.not_found)
        elif _IDLE in body:
            self._idle = True  # the client hangs up; nothing more is read
            transport.write(self._answers.idle)
        elif _PACED in body:
            transport.write(self._answers.stream_head)
            self._write_paced(0)
        elif _STREAM.search(body):
            transport.write(self._answers.stream)
        else:
            transport.write(self._answers.completion)

    def _write_paced(self, index: int) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        paced = self._answers.paced
        transport.write(paced[index])
        if index + 1 < len(paced):
            asyncio.get_running_loop().call_later(
                PACED_GAP_S, self._write_paced, index + 1
            )


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    answers = Answers()
    server = await loop.create_server(
        lambda: HTTPProtocol(answers), "127.0.0.1", port, backlog=2048
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sockets = server.sockets or ()
    print(f"PORT {sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))
    sys.exit(0)


if __name__ == "__main__":
    main()
