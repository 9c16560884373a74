"""Tests for the SSE decoder: one per rule of shared/reference/SSE.md (WHATWG)."""

from __future__ import annotations

import doctest
import itertools
import re

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import enkrypt_async._sse
import enkrypt_async.sse
from enkrypt_async import EnkryptError, StreamError
from enkrypt_async.sse import ServerSentEvent, SSEDecoder

E = ServerSentEvent
BOM = b"\xef\xbb\xbf"


def decode(*chunks: bytes, max_event_size: int = 16 * 1024 * 1024) -> list[E]:
    """Feed every chunk, then close; return all events."""
    decoder = SSEDecoder(max_event_size=max_event_size)
    events: list[E] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def reference(stream: bytes) -> tuple[list[E], str | None, int | None]:
    """A slow, literal transcription of the WHATWG algorithm, used as an oracle.

    Returns the events, the last event id and the last accepted retry value.
    """
    if stream.startswith(BOM):
        stream = stream[3:]
    text = stream.decode("utf-8", "replace")
    events: list[E] = []
    data, event_type, id_buffer = "", "", None
    last_id: str | None = None
    retry: int | None = None
    block_retry: int | None = None
    pos = 0
    # A final line without its line ending is never processed (end of stream).
    while (end := re.compile(r"\r\n|\n|\r").search(text, pos)) is not None:
        line, pos = text[pos : end.start()], end.end()
        if not line:
            last_id = id_buffer
            if data:
                events.append(
                    E(event_type or "message", data[:-1], last_id, block_retry)
                )
            data, event_type, block_retry = "", "", None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id" and "\0" not in value:
            id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = block_retry = int(value)
    return events, last_id, retry


# --- the value type and the public module ---------------------------------------


def test_server_sent_event_defaults_equality_and_repr() -> None:
    event = E()
    assert event == E("message", "", None, None)
    assert E(data="x", id="1") == E(data="x", id="1") != E(data="y", id="1")
    assert repr(E(data="x")) == (
        "ServerSentEvent(event='message', data='x', id=None, retry=None)"
    )
    assert hash(E(data="x")) == hash(E(data="x"))


def test_server_sent_event_is_immutable() -> None:
    event = E(data="x")
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]


def test_public_module_reexports_the_decoder() -> None:
    assert enkrypt_async.sse.__all__ == ["SSEDecoder", "ServerSentEvent"]
    assert enkrypt_async.sse.SSEDecoder is enkrypt_async._sse.SSEDecoder
    assert enkrypt_async.sse.__doc__


def test_docstring_example_runs() -> None:
    assert doctest.testmod(enkrypt_async._sse).failed == 0


@pytest.mark.parametrize("size", [0, -1])
def test_max_event_size_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="max_event_size"):
        SSEDecoder(max_event_size=size)


def test_max_event_size_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        SSEDecoder(10)  # type: ignore[call-arg]


# --- the WHATWG spec's own examples -----------------------------------------------


def test_spec_stock_example_joins_data_lines() -> None:
    assert decode(b"data: YHOO\ndata: +2\ndata: 10\n\n") == [E(data="YHOO\n+2\n10")]


def test_spec_example_with_ids() -> None:
    stream = (
        b": test stream\n\ndata: first event\nid: 1\n\n"
        b"data:second event\nid\n\ndata:  third event\n\n"
    )
    assert decode(stream) == [
        E(data="first event", id="1"),
        E(data="second event", id=""),
        E(data=" third event", id=""),
    ]


def test_spec_example_last_event_needs_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: first event\nid: 1\n\ndata:  third event\n") == [
        E(data="first event", id="1")
    ]
    assert decoder.close() == []


def test_spec_example_empty_data_lines() -> None:
    # First block: data "", middle block: a single LF, last block discarded.
    assert decode(b"data\n\ndata\ndata\n\ndata:") == [E(data=""), E(data="\n")]


def test_spec_example_space_after_colon_is_optional() -> None:
    assert decode(b"data:test\n\ndata: test\n\n") == [E(data="test"), E(data="test")]


def test_spec_example_event_types() -> None:
    stream = b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n"
    stream += b"event: add\ndata: 113411\n\n"
    assert decode(stream) == [
        E("add", "73857293"),
        E("remove", "2153"),
        E("add", "113411"),
    ]


def test_spec_example_messages() -> None:
    stream = (
        b"data: This is the first message.\n\n"
        b"data: This is the second message, it\ndata: has two lines.\n\n"
        b"data: This is the third message.\n\n"
    )
    assert [e.data for e in decode(stream)] == [
        "This is the first message.",
        "This is the second message, it\nhas two lines.",
        "This is the third message.",
    ]


# --- 1. decoding ------------------------------------------------------------------


def test_leading_bom_is_dropped() -> None:
    assert decode(BOM + b"data: x\n\n") == [E(data="x")]


def test_leading_bom_split_across_chunks_is_dropped() -> None:
    assert decode(b"\xef", b"", b"\xbb", b"\xbfdata: x\n\n") == [E(data="x")]


def test_bom_left_on_first_field_name_would_hide_it() -> None:
    # The known bug: keeping the BOM makes the first field "\ufeffdata", ignored.
    assert decode(BOM + b"data: x\n\n", b"data: y\n\n") == [E(data="x"), E(data="y")]


def test_second_bom_is_ordinary_text() -> None:
    assert decode(BOM + BOM + b"data: x\n\n") == []
    assert decode(BOM + b"data: " + BOM + b"x\n\n") == [E(data="\ufeffx")]


def test_incomplete_bom_is_not_dropped() -> None:
    assert decode(b"\xef\xbb\n", b"data: x\n\n") == [E(data="x")]
    assert decode(b"\xef\xbbdata: x\n\n") == []  # name is "\ufffddata"
    assert decode(b"data: \xef\xbb\n\n") == [E(data="\ufffd")]


@pytest.mark.parametrize("char", ["é", "€", "😀", "\u2028"])
def test_multibyte_character_split_across_chunks_decodes(char: str) -> None:
    stream = f"data: a{char}b\n\n".encode()
    for cut in range(len(stream) + 1):
        assert decode(stream[:cut], stream[cut:]) == [E(data=f"a{char}b")]


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        pytest.param(b"\xff", "\ufffd", id="invalid-byte"),
        pytest.param(b"\xe2\x82", "\ufffd", id="truncated-sequence"),
        pytest.param(b"\xc0\xaf", "\ufffd\ufffd", id="overlong"),
        pytest.param(b"\xed\xa0\x80", "\ufffd\ufffd\ufffd", id="surrogate"),
    ],
)
def test_invalid_utf8_becomes_replacement_character(raw: bytes, text: str) -> None:
    stream = b"data: a" + raw + b"\nid: " + raw + b"\n\n"
    assert decode(stream) == [E(data=f"a{text}", id=text)]
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == decode(stream)


def test_truncated_sequence_before_line_end_is_replaced() -> None:
    assert decode(b"data: a\xf0\x9f", b"\r", b"\r") == [E(data="a\ufffd")]


# --- 2. lines ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "eol",
    [
        pytest.param(b"\n", id="LF"),
        pytest.param(b"\r\n", id="CRLF"),
        pytest.param(b"\r", id="CR"),
    ],
)
def test_every_line_ending_works(eol: bytes) -> None:
    stream = b"event: e" + eol + b"data: a" + eol + b"data: b" + eol + eol
    assert decode(stream) == [E("e", "a\nb")]


def test_mixed_line_endings() -> None:
    stream = b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r"
    assert decode(stream) == [E(data="a\nb\nc"), E(data="d")]


def test_cr_at_chunk_end_followed_by_lf_is_one_terminator() -> None:
    assert decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [E(data="a\nb")]


def test_cr_at_chunk_end_then_empty_chunk_then_lf_is_one_terminator() -> None:
    assert decode(b"data: a\r", b"", b"\n", b"data: b\r\n\r\n") == [E(data="a\nb")]


def test_cr_at_chunk_end_followed_by_other_text_ends_the_line() -> None:
    assert decode(b"data: a\r", b"data: b\r", b"\r") == [E(data="a\nb")]


def test_cr_at_chunk_end_dispatches_without_waiting_for_more() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [E(data="a")]


def test_lf_then_cr_are_two_line_endings() -> None:
    assert decode(b"data: a\n\r") == [E(data="a")]


@pytest.mark.parametrize(
    "char",
    [
        pytest.param("\v", id="VT"),
        pytest.param("\f", id="FF"),
        pytest.param("\x1c", id="FS"),
        pytest.param("\x85", id="NEL"),
        pytest.param("\u2028", id="LINE-SEPARATOR"),
        pytest.param("\u2029", id="PARAGRAPH-SEPARATOR"),
    ],
)
def test_other_line_breaks_are_data(char: str) -> None:
    assert decode(f"data: a{char}b\n\n".encode()) == [E(data=f"a{char}b")]


# --- 3. per line ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "data"),
    [
        pytest.param(b"data:x", "x", id="no-space"),
        pytest.param(b"data: x", "x", id="one-space-removed"),
        pytest.param(b"data:  x", " x", id="only-one-space-removed"),
        pytest.param(b"data:\tx", "\tx", id="tab-kept"),
        pytest.param(b"data: x ", "x ", id="trailing-space-kept"),
        pytest.param(b"data: a: b:c", "a: b:c", id="later-colons-are-value"),
        pytest.param(b"data", "", id="no-colon-empty-value"),
        pytest.param(b"data:", "", id="empty-value"),
        pytest.param(b"data: ", "", id="only-space"),
    ],
)
def test_field_value_parsing(line: bytes, data: str) -> None:
    assert decode(line + b"\n\n") == [E(data=data)]


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b": data: x", id="comment"),
        pytest.param(b":", id="bare-colon"),
        pytest.param(b"Data: x", id="case-sensitive"),
        pytest.param(b"data : x", id="space-before-colon"),
        pytest.param(b" data: x", id="leading-space"),
        pytest.param(b"datum: x", id="unknown-field"),
        pytest.param(b"data x", id="no-colon-whole-line-is-name"),
    ],
)
def test_lines_that_are_not_a_data_field_are_ignored(line: bytes) -> None:
    assert decode(line + b"\n\n") == []
    assert decode(line + b"\ndata: y\n\n") == [E(data="y")]


# --- 4. fields --------------------------------------------------------------------


def test_event_field_sets_type_for_one_event_only() -> None:
    stream = b"event: update\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n"
    assert decode(stream) == [E("update", "1"), E("message", "2"), E("message", "3")]


def test_event_type_without_data_is_reset_at_blank_line() -> None:
    assert decode(b"event: ping\n\ndata: x\n\n") == [E(data="x")]


def test_last_field_of_a_kind_wins() -> None:
    stream = b"event: a\nevent: b\nid: 1\nid: 2\nretry: 1\nretry: 2\ndata: x\n\n"
    assert decode(stream) == [E("b", "x", "2", 2)]


def test_id_persists_across_events() -> None:
    stream = b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n"
    assert decode(stream) == [
        E(data="a", id="7"),
        E(data="b", id="7"),
        E(data="c", id=""),
    ]


def test_id_is_none_until_an_id_field_is_accepted() -> None:
    decoder = SSEDecoder()
    assert decoder.last_event_id is None
    assert decoder.feed(b"data: a\n\n") == [E(data="a")]
    assert decoder.feed(b"id:\n\n") == []
    assert decoder.last_event_id == ""


def test_id_containing_nul_is_ignored() -> None:
    stream = b"id: 1\n\nid: 2\x003\ndata: x\n\n"
    assert decode(stream) == [E(data="x", id="1")]


def test_id_without_data_sets_last_event_id_but_dispatches_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 5\n\n") == []
    assert decoder.last_event_id == "5"
    assert decoder.feed(b"data: x\n\n") == [E(data="x", id="5")]


def test_id_counts_only_once_its_block_ends() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    assert decoder.last_event_id == "1"
    assert decoder.feed(b"\n") == [E(data="b", id="2")]
    assert decoder.last_event_id == "2"


@pytest.mark.parametrize(
    ("value", "retry"),
    [
        pytest.param(b"0", 0, id="zero"),
        pytest.param(b"3000", 3000, id="plain"),
        pytest.param(b"007", 7, id="leading-zeros"),
        pytest.param(b"99999999999999999999", 99999999999999999999, id="huge"),
    ],
)
def test_retry_with_ascii_digits_is_accepted(value: bytes, retry: int) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: " + value + b"\ndata: x\n\n") == [
        E(data="x", retry=retry)
    ]
    assert decoder.retry == retry


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"+5", id="plus-sign"),
        pytest.param(b"-1", id="minus-sign"),
        pytest.param(b" 10", id="second-leading-space"),
        pytest.param(b"10 ", id="trailing-space"),
        pytest.param(b"1_000", id="underscore"),
        pytest.param("\u0661\u0662".encode(), id="arabic-indic-digits"),
        pytest.param("²".encode(), id="superscript-two"),
        pytest.param(b"", id="empty"),
        pytest.param(b"1.5", id="decimal"),
        pytest.param(b"10ms", id="unit"),
    ],
)
def test_retry_that_int_would_accept_is_ignored(value: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: " + value + b"\ndata: x\n\n") == [E(data="x")]
    assert decoder.retry is None


def test_retry_belongs_to_its_block_but_the_property_persists() -> None:
    decoder = SSEDecoder()
    stream = b"retry: 10\n\ndata: a\n\nretry: 20\ndata: b\n\ndata: c\n\n"
    assert decoder.feed(stream) == [E(data="a"), E(data="b", retry=20), E(data="c")]
    assert decoder.retry == 20


# --- 5. dispatch ------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(b"event: ping\n\n", id="event-only"),
        pytest.param(b"id: 5\n\n", id="id-only"),
        pytest.param(b"retry: 10\n\n", id="retry-only"),
        pytest.param(b"\n\n\n\r\n\r", id="blank-lines"),
        pytest.param(b": keep-alive\n\n", id="comment"),
    ],
)
def test_block_without_data_dispatches_nothing(stream: bytes) -> None:
    assert decode(stream) == []


def test_no_phantom_events_after_keep_alive_comments() -> None:
    stream = b": ping\n\ndata: a\n\n:\n\n: ping\n\n\n\ndata: b\n\n: ping\n\n"
    assert decode(stream) == [E(data="a"), E(data="b")]


def test_comment_inside_a_block_does_not_split_it() -> None:
    assert decode(b"data: a\n: note\ndata: b\n\n") == [E(data="a\nb")]


def test_only_one_trailing_lf_is_removed() -> None:
    assert decode(b"data: a\ndata\n\n") == [E(data="a\n")]
    assert decode(b"data\ndata\ndata\n\n") == [E(data="\n\n")]


def test_events_from_one_chunk_come_back_together_in_order() -> None:
    decoder = SSEDecoder()
    chunk = b"".join(b"data: %d\n\n" % i for i in range(100))
    assert decoder.feed(chunk) == [E(data=str(i)) for i in range(100)]


# --- 6. end of stream -------------------------------------------------------------


def test_close_discards_an_event_without_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [E(data="a")]
    assert decoder.close() == []


def test_id_in_discarded_block_does_not_count() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    assert decoder.close() == []
    assert decoder.last_event_id == "1"


def test_cr_at_end_of_stream_ends_the_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\r") == [E(data="a")]
    assert decoder.close() == []


def test_close_discards_an_unterminated_line() -> None:
    assert decode(b"data: a\n\ndata: b") == [E(data="a")]
    assert decode(b"data: a\n\n\xef\xbb") == [E(data="a")]
    assert decode(b"\xef\xbb") == []


def test_close_twice_is_harmless() -> None:
    decoder = SSEDecoder()
    assert decoder.close() == []
    assert decoder.close() == []


@pytest.mark.parametrize("chunk", [b"data: x\n\n", b""])
def test_feed_after_close_raises_value_error(chunk: bytes) -> None:
    decoder = SSEDecoder()
    decoder.close()
    with pytest.raises(ValueError, match="close"):
        decoder.feed(chunk)


# --- event size limit -------------------------------------------------------------


def test_event_over_max_event_size_raises_stream_error() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(StreamError, match="max_event_size=100") as info:
        decoder.feed(b"data: " + b"x" * 200 + b"\n\n")
    assert isinstance(info.value, EnkryptError)


def test_unterminated_line_over_max_event_size_raises_before_it_ends() -> None:
    decoder = SSEDecoder(max_event_size=1000)
    stream = b"data: " + b"x" * 994  # exactly at the limit, one byte at a time
    for i in range(len(stream)):
        assert decoder.feed(stream[i : i + 1]) == []
    with pytest.raises(StreamError, match="max_event_size"):
        decoder.feed(b"x")


def test_max_event_size_counts_every_line_of_the_block() -> None:
    with pytest.raises(StreamError):
        decode(b"data: 123456789\n" * 20, max_event_size=100)


def test_event_exactly_at_max_event_size_is_accepted() -> None:
    # Counted: the lines' bytes plus one per line ending ("data: xx\n" is 9).
    assert decode(b"data: xx\r\n\r\n", max_event_size=9) == [E(data="xx")]
    with pytest.raises(StreamError):
        decode(b"data: xxx\n\n", max_event_size=9)


def test_max_event_size_applies_per_event_not_per_stream() -> None:
    stream = b"data: 12345678\n\n" * 1000
    assert len(decode(stream, max_event_size=20)) == 1000


def test_events_before_an_oversized_one_are_returned_before_the_error() -> None:
    decoder = SSEDecoder(max_event_size=20)
    chunk = b"data: a\n\ndata: b\n\ndata: " + b"x" * 30 + b"\n\n"
    assert decoder.feed(chunk) == [E(data="a"), E(data="b")]
    with pytest.raises(StreamError, match="max_event_size=20"):
        decoder.close()
    decoder = SSEDecoder(max_event_size=20)
    assert decoder.feed(chunk) == [E(data="a"), E(data="b")]
    with pytest.raises(StreamError):
        decoder.feed(b"data: c\n\n")
    with pytest.raises(ValueError, match="close"):
        decoder.feed(b"data: c\n\n")


def test_decoder_is_closed_after_stream_error() -> None:
    decoder = SSEDecoder(max_event_size=10)
    with pytest.raises(StreamError):
        decoder.feed(b"data: 0123456789")
    with pytest.raises(ValueError, match="close"):
        decoder.feed(b"\n\n")


# --- chunking never changes the result --------------------------------------------

REPRESENTATIVE = (
    BOM + b": keep-alive\r\n\r\nevent: st\xc3\xa4rt\rid: 1\rretry: 250\rdata: s\r\r"
    b'data: {"t": "\xe2\x82\xac\xf0\x9f\x98\x80"}\n\n: ping\n\ndata\ndata: two\r\n'
    b"id: \xff\r\n\r\ndata:\xe2\x80\xa8x\xc2\x85y\n\ndata: end\r"
)


def test_representative_stream_matches_the_reference() -> None:
    events, last_id, retry = reference(REPRESENTATIVE)
    assert len(events) == 4
    decoder = SSEDecoder()
    assert decoder.feed(REPRESENTATIVE) + decoder.close() == events
    assert (decoder.last_event_id, decoder.retry) == (last_id, retry)


def test_every_split_point_gives_the_same_events() -> None:
    whole = decode(REPRESENTATIVE)
    for cut in range(len(REPRESENTATIVE) + 1):
        assert decode(REPRESENTATIVE[:cut], REPRESENTATIVE[cut:]) == whole, cut


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    chunks = [REPRESENTATIVE[i : i + 1] for i in range(len(REPRESENTATIVE))]
    assert decode(*chunks) == decode(REPRESENTATIVE)


_TEXT = st.text(
    st.sampled_from(list("ab :\r\n\0\ufeff\x85\u2028\v\x0cé€😀\u0661")), max_size=8
)
_LINE = st.builds(
    lambda name, sep, value, eol: name + sep + value + eol,
    st.sampled_from(["data", "event", "id", "retry", "", "Data", "x"]),
    st.sampled_from(["", ":", ": ", ":  ", ":\t"]),
    st.one_of(
        _TEXT, st.sampled_from(["10", "007", "+5", "-1", "1_000", "\u0661\u0662"])
    ),
    st.sampled_from(["\n", "\r", "\r\n", "\n\n", "\r\r", "\r\n\r\n"]),
)
_PIECE = st.one_of(
    _LINE.map(str.encode),
    st.sampled_from(
        [b"\xff", b"\xe2\x82", b"\xc3", b"\xf0\x9f\x98", BOM, b"\r", b"\n"]
    ),
    st.binary(max_size=4),
)
_STREAM = st.builds(
    lambda bom, pieces: (BOM if bom else b"") + b"".join(pieces),
    st.booleans(),
    st.lists(_PIECE, max_size=30),
)


def _rechunk(stream: bytes, data: st.DataObject) -> list[bytes]:
    """``stream`` cut at up to 12 drawn places (repeated cuts give empty chunks)."""
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(stream=_STREAM, data=st.data())
def test_random_streams_in_random_chunks_match_the_reference(
    stream: bytes, data: st.DataObject
) -> None:
    decoder = SSEDecoder()
    events: list[E] = []
    for chunk in _rechunk(stream, data):
        events += decoder.feed(chunk)
    events += decoder.close()
    expected, last_id, retry = reference(stream)
    assert events == expected
    assert (decoder.last_event_id, decoder.retry) == (last_id, retry)
    assert decode(stream) == expected


@settings(max_examples=200, deadline=None)
@given(stream=_STREAM, limit=st.integers(1, 40), data=st.data())
def test_whether_max_event_size_trips_does_not_depend_on_chunking(
    stream: bytes, limit: int, data: st.DataObject
) -> None:
    def trips(*chunks: bytes) -> bool:
        try:
            decode(*chunks, max_event_size=limit)
        except StreamError:
            return True
        return False

    assert trips(*_rechunk(stream, data)) == trips(stream)


# --- long input stays linear --------------------------------------------------------


def test_one_mib_single_line_works() -> None:
    value = b"x" * (1 << 20)
    stream = b"data: " + value + b"\n\n"
    expected = [E(data=value.decode())]
    assert decode(stream) == expected
    assert decode(*(stream[i : i + 4096] for i in range(0, len(stream), 4096))) == (
        expected
    )


def test_one_mib_fed_one_byte_at_a_time_is_linear() -> None:
    # Quadratic buffering would take minutes here; this must take about a second.
    event = b"data: " + b"\xc3\xa9" * 500 + b"\r\n\r\n"
    stream = event * ((1 << 20) // len(event))
    decoder = SSEDecoder()
    feed = decoder.feed
    count = 0
    for i in range(len(stream)):
        for got in feed(stream[i : i + 1]):
            assert got.data == "é" * 500
            count += 1
    assert count == len(stream) // len(event)


def test_sixteen_mib_in_one_call() -> None:
    event = b'data: {"choices": [{"delta": {"content": "' + b"y" * 250 + b'"}}]}\n\n'
    count = (16 << 20) // len(event)
    events = SSEDecoder().feed(event * count)
    assert len(events) == count
    assert events[0] == events[-1] == E(data=event[6:-2].decode())


def test_sixteen_mib_single_event_in_one_call() -> None:
    stream = b"data: " + b"z" * (16 << 20) + b"\n\n"
    events = SSEDecoder(max_event_size=32 << 20).feed(stream)
    assert len(events) == 1
    assert len(events[0].data) == 16 << 20


# --- the plain events of an LLM stream, however the network cuts them ------------

_PLAIN_STREAM = st.lists(
    st.one_of(
        st.builds(lambda text: f"data: {text}\n\n", _TEXT).map(str.encode),
        st.sampled_from(
            [b'data: {"a": 1}\n\n', b"data: \n\n", b"data: [DONE]\n\n", b"\n"]
        ),
        _PIECE,
    ),
    max_size=30,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(stream=_PLAIN_STREAM, data=st.data())
def test_plain_events_cut_anywhere_decode_as_when_fed_byte_by_byte(
    stream: bytes, data: st.DataObject
) -> None:
    # Whole blocks of single `data: ` lines take the decoder's block path; bytes
    # fed one at a time take its line path: both must agree on every event.
    chunked, bytewise = SSEDecoder(), SSEDecoder()
    got = [event for chunk in _rechunk(stream, data) for event in chunked.feed(chunk)]
    expected = [
        event for i in range(len(stream)) for event in bytewise.feed(stream[i : i + 1])
    ]
    assert got == expected
    assert chunked.last_event_id == bytewise.last_event_id


@settings(max_examples=400, deadline=None)
@given(stream=_PLAIN_STREAM, data=st.data())
def test_feed_data_gives_what_feed_gives_however_the_bytes_are_cut(
    stream: bytes, data: st.DataObject
) -> None:
    # How a stream reads: `feed_data` first, `feed` for the bytes it declines.
    batch, plain = SSEDecoder(), SSEDecoder()
    got: list[tuple[str, str]] = []
    expected: list[tuple[str, str]] = []
    for chunk in _rechunk(stream, data):
        values = batch.feed_data(chunk)
        if values is None:
            got += [(e.event, e.data) for e in batch.feed(chunk)]
        else:
            event("feed_data took a read")
            got += [("message", value.decode()) for value in values]
        expected += [(e.event, e.data) for e in plain.feed(chunk)]
    assert got == expected
    assert batch.last_event_id == plain.last_event_id
    assert batch.close() == plain.close() == []


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(b"event: ping\ndata: 1\n\n", id="another-field"),
        pytest.param(b": comment\ndata: 1\n\n", id="a-comment"),
        pytest.param(b"data: 1\ndata: 2\n\n", id="a-multi-line-event"),
        pytest.param(b"data: 1\r\n\r\n", id="a-cr"),
        pytest.param(b"data:1\n\n", id="no-space-after-the-colon"),
        pytest.param(b"data: 1\n", id="no-event-completed"),
    ],
)
def test_feed_data_declines_anything_but_plain_data_lines_and_consumes_nothing(
    read: bytes,
) -> None:
    decoder = SSEDecoder()
    assert decoder.feed_data(read) is None
    assert decoder.feed(read) == SSEDecoder().feed(read)


def test_feed_data_keeps_the_size_limit_of_feed() -> None:
    decoder = SSEDecoder(max_event_size=16)
    assert decoder.feed_data(b"data: " + b"x" * 20 + b"\n\n") is None
    with pytest.raises(StreamError, match="max_event_size"):
        decoder.feed(b"data: " + b"x" * 20 + b"\n\n")
