"""JsonStreamTracker scans on demand: the same answers as a scan at every feed, whatever is read when.

The reference is the tracker itself with its state read after every feed (each read scans what
arrived since the last one, so it scans piece by piece as feeds arrive) and with `finish()`'s
shortcut for one valid document switched off. The tracker under test is only fed, then finished
before anything else is read, so `finish()` takes the shortcut whenever it can.
"""

from __future__ import annotations

import json
import random
from typing import Any, List
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_json_stream import JSON_RECORDINGS, json_values, output_deltas

from steer.processing import json_stream
from steer.processing.json_stream import JsonStreamTracker


def observed(t: JsonStreamTracker) -> tuple:
    """Everything a caller can read from a tracker."""
    return (t.error, t.text, list(t.completed_spans), t.max_depth_seen, t.documents, t.fenced, t.depth,
            t.objects_completed, t.completed_objects(), t.partial())


def per_feed(chunks: List[Any], truncated: bool, **kw: Any) -> tuple:
    t = JsonStreamTracker(**kw)
    for c in chunks:
        t.feed(c)
        t.error  # noqa: B018 - the read scans this piece now
    with mock.patch.object(json_stream, "_whole_document", return_value=None):
        result = t.finish(truncated)
    return result, observed(t)


def on_demand(chunks: List[Any], truncated: bool, **kw: Any) -> tuple:
    t = JsonStreamTracker(**kw)
    for c in chunks:
        t.feed(c)
    result = t.finish(truncated)
    return result, observed(t)


def assert_same(chunks: List[Any], truncated: bool = False, **kw: Any) -> Any:
    expected, got = per_feed(chunks, truncated, **kw), on_demand(chunks, truncated, **kw)
    assert got == expected, chunks
    return got[0]


def cut(text: str, rng: random.Random, max_piece: int = 12) -> List[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, max_piece)
        out.append(text[i:i + n])
        i += n
    return out


@pytest.mark.parametrize("path", JSON_RECORDINGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_json_outputs_any_chunking(path: Any) -> None:
    rec = json.loads(path.read_text())
    deltas, truncated = output_deltas(rec)
    text = "".join(deltas)
    rng = random.Random(path.name)
    for chunks in [deltas, [text], list(text)] + [cut(text, rng) for _ in range(20)]:
        assert_same(chunks, truncated)
        for k in sorted(rng.sample(range(len(text)), min(10, len(text)))):  # cut anywhere
            assert_same(cut(text[:k], rng), True)


def test_one_valid_document_is_not_scanned() -> None:
    """The common case costs one parse at the end: no structural scan at all."""
    docs = ['{"a": [1, {"b": "}"}]}', '\n```json\n[{"x": 1}, 2, {"y": [[]]}]\n```\n', '"a string"',
            "[" + ", ".join(json.dumps({"id": i, "tags": [i, [i]]}) for i in range(100)) + "]"]
    for doc in docs:
        t = JsonStreamTracker()
        for c in cut(doc, random.Random(1)):
            t.feed(c)
        with mock.patch.object(JsonStreamTracker, "_scan", side_effect=AssertionError("scanned")):
            r = t.finish()
        assert r.valid and r.error is None and r.documents == 1
        assert r.value == json.loads(doc.strip().strip("`").removeprefix("json"))
        assert t.objects_completed == len(r.objects)  # state read afterwards: scanned now, same answer


@pytest.mark.parametrize("doc, max_depth", [
    ('{"a": ' + "[" * 70 + "]" * 70 + ', "a": 1}', 64),  # the deep value is dropped by the parse
    ('{"k": {"k": {"k": [1]}, "k": 2}, "z": "[[[[[[[["}', 3),
    ('[{"a": {"b": 1}, "a": 0}]', 2),
    ("[" * 64 + "]" * 64, 64),
    ("[" * 65 + "]" * 65, 64),
    ('{"s": "' + "{[" * 50 + '"}', 2),  # brackets inside a string do not nest
    ('"' + "[" * 100 + '"', 1),
])
def test_depth_bound_with_duplicate_keys_and_brackets_in_strings(doc: str, max_depth: int) -> None:
    for n in (1, 3, len(doc)):
        assert_same([doc[i:i + n] for i in range(0, len(doc), n)], max_depth=max_depth)


@pytest.mark.parametrize("chunks", [
    [" " * 70 + "```json\n{}"],  # a prologue longer than the bound: rejected only if seen unresolved
    ["```json" + " " * 70, "\n{}"],
    ["```" + "j" * 70, "\n{}"],
    ["```" + "j" * 70 + "\n{}"],
    ["``", "`json\n{}", "\n```"],
    ["``{}"], ["`{}`"], ['{"a": 1}`'], ['```json\n{"a": 1}\n`'], ['```\n{"a": 1}\n```\nHope this helps'],
    ['{"a": 1}\n```'], ['{"a": 1}\n{"b": 2}'], ['{"a": 1} x'], ['{"a": 1}}'], ["42"], ["```json\n-1\n```"],
    ["nul", "l  "], ["\u00a0{}\u2028"], ['{"a": "\ud800"}'], ["{}", "\u3000", "``", "`"],
])
def test_framing_edges(chunks: List[str]) -> None:
    assert_same(chunks)
    assert_same(chunks, truncated=True)


def test_errors_before_the_size_bound_stay_first() -> None:
    r = assert_same(['{"a": 1}}', "x" * 200], max_bytes=100)
    assert r.error == "json.invalid"
    r = assert_same(["[" * 70, "x" * 200], max_bytes=100)
    assert r.error == "json.depth_exceeded"
    r = assert_same(['{"a": "', "x" * 200], max_bytes=100)
    assert r.error == "json.size_exceeded"


def test_non_text_piece_after_an_error_is_dropped_as_before() -> None:
    for read in (True, False):
        t = JsonStreamTracker()
        t.feed("Sure: {}")
        if read:
            assert t.error == "json.invalid"
        t.feed(["a", "list"])  # type: ignore[arg-type]  # silently dropped: the stream is already invalid
        assert t.error == "json.invalid"
    t = JsonStreamTracker()
    t.feed("{")
    with pytest.raises(AttributeError):  # no error yet: the piece is rejected, as it always was
        t.feed(["a"])  # type: ignore[arg-type]


def test_hostile_input_stops_at_the_first_bound() -> None:
    for pieces, kw in [(["[" * 4096] * 64, {"max_bytes": 64 * 1024}), (['{"a":' * 1000] * 10, {}),
                       (['{"a": "', "y" * 70_000], {"max_bytes": 65_536})]:
        r = assert_same(pieces, **kw)
        assert r.error in ("json.depth_exceeded", "json.size_exceeded") and not r.valid


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 2]),
       before=st.sampled_from(["", "  \n", "```json\n", "```\n", "\n```JSON ", "```" + " " * 61, "```" + " " * 62,
                               "``"]),
       after=st.sampled_from(["", "\n", "\n```", "```\n", "\n```\nok", " x", '\n{"b": [2]}', "}", "`", "]"]),
       max_depth=st.sampled_from([2, 3, 64]), data=st.data())
def test_random_documents_framings_cuts_and_limits(value: Any, ensure_ascii: bool, indent: Any, before: str,
                                                  after: str, max_depth: int, data: Any) -> None:
    text = before + json.dumps(value, ensure_ascii=ensure_ascii, indent=indent) + after
    if data.draw(st.booleans()):
        text = text[:data.draw(st.integers(0, len(text)))]  # cut short
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=30)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    size = len(text.encode("utf-8", "surrogatepass"))
    max_bytes = data.draw(st.sampled_from([8 * 1024 * 1024, max(1, size), max(1, size // 2)]))
    assert_same(pieces, data.draw(st.booleans()), max_depth=max_depth, max_bytes=max_bytes)
