"""Tests for steer.processing.json_stream: incremental JSON tracking, repair, de-dup, arguments."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jiter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steer.processing import json_stream
from steer.processing.json_stream import (
    JsonDeduper,
    JsonStreamTracker,
    parse_arguments,
)

FIXTURES = Path("/work/shared/fixtures/streams")


def expected_objects(value: Any) -> list[Any]:
    """The counting rule: a top-level object, or each object element of a top-level array."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [e for e in value if isinstance(e, dict)]
    return []


def feed_all(chunks, **kw) -> JsonStreamTracker:
    t = JsonStreamTracker(**kw)
    for c in chunks:
        t.feed(c)
    return t


def jiter_partial(text: str) -> Any:
    try:
        return jiter.from_json(text.encode(), partial_mode="trailing-strings", allow_inf_nan=False)
    except ValueError:
        return None


def split_every(text: str, n: int) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), n)]


# --- hand-made streams ------------------------------------------------------------------------

def test_single_object_counted_once_when_it_closes():
    doc = '{"city": "San Francisco", "temperature": 61, "units": "f"}'
    t = JsonStreamTracker()
    for i, ch in enumerate(doc):
        t.feed(ch)
        assert t.objects_completed == (1 if i == len(doc) - 1 else 0)
        assert t.depth == (0 if i == len(doc) - 1 else 1)
    r = t.finish()
    assert r.valid and not r.repaired and r.error is None
    assert r.value == json.loads(doc)
    assert r.objects == [json.loads(doc)]
    assert t.completed_spans == [(0, len(doc))]
    assert t.max_depth_seen == 1


def test_top_level_array_each_element_known_once_in_order_as_it_closes():
    elements = [{"day": "Mon", "t": [1, {"x": "}"}]}, 7, {"day": "Tue"}, [{"not": "counted"}],
                {"day": "Wed", "n": {"deep": {}}}]
    doc = json.dumps(elements)
    closes = []  # (chunk index at which each counted object closed)
    t = JsonStreamTracker()
    chunks = split_every(doc, 5)
    for k, c in enumerate(chunks):
        before = t.objects_completed
        t.feed(c)
        closes += [k] * (t.objects_completed - before)
    counted = expected_objects(elements)
    assert t.objects_completed == len(counted) == 3
    # each closed in the chunk that holds its closing brace
    ends = [b for _, b in t.completed_spans]
    assert closes == [(e - 1) // 5 for e in ends]
    assert [json.loads(doc[a:b]) for a, b in t.completed_spans] == counted
    assert t.completed_objects() == counted
    r = t.finish()
    assert r.valid and r.value == elements and r.objects == counted


def test_completed_objects_parsed_once_lazily(monkeypatch):
    calls = []
    real = json_stream._parse

    def counting(text, partial=False):
        calls.append(text)
        return real(text, partial)

    monkeypatch.setattr(json_stream, "_parse", counting)
    t = JsonStreamTracker()
    t.feed('[{"a": 1}, {"b"')
    assert calls == []  # nothing parsed while streaming
    assert t.completed_objects() == [{"a": 1}]
    assert t.completed_objects() == [{"a": 1}]
    assert calls == ['{"a": 1}']
    t.feed(': 2}, 3]')
    assert t.completed_objects() == [{"a": 1}, {"b": 2}]
    assert calls == ['{"a": 1}', '{"b": 2}']


def test_nested_objects_belong_to_their_parent():
    value = {"a": {"b": {"c": {}}}, "list": [{"d": 1}, {"e": [{}]}]}
    t = feed_all(split_every(json.dumps(value), 3))
    assert t.objects_completed == 1
    assert t.max_depth_seen == 5  # list > {e} > [ > {}
    r = t.finish()
    assert r.objects == [value] and r.valid


@pytest.mark.parametrize("value", [
    {"s": "}{][", "t": "\"}\"", "u": "\\", "v": "\\\"{"},
    ["{", {"k}": "]"}, "\\\\", {"q": "\"\\\""}],
    {"": "", "\"": "\\\"\\\\", "[": ["]"]},
])
def test_strings_with_braces_brackets_quotes(value):
    doc = json.dumps(value)
    for n in (1, 2, 3, 7, len(doc)):
        t = feed_all(split_every(doc, n))
        r = t.finish()
        assert r.valid and r.value == value, n
        assert r.objects == expected_objects(value)
        assert t.objects_completed == len(expected_objects(value))
        assert t.depth == 0


def test_backslash_at_end_of_chunk():
    t = feed_all(['{"a": "x\\', '"}', '", "b": "\\', '\\', '"}'])
    r = t.finish()
    assert r.valid and r.value == {"a": 'x"}', "b": "\\"}
    assert t.objects_completed == 1


@pytest.mark.parametrize("cut", range(1, 7))
def test_unicode_escape_split(cut):
    esc = '\\u00e9\\ud83d\\ude00'
    doc = '{"k": "' + esc + '"}'
    start = doc.index("\\")
    t = feed_all([doc[:start + cut], doc[start + cut:]])
    r = t.finish()
    assert r.valid and r.value == {"k": "é😀"}


def test_unicode_raw_and_byte_size():
    value = {"名前": "ポチ", "emoji": "🐕‍🦺", "mixed": "aé€𝄞"}
    doc = json.dumps(value, ensure_ascii=False)
    r = feed_all(list(doc)).finish()
    assert r.valid and r.value == value
    # max_bytes counts UTF-8 bytes, not characters
    size = len(doc.encode())
    assert feed_all(list(doc), max_bytes=size).finish().error is None
    assert feed_all(list(doc), max_bytes=size - 1).finish().error == "json.size_exceeded"


TRUNCATION_SAMPLES = [
    {"name": "Biscuit", "age": 4, "tags": ["a\"b", "c\\d", "é\u2028"], "ok": True, "none": None,
     "f": -1.25e3, "nested": {"x": [1, 2, {"y": "z}"}], "empty": {}}},
    [{"id": 1, "v": "one"}, {"id": 2, "v": [True, False]}, 3, "s", {"id": 4}],
]


@pytest.mark.parametrize("value", TRUNCATION_SAMPLES)
def test_truncation_at_every_point_is_repaired_and_flagged(value):
    for ensure_ascii in (True, False):
        doc = json.dumps(value, ensure_ascii=ensure_ascii)
        for k in range(1, len(doc)):
            prefix = doc[:k]
            t = feed_all(split_every(prefix, 4))
            r = t.finish(truncated=True)
            assert r.truncated and r.error is None
            assert not r.valid, prefix
            expected = jiter_partial(prefix)
            assert r.value == expected, prefix
            assert r.repaired == (expected is not None)
            assert t.partial() == expected
            # every counted object that closed inside the prefix is reported, and nothing else
            assert r.objects == t.completed_objects()
            assert len(r.objects) == sum(1 for _, b in t.completed_spans if b <= k)
        r = feed_all([doc]).finish(truncated=True)
        assert r.valid and not r.repaired and r.truncated and r.value == value


def test_repair_drops_dangling_key_and_trailing_comma():
    assert feed_all(['{"a": 1, "b"']).finish(truncated=True).value == {"a": 1}
    assert feed_all(['{"a": 1,']).finish(truncated=True).value == {"a": 1}
    assert feed_all(['[1, 2, ']).finish(truncated=True).value == [1, 2]
    r = feed_all(['{"a": "unterminated str']).finish(truncated=True)
    assert r.repaired and r.value == {"a": "unterminated str"}


def test_structurally_balanced_but_invalid_is_not_repaired():
    r = feed_all(['{"a" 1}']).finish()
    assert not r.valid and not r.repaired and r.value is None and r.error is None
    assert r.objects == []  # the span closed, but it is not JSON


def test_partial_progresses_with_the_stream():
    doc = '{"items": [{"n": "ab\\"c"}, {"n": "d'
    t = JsonStreamTracker()
    assert t.partial() is None
    for k in range(1, len(doc) + 1):
        t.feed(doc[k - 1])
        assert t.partial() == jiter_partial(doc[:k])
    assert t.partial() == {"items": [{"n": 'ab"c'}, {"n": "d"}]}


# --- limits and structural errors ----------------------------------------------------------------

@pytest.mark.parametrize("chunk", [100_000, 1000, 7])
def test_hostile_nesting_depth_exceeded(chunk):
    t0 = time.perf_counter()
    t = JsonStreamTracker()
    hostile = "[" * 100_000
    for c in split_every(hostile, chunk):
        t.feed(c)
    assert t.error == "json.depth_exceeded"
    assert t.depth == 64 and t.max_depth_seen == 64
    assert len(t.text) <= 64  # the chunk that overflowed is not kept; nothing after it
    r = t.finish()
    assert r.error == "json.depth_exceeded" and r.value is None and not r.valid
    assert t.partial() is None
    assert time.perf_counter() - t0 < 2.0


def test_depth_limit_is_inclusive():
    ok = "[" * 10 + "]" * 10
    assert feed_all([ok], max_depth=10).finish().valid
    assert feed_all([ok], max_depth=9).finish().error == "json.depth_exceeded"
    deep_objects = '{"a": ' * 70 + "1" + "}" * 70
    assert feed_all(split_every(deep_objects, 3)).error == "json.depth_exceeded"


def test_huge_string_beyond_max_bytes():
    limit = 1 << 20
    t = JsonStreamTracker(max_bytes=limit)
    t.feed('{"s": "')
    piece = "x" * 65536
    fed = 7
    for _ in range(40):  # 2.5 MiB offered
        t.feed(piece)
        fed += len(piece)
        assert len(t.text) <= limit
    assert t.error == "json.size_exceeded"
    assert len(t.text) <= limit
    t.feed('"}')  # ignored after the error
    r = t.finish(truncated=True)
    assert r.error == "json.size_exceeded" and r.value is None and not r.repaired


@pytest.mark.parametrize("chunks", [
    ['{"a": 1}}'], ['{"a": 1}', "]"], ["[1, 2}"], ['{"a": [1}'], ["]"], ["  }"], ['[{"a": 1]']
])
def test_unmatched_or_mismatched_closer_is_invalid(chunks):
    t = feed_all(chunks)
    assert t.error == "json.invalid"
    r = t.finish()
    assert r.error == "json.invalid" and not r.valid and r.value is None


def test_error_is_sticky_and_feeding_stops():
    t = feed_all(['{"a": 1}]'])
    size = len(t.text)
    t.feed('{"b": 2}')
    assert t.error == "json.invalid" and len(t.text) == size
    assert not t.offer_snapshot('{"a": 1}')  # nothing to compare against after an error


def test_leading_prose_is_invalid():
    assert feed_all(["Sure! Here is the JSON: {}"]).error == "json.invalid"
    assert feed_all(["``x{}"]).error == "json.invalid"


# --- fences, leading whitespace, trailing text ---------------------------------------------------

@pytest.mark.parametrize("doc, value", [
    ('```json\n{"a": [1, {"b": 2}]}\n```', {"a": [1, {"b": 2}]}),
    ('\n  ```JSON\n[{"x": 1}, {"y": 2}]\n```\n', [{"x": 1}, {"y": 2}]),
    ('```\n{"a": 1}```', {"a": 1}),
    ('```json{"a": 1}\n```', {"a": 1}),
    ('```json\n"just a string"\n```', "just a string"),
    ('```json\n42\n```', 42),
    ('\n\n   {"a": 1}  \n', {"a": 1}),
])
def test_fences_and_whitespace_are_skipped(doc, value):
    for n in (1, 2, 3, len(doc)):
        t = feed_all(split_every(doc, n))
        r = t.finish()
        assert r.valid and r.value == value, (doc, n)
        assert r.fenced == ("```" in doc)
        assert r.objects == expected_objects(value)
        assert r.documents == 1


def test_json_lines_are_tracked_but_not_valid():
    t = feed_all(split_every('{"a": 1}\n{"b": 2}\n[{"c": 3}]\n', 4))
    r = t.finish()
    assert r.documents == 3 and not r.valid and not r.repaired
    assert r.value == {"a": 1}  # the first document
    assert r.objects == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_trailing_garbage_stops_tracking():
    t = feed_all(['{"a": 1} Hope this helps! {"b": 2}'])
    r = t.finish()
    assert not r.valid and r.value == {"a": 1} and r.objects == [{"a": 1}]
    assert t.objects_completed == 1 and r.error is None


def test_nothing_fed():
    r = JsonStreamTracker().finish(truncated=True)
    assert r.value is None and not r.valid and not r.repaired and r.objects == []
    assert feed_all(["   \n"]).finish().value is None


# --- de-duplication ------------------------------------------------------------------------------

def test_deduper_counts_identical_snapshots_and_snapshot_wins_on_mismatch():
    d = JsonDeduper()
    assert d.offer_snapshot('{"a"')  # nothing assembled yet: taken, not a mismatch
    assert d.snapshot_mismatches == 0 and d.text == '{"a"'
    d = JsonDeduper()
    for c in ['{"a', '": 1', "}"]:
        d.feed(c)
    assert d.text == '{"a": 1}'
    assert not d.offer_snapshot('{"a": 1}')
    assert not d.offer_snapshot('{"a": 1}')
    assert d.duplicates_dropped == 2
    assert d.offer_snapshot('{"a": 12}')  # a delta was lost: the snapshot wins
    assert d.snapshot_mismatches == 1 and d.text == '{"a": 12}'
    assert not d.offer_snapshot('{"a": 12}')
    assert d.duplicates_dropped == 3


def test_tracker_snapshots():
    t = feed_all(['[{"a": 1}, ', '{"b": 2}]'])
    assert not t.offer_snapshot('[{"a": 1}, {"b": 2}]')
    r = t.finish()
    assert r.duplicates_dropped == 1 and r.objects == [{"a": 1}, {"b": 2}]
    t = feed_all(['[{"a": 1}, ', '{"b": 2'])  # the last delta was lost
    assert t.offer_snapshot('[{"a": 1}, {"b": 2}, {"c": 3}]')
    r = t.finish()
    assert r.snapshot_mismatches == 1 and r.valid and r.objects == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert t.objects_completed == 3  # re-tracked from scratch, not counted twice


def test_responses_api_repeats_are_duplicates():
    """A Responses decoder: deltas fed, every full repeat offered as a snapshot."""
    rec = json.loads((FIXTURES / "openai" / "responses_basic_gpt4o_mini.json").read_text())
    d = JsonDeduper()
    offered = []
    for ev in sse_payloads(rec["response"]["body"]):
        typ = ev.get("type")
        if typ == "response.output_text.delta":
            d.feed(ev["delta"])
        elif typ == "response.output_text.done":
            offered.append(d.offer_snapshot(ev["text"]))
        elif typ == "response.content_part.done":
            offered.append(d.offer_snapshot(ev["part"]["text"]))
        elif typ == "response.output_item.done":
            offered.append(d.offer_snapshot(ev["item"]["content"][0]["text"]))
        elif typ == "response.completed":
            msg = [o for o in ev["response"]["output"] if o["type"] == "message"][0]
            offered.append(d.offer_snapshot(msg["content"][0]["text"]))
    assert offered == [False] * 4
    assert d.duplicates_dropped == 4 and d.snapshot_mismatches == 0


# --- tool-call arguments -------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("", ({}, True)),
    ("  \n", ({}, True)),
    ("{}", ({}, True)),
    ('{"location": "Paris", "n": [1, 2]}', ({"location": "Paris", "n": [1, 2]}, True)),
    ("[1]", ([1], True)),
    ('{"location": "Par', ('{"location": "Par', False)),
    ('{"a": NaN}', ('{"a": NaN}', False)),
    ('{"a": 1} {"b": 2}', ('{"a": 1} {"b": 2}', False)),
])
def test_parse_arguments(raw, expected):
    assert parse_arguments(raw) == expected


def test_module_has_no_opentelemetry_import():
    src = Path(json_stream.__file__).read_text()
    assert "opentelemetry" not in src.replace("OpenTelemetry", "")


# --- property test -------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children,
                                                                      max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 2]),
       data=st.data())
def test_random_documents_cut_into_random_pieces(value, ensure_ascii, indent, data):
    doc = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(doc) - 1)), max_size=30)))
    pieces = [doc[a:b] for a, b in zip([0, *cuts], [*cuts, len(doc)])]
    t = feed_all(pieces)
    r = t.finish()
    assert r.error is None and r.valid and not r.repaired
    assert r.value == value
    assert r.objects == expected_objects(value)
    assert t.objects_completed == len(expected_objects(value))
    assert t.completed_objects() == expected_objects(value)
    assert t.depth == 0


# --- recorded streams ----------------------------------------------------------------------------

def sse_payloads(body: str):
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("data:"):
            data = line[5:].strip()
            if data and data != "[DONE]":
                yield json.loads(data)


def wants_json(rec: dict) -> bool:
    """The request asks for JSON output (feature tags `json_text` = response_format text and
    `json_array_stream` = Gemini's array wire framing are not JSON output)."""
    tags = {f for f in rec.get("features", []) if f.startswith("json_")}
    if tags - {"json_text", "json_array_stream"}:
        return True
    body = (rec.get("request") or {}).get("body") or {}
    fmt = body.get("response_format") or {}
    out = ((body.get("output_config") or {}).get("format") or {})
    text_fmt = ((body.get("text") or {}).get("format") or {})
    gen = body.get("generationConfig") or body.get("generation_config") or {}
    mime = gen.get("responseMimeType") or gen.get("response_mime_type") or ""
    return (fmt.get("type") in ("json_object", "json_schema")
            or out.get("type") == "json_schema"
            or text_fmt.get("type") in ("json_object", "json_schema")
            or mime == "application/json")


def output_deltas(rec: dict) -> tuple[list[str], bool]:
    """Naive assembly of the output text deltas, and whether the output was cut (length)."""
    api, body = rec["api"], rec["response"]["body"]
    deltas, cut = [], False
    if api == "openai.chat.completions":
        for ev in sse_payloads(body):
            for ch in ev.get("choices") or []:
                if ch.get("index", 0) == 0:
                    deltas.append((ch.get("delta") or {}).get("content") or "")
                    cut |= ch.get("finish_reason") == "length"
    elif api == "openai.responses":
        for ev in sse_payloads(body):
            if ev.get("type") == "response.output_text.delta":
                deltas.append(ev["delta"])
            if ev.get("type") == "response.incomplete":
                cut = True
    elif api == "anthropic.messages":
        for ev in sse_payloads(body):
            delta = ev.get("delta") or {}
            if ev.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
                deltas.append(delta["text"])
            cut |= delta.get("stop_reason") == "max_tokens"
    elif api == "google.generate_content_stream":
        events = json.loads(body) if body.lstrip().startswith("[") else list(sse_payloads(body))
        for ev in events:
            cand = (ev.get("candidates") or [{}])[0]
            for part in (cand.get("content") or {}).get("parts") or []:
                if "text" in part and not part.get("thought"):
                    deltas.append(part["text"])
            cut |= cand.get("finishReason") == "MAX_TOKENS"
    else:
        pytest.skip(f"no assembler for {api}")
    return deltas, cut


JSON_RECORDINGS = sorted(
    p for p in FIXTURES.glob("*/*.json")
    if wants_json(json.loads(p.read_text())) and json.loads(p.read_text())["response"]["status"] == 200
)


def test_json_recordings_found():
    names = {p.name for p in JSON_RECORDINGS}
    assert {"chat_json_object_mode.json", "chat_json_schema_structured_output.json",
            "chat_json_schema_max_tokens_length.json", "messages_json_schema_output.json",
            "gemini3_flash_json_schema_output.json"} <= names
    assert "chat_all_client_options.json" not in names  # response_format type=text


@pytest.mark.parametrize("path", JSON_RECORDINGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_json_output(path):
    rec = json.loads(path.read_text())
    deltas, cut = output_deltas(rec)
    t = feed_all(deltas)
    assert t.text == "".join(deltas)
    r = t.finish(truncated=cut)
    text = "".join(deltas)
    assert r.error is None
    if path.name == "chat_json_schema_max_tokens_length.json":
        assert cut and r.truncated and not r.valid and r.repaired
        assert r.value == jiter_partial(text) == {}
        return
    assert r.valid, text
    assert r.value == json.loads(text)
    assert r.objects == expected_objects(r.value) and len(r.objects) >= 1
    assert t.objects_completed == len(r.objects)
    assert not r.truncated
