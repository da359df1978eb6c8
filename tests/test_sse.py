"""Tests for steer.sse: WHATWG event-stream interpretation, incremental decoding, recordings."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import httpx_sse
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steer.sse import ServerSentEvent, SSEDecoder

E = ServerSentEvent
FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "streams"


def decode(*chunks: bytes | str) -> list[ServerSentEvent]:
    """Feed each chunk (bytes via feed, str via feed_text), then flush."""
    d = SSEDecoder()
    out: list[ServerSentEvent] = []
    for c in chunks:
        out += d.feed(c) if isinstance(c, (bytes, bytearray)) else d.feed_text(c)
    return out + d.flush()


def decode_pieces(body: bytes, cuts) -> list[ServerSentEvent]:
    bounds = [0, *sorted(set(cuts)), len(body)]
    return decode(*(body[a:b] for a, b in zip(bounds, bounds[1:])))


# --------------------------------------------------------------------------- model


def test_event_defaults_equality_and_slots():
    assert E() == E("message", "", None, None)
    assert E(data="x") != E(data="y")
    assert [E(data="1"), E(event="e", data="2", id="3", retry=4)] == [
        E("message", "1"),
        E("e", "2", "3", 4),
    ]
    assert not hasattr(E(), "__dict__")


def test_json():
    assert E(data='{"a": [1, 2]}').json() == {"a": [1, 2]}
    with pytest.raises(json.JSONDecodeError):
        E(data="[DONE]").json()


# --------------------------------------------------------------------------- field rules


def test_data_lines_joined_with_lf_and_trailing_lf_removed():
    assert decode(b"data: YHOO\ndata: +2\ndata: 10\n\n") == [E(data="YHOO\n+2\n10")]
    assert decode(b"data: a\ndata:\n\n") == [E(data="a\n")]  # only ONE trailing LF removed


def test_event_field_and_default_message():
    assert decode(b"event: add\ndata: 1\n\ndata: 2\n\n") == [E("add", "1"), E("message", "2")]
    assert decode(b"event:\ndata: x\n\n") == [E("message", "x")]  # empty type -> "message"
    assert decode(b"event: a\nevent: b\ndata: x\n\n") == [E("b", "x")]  # last one wins


def test_id_persists_across_events_and_none_when_never_set():
    body = b"data: a\n\nid: 1\ndata: b\n\ndata: c\n\nid\ndata: d\n\n"
    assert decode(body) == [E(data="a"), E(data="b", id="1"), E(data="c", id="1"), E(data="d", id="")]


def test_id_with_nul_ignored():
    assert decode(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n") == [E(data="a", id="1"), E(data="b", id="1")]


def test_retry_only_ascii_digits_and_per_block():
    assert decode(b"retry: 1500\ndata: a\n\ndata: b\n\n") == [E(data="a", retry=1500), E(data="b")]
    for bad in ("1.5", "-1", "12a", "", "\u0663", "\u00b2", "1 ", "+1"):
        assert decode(f"retry: {bad}\ndata: x\n\n".encode()) == [E(data="x")], bad
    assert decode(b"retry: 7\nretry: x\ndata: a\n\n") == [E(data="a", retry=7)]  # bad value leaves it


def test_comments_ignored():
    assert decode(b": OPENROUTER PROCESSING\n\n:\ndata: x\n: mid-event comment\ndata: y\n\n") == [E(data="x\ny")]
    assert decode(b": only a comment\n\n") == []


def test_line_without_colon_is_field_with_empty_value():
    # spec example: "data" alone appends an empty line to the data buffer
    assert decode(b"data\n\ndata\ndata\n\n") == [E(data=""), E(data="\n")]
    assert decode(b"event: x\nevent\ndata: 1\n\n") == [E("message", "1")]
    assert decode(b"id: 5\nid\ndata: 1\n\n") == [E(data="1", id="")]


def test_exactly_one_leading_space_stripped():
    assert decode(b"data:test\n\ndata: test\n\ndata:  test \n\n") == [E(data="test"), E(data="test"), E(data=" test ")]
    assert decode(b"event:  sp\ndata: x\n\n") == [E(" sp", "x")]
    assert decode(b"data:\tx\n\n") == [E(data="\tx")]  # only a space, not other whitespace


def test_value_may_contain_colons():
    assert decode(b'data: {"a": "b:c"}\n\n') == [E(data='{"a": "b:c"}')]


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_line_endings(eol):
    body = b"event: e" + eol + b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert decode(body) == [E("e", "a\nb"), E(data="c")]


def test_mixed_line_endings():
    assert decode(b"data: a\rdata: b\ndata: c\r\n\r\ndata: d\r\r") == [E(data="a\nb\nc"), E(data="d")]


def test_crlf_split_across_feeds_is_one_line_end():
    # If the CR and the LF were counted as two line ends, the LF would be a blank line and
    # split this into two events "a" and "b".
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [E(data="a\nb")]
    assert decode(b"data: a\r", b"", b"\n", b"data: b\r", b"\n\r", b"\n") == [E(data="a\nb")]
    assert decode("data: a\r", "\ndata: b\r", "\n\r", "\n") == [E(data="a\nb")]
    # A CR at a chunk end followed by a CR is two line ends (lone CRs).
    assert decode(b"data: a\r", b"\rdata: b\r\r") == [E(data="a"), E(data="b")]


def test_line_split_across_many_feeds():
    body = b"data: " + b"x" * 5000 + b"\n\n"
    assert decode(*(body[i : i + 1] for i in range(len(body)))) == [E(data="x" * 5000)]
    assert decode(b"da", b"ta", b": ", b"hi\n", b"\n") == [E(data="hi")]


def test_only_lf_cr_crlf_are_line_ends():
    # str.splitlines() would also split on these; the SSE spec does not.
    weird = "a\x0bb\x0cc\x1cd\x1de\x1ef\x85g\u2028h\u2029i"
    assert decode(f"data: {weird}\n\n".encode()) == [E(data=weird)]


def test_leading_bom_stripped():
    assert decode(b"\xef\xbb\xbfdata: x\n\n") == [E(data="x")]
    assert decode("\ufeffdata: x\n\n") == [E(data="x")]


def test_leading_bom_split_across_feeds():
    assert decode(b"\xef", b"\xbb", b"\xbf", b"data: x\n\n") == [E(data="x")]
    assert decode(b"", b"\xef\xbb", b"\xbfdata: x\n\n") == [E(data="x")]


def test_only_the_first_bom_is_stripped():
    # A second BOM belongs to the field name "\ufeffdata", an unknown field -> ignored.
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n") == []
    assert decode(b"data: x\n\n\xef\xbb\xbfdata: y\n\n") == [E(data="x")]
    assert decode(b"data: x\n\n", b"\xef\xbb\xbfdata: y\n\n") == [E(data="x")]  # not per chunk
    assert decode(b"\xef\xbb\xbf", b"\xef\xbb\xbfdata: y\n\n") == []


def test_multibyte_utf8_split_across_feeds():
    text = "data: é€😀 日本\n\n"
    body = text.encode()
    expected = [E(data="é€😀 日本")]
    assert decode(body) == expected
    assert decode(*(body[i : i + 1] for i in range(len(body)))) == expected
    for cut in range(len(body)):
        assert decode(body[:cut], body[cut:]) == expected


def test_invalid_utf8_replaced():
    assert decode(b"data: a\xffb\n\n") == [E(data="a\ufffdb")]
    assert decode(b"data: a\xe2\x82", b"\n\n") == [E(data="a\ufffd")]


def test_empty_data_not_dispatched_but_id_updates():
    assert decode(b"id: 7\n\ndata: x\n\n") == [E(data="x", id="7")]
    assert decode(b"event: ping\nretry: 5\n\n") == []
    # the event type and retry of an undispatched block do not leak into the next one
    assert decode(b"event: ping\nretry: 5\n\ndata: x\n\n") == [E(data="x")]


def test_unknown_fields_ignored():
    assert decode(b"foo: bar\ndata: x\nDATA: y\nData: z\n bar\ndata : w\n\n") == [E(data="x")]


# --------------------------------------------------------------------------- end of stream


def test_flush_dispatches_event_without_trailing_blank_line():
    d = SSEDecoder()
    assert d.feed(b"data: a\n\ndata: b\n") == [E(data="a")]
    assert d.flush() == [E(data="b")]


def test_flush_completes_unterminated_last_line():
    assert decode(b"event: end\ndata: {}") == [E("end", "{}")]
    assert decode(b"data: x\r") == [E(data="x")]
    assert decode(b"data") == [E(data="")]


def test_flush_nothing_pending():
    d = SSEDecoder()
    assert d.flush() == []
    assert d.feed(b"data: a\n\n") == [E(data="a")]
    assert d.flush() == []
    assert decode(b": comment") == []
    assert decode(b"id: 3") == []


def test_flush_truncated_multibyte():
    assert decode(b"data: \xe2\x82") == [E(data="\ufffd")]


def test_flush_resets_for_next_stream_keeping_last_id():
    d = SSEDecoder()
    assert d.feed(b"id: 9\ndata: partial") == []
    assert d.flush() == [E(data="partial", id="9")]
    # new stream: the partial line is gone, a BOM is stripped again, the last id persists
    assert d.feed(b"\xef\xbb\xbfdata: next\n\n") == [E(data="next", id="9")]


def test_whatwg_spec_example():
    body = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n"
    # the spec would discard the unterminated third event; steer dispatches it at flush
    assert decode(body) == [E(data="first event", id="1"), E(data="second event", id=""), E(data=" third event", id="")]


def test_feed_returns_events_as_soon_as_complete():
    d = SSEDecoder()
    assert d.feed(b"data: a\n") == []
    assert d.feed(b"\n") == [E(data="a")]
    assert d.feed(b"data: b\n\ndata: c\n\nda") == [E(data="b"), E(data="c")]
    assert d.flush() == []  # "da" is an unknown field name at EOF: nothing to dispatch


def test_unknown_partial_field_at_eof_not_dispatched():
    assert decode(b"data: b\n\nda") == [E(data="b")]


# --------------------------------------------------------------------------- recordings


def _recordings():
    out = []
    for path in sorted(FIXTURES.glob("*/*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        resp = rec["response"]
        ctype = (resp.get("content_type") or "").lower()
        body = resp["body"]
        if "application/json" in ctype:
            continue  # error bodies and Gemini's JSON-array stream are not SSE
        if "text/event-stream" not in ctype and not body.lstrip().startswith(("data:", "event:", ":")):
            continue
        out.append(pytest.param(body.encode("utf-8"), id=f"{path.parent.name}/{path.stem}"))
    return out


RECORDINGS = _recordings()


def test_recordings_found():
    assert len(RECORDINGS) >= 40, FIXTURES


def _interesting_cuts(body: bytes) -> list[int]:
    """Cut positions between CR and LF, and inside multi-byte UTF-8 characters."""
    cuts = [i + 1 for i in range(len(body) - 1) if body[i] == 0x0D and body[i + 1] == 0x0A]
    cuts += [i for i in range(1, len(body)) if 0x80 <= body[i] < 0xC0]  # continuation bytes
    return cuts or [0]


@pytest.mark.parametrize("body", RECORDINGS)
def test_recording_decodes_to_events(body):
    events = decode(body)
    assert events, "an SSE recording should produce events"
    assert all(e.data for e in events)


@pytest.mark.parametrize("body", RECORDINGS)
def test_recording_single_byte_feeds_equal_one_shot(body):
    assert decode(*(body[i : i + 1] for i in range(len(body)))) == decode(body)


@pytest.mark.parametrize("body", RECORDINGS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_recording_arbitrary_cuts_equal_one_shot(body, data):
    n = len(body)
    special = _interesting_cuts(body)
    cut = st.one_of(st.integers(0, n), st.sampled_from(special))
    cuts = data.draw(st.lists(cut, max_size=60), label="cuts")
    assert decode_pieces(body, cuts) == decode(body)


@pytest.mark.parametrize("body", RECORDINGS)
def test_recording_matches_httpx_sse(body):
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    theirs = [(e.event, e.data, e.id) for e in httpx_sse.EventSource(response).iter_sse()]
    ours = [(e.event, e.data, e.id or "") for e in decode(body)]  # httpx_sse uses "" for "no id"
    assert ours == theirs


# --------------------------------------------------------------------------- generated streams

_EOLS = ("\n", "\r", "\r\n")
# Values may hold anything but line breaks; include the characters str.splitlines() would split on.
_value = st.text(
    alphabet=st.one_of(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), st.sampled_from("\x0b\x0c\x1c\x85\u2028 :")),
    max_size=12,
)
_event = st.fixed_dictionaries(
    {
        "event": st.none() | _value,
        "data": st.lists(_value, min_size=1, max_size=4),
        "id": st.none() | _value.filter(lambda v: "\0" not in v),
        "retry": st.none() | st.integers(0, 10**12),
        "comment": st.none() | _value,
        "unknown": st.none() | _value,
    }
)


@st.composite
def _stream(draw):
    """(encoded bytes, expected events) for a random well-formed stream."""
    specs = draw(st.lists(_event, max_size=6))
    lines: list[str] = []
    expected: list[ServerSentEvent] = []
    last_id = None
    for spec in specs:
        block: list[tuple[str, str]] = []
        if spec["comment"] is not None:
            block.append(("", spec["comment"]))
        if spec["event"] is not None:
            block.append(("event", spec["event"]))
        if spec["id"] is not None:
            block.append(("id", spec["id"]))
            last_id = spec["id"]
        if spec["retry"] is not None:
            block.append(("retry", str(spec["retry"])))
        if spec["unknown"] is not None:
            block.append(("x-unknown", spec["unknown"]))
        block += [("data", v) for v in spec["data"]]
        block = draw(st.permutations(block))  # fields in any order, data lines interleaved
        for name, value in block:
            if value == "" and name and draw(st.booleans()):
                lines.append(name)  # "name" with no colon == empty value
            elif value[:1] != " " and draw(st.booleans()):
                lines.append(f"{name}:{value}")  # the space after the colon is optional
            else:
                lines.append(f"{name}: {value}")
        lines.append("")
        data_lines = [value for name, value in block if name == "data"]  # in permuted order
        expected.append(E(spec["event"] or "message", "\n".join(data_lines), last_id, spec["retry"]))
    if lines and draw(st.booleans()):
        lines.pop()  # no blank line after the last event: flush() must still dispatch it
    out: list[str] = ["\ufeff"] if draw(st.booleans()) else []
    prev_eol = ""
    for i, line in enumerate(lines):
        eols = _EOLS
        if prev_eol == "\r" and line == "":
            eols = ("\r", "\r\n")  # "\r" + "\n" would read as ONE CRLF line end, eating the blank line
        eol = draw(st.sampled_from(eols))
        if i == len(lines) - 1 and line and draw(st.booleans()):
            eol = ""  # the last line may even lack its line end
        out += [line, eol]
        prev_eol = eol
    return "".join(out).encode("utf-8"), expected


@settings(max_examples=300, deadline=None)
@given(stream=_stream(), data=st.data())
def test_generated_streams_roundtrip(stream, data):
    body, expected = stream
    assert decode(body) == expected
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=20), label="cuts")
    assert decode_pieces(body, cuts) == expected


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200), data=st.data())
def test_arbitrary_bytes_any_cuts_equal_one_shot(body, data):
    # Includes invalid UTF-8, stray CRs and BOM fragments: cutting must never change the result.
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=20), label="cuts")
    assert decode_pieces(body, cuts) == decode(body)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("data:event:id:retry: 12\r\n\ufeffé"), max_size=80), data=st.data())
def test_feed_text_equals_feed_bytes(text, data):
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=10), label="cuts")
    bounds = [0, *sorted(set(cuts)), len(text)]
    assert decode(*(text[a:b] for a, b in zip(bounds, bounds[1:]))) == decode(text.encode())
