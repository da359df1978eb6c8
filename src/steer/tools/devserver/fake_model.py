"""The fake model's "thinking": what it answers, independent of any wire format.

Every answer is a pure function of the prompt, the tools and output format the
request asks for, and the knobs (seed, chunk count), so tests can assert exact
text and benchmarks replay identical work. Token counts are crude but stable
(about four characters per token for input, one token per streamed word).
"""

from __future__ import annotations

import functools
import json
import math
import string
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional

from .plan import Knobs

# Common words that are one token each in the usual BPE vocabularies, so the
# reported output_tokens (one per word) is close to what a tokenizer would count.
_VOCAB = (
    "the of and to in is that it for on with as was at by be this are from or have an they which "
    "one you were all we when there can more if out so said what up its about into than them only "
    "other new some could time these two may then first any like now my over such our man me even "
    "most made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still own see "
    "men work long get here between both life being under never day same another know while last "
    "might us great old year off come since against go came right used take three stream token "
    "signal trace span metric chunk model river light cloud stone quiet bright early green"
).split()

# Words that make a request a tool call when the request also offers tools.
TOOL_TRIGGER = "weather"


@dataclass(frozen=True)
class ToolSpec:
    name: str
    schema: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """One assistant turn. Exactly one of text / tool call is the payload.

    `pieces` are the streamed fragments of the text (words, or JSON fragments in
    JSON mode); `tool_pieces` the fragments of the tool call's JSON arguments.
    """

    pieces: list[str]
    tool: Optional[ToolSpec] = None
    tool_args: str = ""
    tool_pieces: list[str] = field(default_factory=list)
    truncated: bool = False  # stopped by the request's output-token limit
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)


_MASK = (1 << 64) - 1
_ALNUM = string.ascii_letters + string.digits


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, stable integer hash. The server makes several
    of these per chunk, where seeding a `random.Random` each time would dominate."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def word(seed: int, i: int) -> str:
    """Word number `i` of the deterministic text for `seed` (also feeds `endless`)."""
    return _VOCAB[_mix(seed * 1_000_003 + i) % len(_VOCAB)]


@functools.lru_cache(maxsize=64)
def _text(seed: int, n: int) -> tuple[str, ...]:
    words = [word(seed, i) for i in range(n)]
    words[0] = words[0].capitalize()
    pieces = [words[0]] + [" " + w for w in words[1:]]
    pieces[-1] += "."
    return tuple(pieces)


def text_pieces(seed: int, n: int) -> list[str]:
    return list(_text(seed, n))


def fragments(text: str, size: int = 5) -> list[str]:
    """Split JSON text into small pieces, as providers stream arguments token by token."""
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def count_tokens(*texts: str) -> int:
    chars = sum(len(t) for t in texts)
    return max(1, math.ceil(chars / 4)) + 3 * len(texts)


def ident(prefix: str, seed: int, salt: int, length: int = 24) -> str:
    """A provider-looking id, unique per request (`salt`) and reproducible."""
    base = _mix((seed << 40) ^ (salt << 8) ^ zlib.crc32(prefix.encode()))
    chars = []
    for k in range(0, length, 10):  # 10 base-62 digits per 64-bit hash
        h = _mix(base + k)
        chars += [_ALNUM[(h >> (6 * j)) % 62] for j in range(10)]
    return prefix + "".join(chars[:length])


def padding(seed: int, salt: int) -> str:
    """OpenAI's `obfuscation` field: random-length filler that hides chunk sizes."""
    h = _mix(seed * 31 + salt)
    return "".join(_ALNUM[(h >> (6 * k)) % 62] for k in range(2 + h % 9))


def _fill(schema: Any, name: str, defs: dict[str, Any], depth: int = 0) -> Any:
    """A plausible value for a JSON schema (enough for tool arguments and JSON mode)."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        return _fill(defs[ref.rsplit("/", 1)[-1]], name, defs, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _fill(schema[key][0], name, defs, depth + 1)
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind).lower() if kind else ("object" if "properties" in schema else "string")
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: _fill(sub, key, defs, depth + 1) for key, sub in props.items()}
    if kind == "array":
        return [_fill(schema.get("items") or {}, name, defs, depth + 1)]
    if kind == "integer":
        return 42
    if kind == "number":
        return 21.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    lowered = name.lower()
    if any(k in lowered for k in ("location", "city", "place")):
        return "Paris, France"
    if "unit" in lowered:
        return "celsius"
    return "example " + lowered if lowered else "example"


def fill_schema(schema: Optional[dict[str, Any]]) -> Any:
    schema = schema or {}
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _fill(schema, "", defs)


def answer(
    prompt: str,
    knobs: Knobs,
    *,
    tools: Optional[list[ToolSpec]] = None,
    json_mode: bool = False,
    json_schema: Optional[dict[str, Any]] = None,
    max_tokens: Optional[int] = None,
    context: str = "",
) -> Answer:
    """Decide the answer: a tool call when tools are offered and the prompt mentions
    the weather, a JSON document in JSON mode, otherwise `knobs.chunks` words."""
    input_tokens = count_tokens(prompt, context) if context else count_tokens(prompt)
    if tools and TOOL_TRIGGER in prompt.lower():
        tool = tools[0]
        args = json.dumps(fill_schema(tool.schema), separators=(",", ":"))
        return Answer(pieces=[], tool=tool, tool_args=args, tool_pieces=fragments(args),
                      input_tokens=input_tokens, output_tokens=count_tokens(tool.name, args))
    if json_mode or json_schema:
        doc = fill_schema(json_schema) if json_schema else {
            "answer": "".join(text_pieces(knobs.seed, min(knobs.chunks, 8))), "confidence": 0.9}
        pieces = fragments(json.dumps(doc, separators=(",", ":")))
        return Answer(pieces=pieces, input_tokens=input_tokens, output_tokens=len(pieces))
    pieces = text_pieces(knobs.seed, knobs.chunks)
    truncated = max_tokens is not None and 0 < max_tokens < len(pieces)
    if truncated:
        pieces = pieces[:max_tokens]
    return Answer(pieces=pieces, truncated=truncated, input_tokens=input_tokens,
                  output_tokens=len(pieces))
