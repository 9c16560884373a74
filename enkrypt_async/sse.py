"""Server-Sent Events decoding, usable on its own.

`SSEDecoder` turns the raw bytes of a ``text/event-stream`` body into
`ServerSentEvent` values exactly as the WHATWG HTML standard ("Parsing an event
stream") prescribes: UTF-8 only, CRLF/LF/CR line endings even when split across
chunks, ``retry`` accepted only as ASCII digits, no phantom events after comments,
and a cap on the size of one event. It does no I/O, so it works with any
transport.

Examples:
    ```python
    from enkrypt_async.sse import SSEDecoder

    decoder = SSEDecoder()
    async for chunk in response.content.iter_any():
        for event in decoder.feed(chunk):
            print(event.event, event.data)
    decoder.close()
    ```
"""

from __future__ import annotations

from ._sse import ServerSentEvent, SSEDecoder

__all__ = ["SSEDecoder", "ServerSentEvent"]
