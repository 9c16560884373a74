"""atheris harness: the SSE decoder on arbitrary bytes, arbitrarily chunked.

Checks what ``tests/test_fuzz.py`` checks, for as long as you let it run: feeding
any bytes, cut anywhere, gives `ServerSentEvent` objects or raises `StreamError`
(the ``max_event_size`` cap) and nothing else, and the events do not depend on how
the bytes were cut. See ``fuzz/README.md``::

    python fuzz/fuzz_sse.py -atheris_runs=100000 -dict=fuzz/sse.dict
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

with atheris.instrument_imports(include=["enkrypt_async"]):
    from enkrypt_async import StreamError
    from enkrypt_async.sse import ServerSentEvent, SSEDecoder

LIMITS = [1, 7, 64, 4096, 1 << 24]


def decode(pieces: list[bytes], limit: int) -> list[ServerSentEvent] | None:
    """The events of ``pieces`` fed in turn, or None when the cap was hit."""
    decoder = SSEDecoder(max_event_size=limit)
    events: list[ServerSentEvent] = []
    try:
        for piece in pieces:
            events.extend(decoder.feed(piece))
        events.extend(decoder.close())
    except StreamError:
        return None
    return events


def check(item: object) -> None:
    """Fail unless ``item`` is a well-formed event."""
    if not (
        isinstance(item, ServerSentEvent)
        and isinstance(item.event, str)
        and item.event
        and isinstance(item.data, str)
        and (item.id is None or (isinstance(item.id, str) and "\0" not in item.id))
        and (item.retry is None or (isinstance(item.retry, int) and item.retry >= 0))
    ):
        raise AssertionError(f"malformed event: {item!r}")


def test_one_input(data: bytes) -> None:
    """One fuzz case: a cap, chunk sizes, then the body."""
    fdp = atheris.FuzzedDataProvider(data)
    limit = fdp.PickValueInList(LIMITS)
    sizes = [fdp.ConsumeIntInRange(0, 32) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    pieces: list[bytes] = []
    start = 0
    for turn in range(len(body)):
        if start >= len(body):
            break
        size = sizes[turn % len(sizes)] if sizes else len(body)
        if size == 0:  # an empty feed, then one byte
            pieces.append(b"")
            size = 1
        pieces.append(body[start : start + size])
        start += size
    chunked = decode(pieces, limit)
    whole = decode([body], limit)
    for item in chunked or []:
        check(item)
    if chunked != whole:
        raise AssertionError(f"chunking changed the events: {chunked!r} != {whole!r}")


def main() -> None:
    """Run the fuzzer with libFuzzer's command line (``-atheris_runs=N``...)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
