"""Property-based fuzzing (hypothesis): hostile bytes only ever raise our errors.

Four surfaces take bytes from the network: the SSE decoder, the success-body
decoder, the error-status handler, and the stream over a real connection. For
each, any input either gives the documented result or raises the documented
`EnkryptError` subclass, never anything else. Where a cheaper oracle exists the
result is also checked: events do not depend on how the bytes are chunked, a
well-typed body always decodes, and a stream over aiohttp yields exactly what
the same bytes decoded in memory yield.

Longer, coverage-guided runs of the same properties live in ``fuzz/`` (atheris).
The tests at the end pin the bugs this fuzzing found (now fixed).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from enkrypt_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    Completion,
    DecodeError,
    EnkryptClient,
    GuardrailsBlockedError,
    GuardrailsDetails,
    GuardrailsSummary,
    InternalServerError,
    PolicyDetections,
    StreamError,
)
from enkrypt_async._base_client import MAX_ERROR_BODY
from enkrypt_async._exceptions import status_error_class
from enkrypt_async._models.completions import completion_decoder
from enkrypt_async._models.guardrails import convert_detections
from enkrypt_async._responses import (
    DECODE_ERRORS,
    decode_answer,
    error_in,
    status_error,
)
from enkrypt_async.sse import ServerSentEvent, SSEDecoder

from .conftest import ClientFactory, ServerFactory, checked_out

#: ``FUZZ_SCALE=20 pytest tests/test_fuzz.py`` runs twenty times the examples.
SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
T = TypeVar("T")

FAST = settings(max_examples=200 * SCALE, deadline=None)
NETWORK = settings(
    max_examples=50 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# --- strategies -----------------------------------------------------------------------

#: Every key name the models know, at any depth, and a few the proxy also sends.
KEYS = sorted(
    {
        "choices",
        "usage",
        "enkrypt_policy_detections",
        "input_guardrails",
        "output_guardrails",
        "summary",
        "details",
        "error",
        "message",
        "detail",
        "request_id",
        *GuardrailsDetails.__struct_fields__,
        *GuardrailsSummary.__struct_fields__,
        *Completion.__struct_fields__,
        "text",
        "index",
        "finish_reason",
        "seed",
        "logprobs",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "safe",
        "attack",
        "sfw",
        "nsfw",
        "detected_keywords",
        "detected_counts",
        "similarity_score",
    }
)
#: Strings the lax decoder treats specially, or nearly.
ODD_STRINGS = ["0.5", "nan", "inf", "-inf", "1e400", "-0", "true", "false", "null"]

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(ODD_STRINGS)
)
json_values: st.SearchStrategy[object] = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children)
    ),
    max_leaves=30,
)


def well_typed(info: msgspec.inspect.Type, *, junk: bool) -> st.SearchStrategy[Any]:
    """Values the lax decoder must accept for ``info`` (or, with ``junk``, any JSON
    value at each level, so the key names stay real but the types go wild)."""
    right = _well_typed(info, junk)
    return st.one_of(right, json_values) if junk else right


def _well_typed(info: msgspec.inspect.Type, junk: bool) -> st.SearchStrategy[Any]:
    inspect = msgspec.inspect
    if isinstance(info, inspect.StructType):
        # Not the private `error` member of an answer: an error is no answer.
        fields = {
            f.encode_name: well_typed(f.type, junk=junk)
            for f in info.fields
            if not f.name.startswith("_")
        }
        return st.fixed_dictionaries({}, optional=fields)
    if isinstance(info, inspect.UnionType):
        return st.one_of([well_typed(t, junk=junk) for t in info.types])
    if isinstance(info, inspect.ListType):
        return st.lists(well_typed(info.item_type, junk=junk), max_size=3)
    if isinstance(info, inspect.DictType):
        values = well_typed(info.value_type, junk=junk)
        return st.dictionaries(st.text(max_size=8), values, max_size=3)
    if isinstance(info, inspect.IntType):
        big = st.integers(min_value=-(2**200), max_value=2**200)
        # Lax: numeric strings and integral floats (within 2**53) are ints too.
        small = st.integers(min_value=-(2**53), max_value=2**53)
        return big | big.map(str) | small.map(float)
    if isinstance(info, inspect.FloatType):
        finite = st.floats(allow_nan=False, allow_infinity=False)
        return finite | finite.map(repr) | st.integers(-(10**6), 10**6)
    if isinstance(info, inspect.BoolType):
        return st.booleans() | st.sampled_from(["true", "false", "1", "0", 0, 1])
    if isinstance(info, inspect.StrType):
        return st.text(max_size=20)
    if isinstance(info, inspect.NoneType):
        return st.none()
    return json_values  # object: anything


COMPLETION_INFO = msgspec.inspect.type_info(Completion)
good_completions = well_typed(COMPLETION_INFO, junk=False)
wild_completions = well_typed(COMPLETION_INFO, junk=True)
wild_detections = well_typed(msgspec.inspect.type_info(PolicyDetections), junk=True)

error_bodies: st.SearchStrategy[object] = st.fixed_dictionaries(
    {},
    optional={
        "error": json_values
        | st.fixed_dictionaries({}, optional={"message": json_values}),
        "message": json_values,
        "detail": json_values,
        "request_id": json_values,
        "enkrypt_policy_detections": wild_detections,
    },
)


def encode(value: object) -> bytes:
    return msgspec.json.encode(value)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """Bytes from ``base`` with a few bytes set, inserted or deleted at random."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, max(len(data) - 1, 0)))
        byte = draw(st.integers(0, 255))
        how = draw(st.sampled_from(["set", "insert", "delete"]))
        if how == "insert" or not data:
            data.insert(where, byte)
        elif how == "set":
            data[where] = byte
        else:
            del data[where]
    return bytes(data)


json_bodies = (
    json_values.map(encode) | error_bodies.map(encode) | wild_completions.map(encode)
)
raw_bodies = st.binary(max_size=300) | json_bodies | mutated(json_bodies)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` split at arbitrary points (empty pieces included)."""
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


#: Pieces of text/event-stream syntax, glued at random with random bytes between.
SSE_PIECES = [
    b"data: ",
    b"data:",
    b"data",
    b"event: ",
    b"event: error",
    b"id: ",
    b"id: 7",
    b"retry: ",
    b"retry: 1500",
    b":",
    b": ping",
    b" ",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"\xef\xbb\xbf",
    b"[DONE]",
    b'{"choices": [{"text": "a"}]}',
    b"\x00",
    b"\xff\xfe",
    "é✓".encode(),
    "🎉".encode()[:2],
]
sse_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(SSE_PIECES) | st.binary(max_size=6), max_size=60).map(
        b"".join
    ),
)


# --- (a) the SSE decoder --------------------------------------------------------------


def decode_all(pieces: list[bytes], max_event_size: int) -> list[ServerSentEvent]:
    decoder = SSEDecoder(max_event_size=max_event_size)
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    return events


def check_event(item: object) -> None:
    assert isinstance(item, ServerSentEvent)
    assert isinstance(item.event, str)
    assert item.event
    assert isinstance(item.data, str)
    assert item.id is None or (isinstance(item.id, str) and "\0" not in item.id)
    assert item.retry is None or (isinstance(item.retry, int) and item.retry >= 0)


@FAST
@given(data=st.data(), body=sse_bytes, limit=st.sampled_from([1, 16, 64, 1 << 24]))
def test_sse_decoder_gives_events_or_stream_error_however_chunked(
    data: st.DataObject, body: bytes, limit: int
) -> None:
    pieces = data.draw(chunked(body))
    try:
        events = decode_all(pieces, limit)
    except StreamError:
        events = None
    try:
        whole = decode_all([body], limit)
    except StreamError:
        whole = None
    for item in events or []:
        check_event(item)
    # Chunking never changes the outcome: the same events, or the same overflow.
    assert events == whole


@FAST
@given(body=sse_bytes)
def test_sse_decoder_byte_at_a_time_equals_one_feed(body: bytes) -> None:
    pieces = [body[i : i + 1] for i in range(len(body))]
    assert decode_all(pieces, 1 << 24) == decode_all([body], 1 << 24)


# --- (b) success bodies ---------------------------------------------------------------


def attempt(call: Callable[[], T]) -> T | Exception:
    """What ``call`` returns, or the exception it raises (for the caller to judge)."""
    try:
        return call()
    except Exception as exc:
        return exc


def decode_or_error(data: bytes) -> Completion | Exception:
    result = attempt(lambda: decode_answer(completion_decoder, data, "req-1"))
    try:
        whole = msgspec.json.decode(data)
    except DECODE_ERRORS:
        whole = None
    reported = whole.get("error") if isinstance(whole, dict) else None
    if reported is not None or type(result) is APIError:
        # An error in a success body raises, whatever its shape or spelling (the
        # oracle cannot read a body with invalid UTF-8 in a key it skips).
        assert type(result) is APIError, result
        assert whole is None or reported is not None, result
        assert result.request_id == "req-1"
    elif isinstance(result, DecodeError):
        assert result.request_id == "req-1"
        assert isinstance(result.excerpt, str)
        assert len(result.excerpt) <= 203
    else:
        assert isinstance(result, Completion)
    event(type(result).__name__)
    return result


@FAST
@given(data=raw_bodies)
def test_any_body_decodes_to_a_completion_or_raises_decode_error(data: bytes) -> None:
    decode_or_error(data)
    found = error_in(data)  # never raises
    try:
        whole = msgspec.json.decode(data)
    except DECODE_ERRORS:
        whole = None
    if whole is not None:  # else the oracle cannot judge (see decode_or_error)
        assert found == (whole.get("error") if isinstance(whole, dict) else None)


@FAST
@given(value=wild_completions)
def test_real_keys_with_wild_types_decode_or_raise_decode_error(value: object) -> None:
    decode_or_error(encode(value))
    decode_or_error(json.dumps(value).encode())  # json's spelling of floats too


@FAST
@given(value=good_completions)
def test_well_typed_bodies_always_decode(value: dict[str, Any]) -> None:
    completion = decode_or_error(encode(value))
    assert isinstance(completion, Completion), completion
    choices = value.get("choices", [])
    assert [c.text for c in completion.choices] == [c.get("text", "") for c in choices]
    seeds = [c.seed for c in completion.choices]
    assert seeds == [_int(c["seed"]) if "seed" in c else None for c in choices]


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


# --- (c) error statuses ---------------------------------------------------------------


def converts(raw: bytes) -> bool:
    """Whether ``raw`` is a JSON object whose detections read as detections."""
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    if not isinstance(body, dict):
        return False
    detections = body.get("enkrypt_policy_detections")
    if not isinstance(detections, dict):
        return False
    try:
        convert_detections(detections)
    except msgspec.ValidationError:
        return False
    return True


headers_strategy = st.dictionaries(
    st.sampled_from(["x-request-id", "x-kong-request-id", "Retry-After", "X-Other"]),
    st.text(max_size=20),
).map(CIMultiDict)


@FAST
@given(
    status=st.integers(400, 599),
    reason=st.none() | st.text(max_size=20),
    headers=headers_strategy,
    raw=raw_bodies,
)
def test_status_error_always_returns_the_status_class(
    status: int, reason: str | None, headers: CIMultiDict[str], raw: bytes
) -> None:
    error = status_error(status, reason, headers, raw)
    assert isinstance(error, APIStatusError)
    assert isinstance(error, status_error_class(status))
    assert error.status_code == status
    assert isinstance(error.body, dict | list | str | int | float | bool | None)
    assert str(error).startswith(f"HTTP {status}")
    repr(error)
    blocked = isinstance(error, GuardrailsBlockedError)
    event(type(error).__name__)
    assert blocked == converts(raw)
    if isinstance(error, GuardrailsBlockedError):
        assert isinstance(error.flagged, dict)
    request_id = headers.get("x-request-id") or headers.get("x-kong-request-id")
    if request_id:
        assert error.request_id == request_id


async def test_an_endless_error_body_is_cut_at_the_error_body_cap(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=500, headers={"Content-Type": "application/json"}
        )
        await response.prepare(request)
        try:
            await response.write(b'{"error": {"message": "')
            for _ in range(64):  # 4 MiB, never closed
                await response.write(b"x" * 65536)
        except ConnectionError:
            pass  # the client stopped reading at the cap: expected
        return response

    client = make_client(base_url=await make_server(handler))
    with pytest.raises(InternalServerError) as info:
        await client.completions.create(prompt="hi")
    assert isinstance(info.value.body, str)  # cut JSON is kept as text
    assert MAX_ERROR_BODY - 100 < len(info.value.body) <= MAX_ERROR_BODY
    assert checked_out(client) == 0


# --- (d) a stream over a real connection ----------------------------------------------

ALLOWED = (StreamError, DecodeError, APIConnectionError)


def _event_lines(data: bytes) -> bytes:
    return b"".join(b"data: " + line + b"\n" for line in data.split(b"\n")) + b"\n"


sse_blocks = st.one_of(
    good_completions.map(encode).map(_event_lines),
    wild_completions.map(encode).map(_event_lines),
    st.just(b"data: [DONE]\n\n"),
    error_bodies.map(encode).map(lambda d: b"event: error\n" + _event_lines(d)),
    error_bodies.map(encode).map(_event_lines),
    st.sampled_from([b": ping\n\n", b"id: 3\nretry: 10\n\n", b"event: x\ndata: 1\n\n"]),
    sse_bytes,
)


@dataclass
class Exchange:
    """What the server sends next: the body's pieces and how it ends."""

    pieces: list[bytes] = field(default_factory=list)
    content_type: str = "text/event-stream"
    abort: bool = False


def predict(exchange: Exchange) -> tuple[list[Completion], type[Exception] | None]:
    """The chunks and final error the same bytes give when decoded in memory."""
    body = b"".join(exchange.pieces)
    if exchange.content_type == "application/json":
        if error_in(body) is not None:
            return [], StreamError
        try:
            return [decode_answer(completion_decoder, body, None)], None
        except DecodeError:
            return [], DecodeError
    decoder = SSEDecoder()
    chunks: list[Completion] = []
    for item in [*decoder.feed(body), *decoder.close()]:
        if item.data == "[DONE]":
            return chunks, None
        if item.event == "error":
            return chunks, StreamError
        if item.event != "message" or not item.data:
            continue
        if error_in(item.data.encode()) is not None:
            return chunks, StreamError
        try:
            chunks.append(completion_decoder.decode(item.data))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return chunks, StreamError
    return chunks, StreamError  # no [DONE]: truncated


async def exchange_server(make_server: ServerFactory, current: list[Exchange]) -> str:
    async def handler(request: web.Request) -> web.StreamResponse:
        exchange = current[0]
        response = web.StreamResponse(headers={"Content-Type": exchange.content_type})
        try:
            for piece in exchange.pieces:
                if not response.prepared:
                    await response.prepare(request)
                await response.write(piece)
                await asyncio.sleep(0)  # let the client read between pieces
            if exchange.abort:
                assert request.transport is not None
                request.transport.abort()
                return response
            if not response.prepared:
                await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            pass  # the client gave up first: its right
        return response

    return await make_server(handler)


@st.composite
def exchanges(draw: st.DrawFn) -> Exchange:
    if draw(st.booleans()):
        body = b"".join(draw(st.lists(sse_blocks, max_size=8)))
    else:  # mostly well formed: good chunks, perhaps one odd block, then [DONE]
        good = st.lists(good_completions.map(encode).map(_event_lines), max_size=5)
        odd = st.lists(sse_blocks, max_size=1)
        body = b"".join([*draw(good), *draw(odd), b"data: [DONE]\n\n"])
    content_type = draw(
        st.sampled_from(["text/event-stream"] * 4 + ["application/json"])
    )
    if content_type == "application/json":
        body = draw(st.sampled_from([body]) | raw_bodies | good_completions.map(encode))
    return Exchange(draw(chunked(body)), content_type, abort=draw(st.booleans()))


@dataclass
class Target:
    """One server and one client that every example of a test shares."""

    client: EnkryptClient
    current: list[Exchange]


@pytest.fixture
async def target(make_server: ServerFactory, make_client: ClientFactory) -> Target:
    current = [Exchange()]
    base_url = await exchange_server(make_server, current)
    return Target(make_client(base_url=base_url), current)


async def consume(client: EnkryptClient) -> tuple[list[Completion], Exception | None]:
    """The chunks a stream yields, and the exception that ended it, if any."""
    seen: list[Completion] = []
    try:
        stream = await client.completions.create(prompt="fuzz", stream=True)
        async with stream:
            async for chunk in stream:
                assert isinstance(chunk, Completion)
                seen.append(chunk)
    except Exception as exc:
        return seen, exc
    return seen, None


@NETWORK
@given(exchange=exchanges())
async def test_stream_over_a_connection_yields_completions_or_our_errors(
    target: Target, exchange: Exchange
) -> None:
    # The same client serves every example: its pool must stay clean throughout.
    target.current[0] = exchange
    client = target.client
    seen, error = await consume(client)
    assert checked_out(client) == 0
    event(f"{'chunks, ' if seen else ''}{type(error).__name__ if error else 'done'}")
    assert error is None or isinstance(error, ALLOWED), repr(error)
    chunks, expected = predict(exchange)
    if exchange.abort:
        # Bytes in flight when the connection is cut may be lost: a prefix,
        # ended by the predicted outcome or by a broken connection.
        assert seen == chunks[: len(seen)]
        if error is not None:
            assert isinstance(error, (StreamError, APIConnectionError, expected or ()))
        else:
            assert expected is None
            assert seen == chunks
    else:
        assert seen == chunks
        if expected is None:
            assert error is None, repr(error)
        else:
            assert type(error) is expected, repr(error)


# --- regressions found by fuzzing -----------------------------------------------------
#
# Two inputs make msgspec raise something other than msgspec.DecodeError; they
# must still come out as our errors only:
# - JSON nested deeper than the recursion limit (~1,000 levels) -> RecursionError;
# - invalid UTF-8 inside a JSON string (say a Latin-1 "Caf\xe9") -> UnicodeDecodeError.

DEEP = b"[" * 5000 + b"]" * 5000
LATIN1 = b'{"error": {"message": "Caf\xe9 ferm\xe9"}, "choices": []}'
LATIN1_TEXT = b'{"choices": [{"text": "Caf\xe9"}]}'


def decodes_to_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_answer(completion_decoder, data, None)


def error_in_answers(data: bytes) -> None:
    error_in(data)


def status_error_answers(data: bytes) -> None:
    assert isinstance(status_error(503, "Unavailable", {}, data), InternalServerError)


@pytest.mark.parametrize(
    ("call", "data"),
    [
        pytest.param(
            decodes_to_decode_error,
            b'{"choices": [], "x": ' + DEEP + b"}",
            id="decode_answer-deep",
        ),
        pytest.param(
            decodes_to_decode_error,
            LATIN1_TEXT,
            id="decode_answer-latin1",
        ),
        pytest.param(
            error_in_answers,
            b'{"error": "x", "extra": ' + DEEP + b"}",
            id="error_in-deep",
        ),
        pytest.param(
            error_in_answers,
            LATIN1,
            id="error_in-latin1",
        ),
        pytest.param(
            status_error_answers,
            DEEP,
            id="status_error-deep",
        ),
        pytest.param(
            status_error_answers,
            LATIN1,
            id="status_error-latin1",
        ),
    ],
)
def test_hostile_json_gives_our_errors_only(
    call: Callable[[bytes], None], data: bytes
) -> None:
    call(data)


async def test_error_status_with_a_latin1_body_is_still_retried_and_typed(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    calls: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(
            status=503,
            body=LATIN1,
            headers={"Content-Type": "application/json", "Retry-After": "0"},
        )

    client = make_client(base_url=await make_server(handler), max_retries=1)
    try:
        with pytest.raises(InternalServerError):
            await client.completions.create(prompt="hi")
        assert len(calls) == 2
    finally:
        assert checked_out(client) == 0


async def test_deeply_nested_stream_event_raises_stream_error(target: Target) -> None:
    target.current[0] = Exchange([b'data: {"choices": [], "x": ' + DEEP + b"}\n\n"])
    stream = await target.client.completions.create(prompt="deep", stream=True)
    try:
        with pytest.raises(StreamError):
            await stream.collect()
    finally:
        assert checked_out(target.client) == 0


async def test_deeply_nested_plain_answer_raises_decode_error(target: Target) -> None:
    body = b'{"choices": [], "x": ' + DEEP + b"}"
    target.current[0] = Exchange([body], content_type="application/json")
    with pytest.raises(DecodeError):
        await target.client.completions.create(prompt="deep")
    assert checked_out(target.client) == 0


async def test_latin1_plain_answer_raises_decode_error(target: Target) -> None:
    target.current[0] = Exchange([LATIN1_TEXT], content_type="application/json")
    with pytest.raises(DecodeError):
        await target.client.completions.create(prompt="latin-1")
    assert checked_out(target.client) == 0
