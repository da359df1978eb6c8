"""Hypothesis strategies for the fuzz tests: random bodies, and recorded bodies mutated the ways real
streams break (events dropped, repeated, reordered; garbage and foreign events spliced in; fields
deleted, retyped or blown up; the body cut anywhere), read in arbitrary pieces."""

from __future__ import annotations

import json
from typing import Any, Dict, List

from hypothesis import strategies as st

from recordings import all_recordings

RECORDINGS: List[Dict[str, Any]] = [r for r in all_recordings() if r["response"]["status"] == 200]
SSE_RECORDINGS = [r for r in RECORDINGS if r["response"]["body"].lstrip().startswith(("data:", "event:", ":"))]

GARBAGE = [
    "garbage without a colon\n\n", ": a comment\n\n", "event: steer.unknown\ndata: {}\n\n", "data: [DONE]\n\n",
    "data: not json\n\n", "data: {\"invalid\": json,\n\n", "retry: 10\nid: 7\n\n", "data: {}\n\n", "data: []\n\n",
    "data: null\n\n", "data: 1e999\n\n", "\ufeffdata: {}\n\n", "event: error\ndata: {\"type\": \"error\", \"error\": "
    "{\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
    "data: {\"error\": {\"message\": \"boom\", \"type\": \"server_error\", \"code\": 500}}\n\n",
    "data: " + "[" * 5000 + "\n\n", "data: {\"choices\": [{\"index\": 99999, \"delta\": {\"content\": \"x\"}}]}\n\n",
]
JUNK = [None, 0, -1, 2**70, 1.5, float("1e300"), "", "x", "\x00\ud7ff", "\u65e5" * 3, [], {}, True, [None], {"type": None},
        "x" * 10_000, [[[[[]]]]], {"index": "0"}, -2**63, "lone \ud800 surrogate", -2**64, "12"]


def split_events(body: str) -> List[str]:
    """SSE body -> blocks, each keeping its blank-line separator (so joining gives the body back)."""
    sep = "\r\n\r\n" if "\r\n\r\n" in body else "\n\n"
    parts = body.split(sep)
    return [p + sep for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


@st.composite
def mutated_value(draw: Any, value: Any, depth: int = 0) -> Any:
    """The value with one thing changed somewhere inside it."""
    if isinstance(value, dict) and value and depth < 8 and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value)))
        out = dict(value)
        op = draw(st.sampled_from(["descend", "descend", "delete", "replace", "add"]))
        if op == "descend":
            out[key] = draw(mutated_value(value[key], depth + 1))
        elif op == "delete":
            del out[key]
        elif op == "replace":
            out[key] = draw(st.sampled_from(JUNK))
        else:
            out[draw(st.sampled_from(["type", "index", "usage", "delta", "error", "x_unknown"]))] = draw(st.sampled_from(JUNK))
        return out
    if isinstance(value, list) and value and depth < 8 and draw(st.integers(0, 3)):
        i = draw(st.integers(0, len(value) - 1))
        out_l = list(value)
        op = draw(st.sampled_from(["descend", "descend", "delete", "duplicate"]))
        if op == "descend":
            out_l[i] = draw(mutated_value(value[i], depth + 1))
        elif op == "delete":
            del out_l[i]
        else:
            out_l.insert(i, value[i])
        return out_l
    return draw(st.sampled_from(JUNK))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@st.composite
def mutated_json_block(draw: Any, block: str) -> str:
    """An SSE block whose data JSON is mutated (blocks whose data is not JSON come back unchanged)."""
    lines = block.split("\n")
    for k, line in enumerate(lines):
        if line.startswith("data:"):
            try:
                value = json.loads(line[5:])
            except (ValueError, RecursionError):  # not JSON, or nested past the parser's recursion limit
                return block
            changed = draw(mutated_value(value))
            text = json.dumps(changed, ensure_ascii=draw(st.booleans()))
            if not text.isascii() and not _utf8(text):
                text = json.dumps(changed)  # a lone surrogate travels as JSON's escape; raw, it is no UTF-8
            lines[k] = "data: " + text
            return "\n".join(lines)
    return block


@st.composite
def mutated_body(draw: Any, recording: Dict[str, Any]) -> bytes:
    body: str = recording["response"]["body"]
    if not body.lstrip().startswith(("data:", "event:", ":")):  # a JSON (array) body: byte-level only
        return draw(byte_mutations(body.encode()))
    blocks = split_events(body)
    for _ in range(draw(st.integers(1, 4))):
        if not blocks:
            break
        op = draw(st.sampled_from(["json", "json", "json", "drop", "duplicate", "swap", "garbage", "truncate"]))
        i = draw(st.integers(0, len(blocks) - 1))
        if op == "json":
            blocks[i] = draw(mutated_json_block(blocks[i]))
        elif op == "drop":
            del blocks[i]
        elif op == "duplicate":
            blocks.insert(i, blocks[i])
        elif op == "swap":
            j = draw(st.integers(0, len(blocks) - 1))
            blocks[i], blocks[j] = blocks[j], blocks[i]
        elif op == "garbage":
            blocks.insert(i, draw(st.sampled_from(GARBAGE)))
        else:
            text = "".join(blocks)
            return text[: draw(st.integers(0, len(text)))].encode()
    return "".join(blocks).encode()


@st.composite
def byte_mutations(draw: Any, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "crlf"]))
        if op == "flip" and pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b"\n\n", b"\xe6\x97"]))
    return bytes(data)


@st.composite
def pieces(draw: Any, body: bytes) -> List[bytes]:
    """The body cut at arbitrary points (inside CRLF pairs and UTF-8 characters included)."""
    if not body:
        return [b""]
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=24))))
    bounds = [0, *cuts, len(body)]
    return [body[a:b] for a, b in zip(bounds, bounds[1:])]


any_recording = st.sampled_from(RECORDINGS)
sse_recording = st.sampled_from(SSE_RECORDINGS)
