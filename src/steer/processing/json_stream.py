"""Streamed JSON output: join, de-duplicate, validate, repair (no OpenTelemetry here).

The tracker follows structure only (container stack, strings, escapes); the grammar is checked
once, by a real parser, at `finish()`. Partial reads and repair use jiter's partial mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jiter

__all__ = ["JsonDeduper", "JsonResult", "JsonStreamTracker", "parse_arguments"]

DEPTH_EXCEEDED, SIZE_EXCEEDED, INVALID = "json.depth_exceeded", "json.size_exceeded", "json.invalid"

# One regex call skips a whole string body, escapes included, so per-character work runs in C.
# A lone backslash at the end of a chunk stops the match just before it (escape carried over);
# the hex digits of a split \uXXXX need no state, as they cannot be `"` or `\`.
_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.S)
_STRUCTURAL = re.compile(r'[{}\[\]"]')
_NON_WS = re.compile(r"\S")
_LEAD = re.compile(r"\s*(?:```[\w.+-]*\s*)?")  # leading whitespace + optional opening fence
_PRE, _IN, _POST, _DONE = range(4)
_BAD = object()


def _parse(text: str, partial: bool = False) -> Any:
    """One parser for checks and repair, so they agree: jiter, strict (no NaN/Infinity).
    `partial` closes open strings/containers, drops a dangling key or trailing comma (else None)."""
    data = text.encode("utf-8", "surrogatepass")
    if not partial:
        return jiter.from_json(data, allow_inf_nan=False)  # ValueError also past depth ~200
    try:
        return jiter.from_json(data, allow_inf_nan=False, partial_mode="trailing-strings")
    except ValueError:
        return None


@dataclass(slots=True)
class JsonResult:
    value: Any  # the parsed (or repaired) first document; None when there is none
    objects: list[Any]  # counted objects (see JsonStreamTracker), each once, in closing order
    valid: bool  # the document is exactly one strict JSON value (a markdown fence is allowed)
    repaired: bool  # it did not parse, but jiter's partial mode produced `value`
    truncated: bool  # the caller said the stream was cut (finish reason `length`)
    error: str | None = None  # json.depth_exceeded / json.size_exceeded / json.invalid
    duplicates_dropped: int = 0  # snapshots identical to the text already assembled
    snapshot_mismatches: int = 0  # snapshots that differed and replaced the assembled text
    documents: int = 0  # top-level values seen; >1 means concatenated values / JSON Lines
    fenced: bool = False  # the document came inside a markdown code fence


class JsonDeduper:
    """Assembles one output (any text, or one call's arguments) and spots full re-sends.

    A decoder calls `feed(delta)` per delta, then `offer_snapshot(full)` for each event repeating
    the whole output (Responses: output_text.done, content_part.done, output_item.done, completed).
    False: a duplicate (counted), drop it. True: new (nothing assembled yet, or it differs: a
    mismatch is counted); the snapshot wins and `text` now holds it."""

    __slots__ = ("_parts", "duplicates_dropped", "snapshot_mismatches")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.duplicates_dropped = self.snapshot_mismatches = 0

    @property
    def text(self) -> str:
        if len(self._parts) > 1:  # join once and keep the result, so repeated reads do not re-join
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def feed(self, text: str) -> None:
        if text:
            self._parts.append(text)

    def offer_snapshot(self, text: str) -> bool:
        current = self.text
        if current and text == current:
            self.duplicates_dropped += 1
            return False
        self.snapshot_mismatches += bool(current)
        self._restart(text)
        return True

    def _restart(self, text: str) -> None:
        self._parts = [text] if text else []


class JsonStreamTracker(JsonDeduper):
    """Follows one JSON text stream; each counted object is known once, as it closes.

    Counted (`objects_completed`, `completed_spans` = [start, end) offsets into `text`): the
    top-level value if it is an object, and each object element of a top-level array; deeper
    objects are part of their parent. Leading whitespace and one opening ```json fence are skipped
    (models in JSON mode do send them). After the top-level value: whitespace is ignored; a
    backtick (closing fence) ends tracking; `{`, `[` or `"` starts a further document (JSON Lines:
    its objects count, but the result is not `valid` and `value` is the first document); other
    text is trailing garbage (not valid; tracking stops). A bare top-level number or literal is
    only checked at `finish()`. Errors (the first sticks; later feeds are dropped, so neither
    buffer nor stack grows): deeper than `max_depth` -> json.depth_exceeded; over `max_bytes`
    UTF-8 bytes -> json.size_exceeded; an unmatched closer or a non-JSON start -> json.invalid.
    """

    __slots__ = ("max_depth", "max_bytes", "error", "max_depth_seen", "completed_spans",
                 "documents", "fenced", "_len", "_bytes", "_stack", "_phase", "_in_str", "_esc",
                 "_pre", "_start", "_doc_end", "_cand", "_extra", "_parsed")

    def __init__(self, max_depth: int = 64, max_bytes: int = 8 * 1024 * 1024) -> None:
        super().__init__()
        self.max_depth, self.max_bytes = max_depth, max_bytes
        self._reset()

    def _reset(self) -> None:
        self.error: str | None = None
        self.max_depth_seen = self.documents = self._len = self._bytes = self._cand = 0
        self.completed_spans: list[tuple[int, int]] = []
        self._parts: list[str] = []  # offsets are in characters, limits in UTF-8 bytes
        self._stack: list[str] = []
        self._phase = _PRE
        self.fenced = self._in_str = self._esc = self._extra = False
        self._pre = ""  # unresolved prologue: whitespace or a fence still arriving
        self._start: int | None = None  # offset of the first document
        self._doc_end: int | None = None  # offset just past the first document
        self._parsed: list[Any] = []  # cache of completed_spans parses

    depth = property(lambda self: len(self._stack), doc="current nesting depth")
    objects_completed = property(lambda self: len(self.completed_spans), doc="counted objects")

    def feed(self, text: str) -> None:
        if self.error is not None or not text:
            return
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if self._bytes + size > self.max_bytes:
            self.error = SIZE_EXCEEDED
            return
        self._bytes += size
        if self._phase != _DONE:
            keep = self._scan(text, self._len)
            text = text[:keep]  # on an error: up to the offending character, whatever the chunking
        self._parts.append(text)
        self._len += len(text)

    def _scan(self, s: str, base: int) -> int:
        """Scan a new chunk; return how much of it to keep (all of it unless an error is set)."""
        i, n, stack = 0, len(s), self._stack
        if self._phase == _PRE:
            i = self._prologue(s)  # len(s) when there is nothing (more) to scan
            if self.error is not None:
                return 0
        while i < n:
            if self._in_str:
                if self._esc:  # the escaped character is the first one of this chunk
                    self._esc, i = False, i + 1
                i = _STRING_BODY.match(s, i).end()
                if i >= n:
                    return n
                if s[i] == "\\":  # lone backslash at the end of the chunk
                    self._esc = True
                    return n
                self._in_str, i = False, i + 1  # s[i] was the closing quote
                if not stack:
                    self._top_closed(base + i)
                continue
            if self._phase == _POST:
                m = _NON_WS.search(s, i)
                if m is None:
                    return n
                c, i = m.group(), m.start()
                if c not in '{["}]':  # closing fence, or trailing garbage: stop tracking
                    self._extra = self._extra or c != "`" or not self.fenced
                    self._phase = _DONE
                    return n
                self._phase, self._extra = _IN, True  # a further document, or a stray closer
                self.documents += c in '{["'  # (which the closer branch below rejects)
            m = _STRUCTURAL.search(s, i)
            if m is None:
                return n
            c, i = m.group(), m.end()
            if c == '"':
                self._in_str = True
            elif c == "{" or c == "[":
                if len(stack) >= self.max_depth:
                    self.error = DEPTH_EXCEEDED
                    return i - 1
                if c == "{" and (not stack or stack == ["["]):  # a counted object: "O"
                    c, self._cand = "O", base + i - 1
                stack.append(c)
                self.max_depth_seen = max(self.max_depth_seen, len(stack))
            else:
                if not stack or stack[-1] not in ("{O" if c == "}" else "["):
                    self.error = INVALID
                    return i - 1
                if stack.pop() == "O":
                    self.completed_spans.append((self._cand, base + i))
                if not stack:
                    self._top_closed(base + i)
        return n

    def _prologue(self, s: str) -> int:
        """Skip whitespace and an opening fence; return where the document starts in `s`."""
        pre = self._pre + s
        j = _LEAD.match(pre).end()
        rest = pre[j:]
        if not rest or "```".startswith(rest):  # nothing decisive yet
            self._pre = pre.lstrip()
            if len(self._pre) > 64:  # far longer than any fence line
                self.error = INVALID
            return len(s)
        i = j - len(self._pre)  # index in s; negative only when a stray backtick starts `rest`
        if i < 0 or not (rest[0] in '{["' or rest[0] in "-0123456789tfn"):
            self.error = INVALID
            return len(s)
        self.fenced, self._pre = "`" in pre[:j], ""
        self._start, self.documents = self._len + i, 1
        self._phase = _IN if rest[0] in '{["' else _DONE  # bare numbers/literals: finish() checks
        return i if self._phase == _IN else len(s)

    def _top_closed(self, end: int) -> None:
        self._doc_end, self._phase = end if self._doc_end is None else self._doc_end, _POST

    def _document(self) -> str | None:
        if self._start is None:
            return None
        if self._doc_end is not None:
            return self.text[self._start:self._doc_end]
        doc = self.text[self._start:]  # still open: never strip, " \u2028" may be in a string
        if self._phase == _DONE:  # a bare number or literal, maybe fenced
            doc = doc.rstrip()
            doc = doc[:-3] if self.fenced and doc.endswith("```") else doc
        return doc

    def partial(self) -> Any:
        """The first document as it stands, closed up by jiter; None before it starts."""
        doc = None if self.error is not None else self._document()
        return None if doc is None else _parse(doc, partial=True)

    def completed_objects(self) -> list[Any]:
        """Counted objects parsed, in closing order; each span is parsed once, then cached."""
        if len(self._parsed) < len(self.completed_spans):
            text = self.text
            for a, b in self.completed_spans[len(self._parsed):]:
                try:
                    self._parsed.append(_parse(text[a:b]))
                except ValueError:  # balanced, yet not JSON: left out
                    self._parsed.append(_BAD)
        return [o for o in self._parsed if o is not _BAD]

    def offer_snapshot(self, text: str) -> bool:
        # After an error the buffer is incomplete and cannot be compared: the snapshot is ignored.
        return self.error is None and super().offer_snapshot(text)

    def _restart(self, text: str) -> None:  # a differing snapshot is re-tracked from scratch
        self._reset()
        self.feed(text)

    def finish(self, truncated: bool = False) -> JsonResult:
        """Parse the document once. Valid single document: objects come from that parse;
        otherwise jiter repairs what it can and objects come from the completed spans."""
        result = JsonResult(None, [], False, False, truncated, self.error, self.duplicates_dropped,
                            self.snapshot_mismatches, self.documents, self.fenced)
        doc = None if self.error is not None else self._document()
        if doc is not None:
            try:
                v = result.value = _parse(doc)
                if not self._extra:  # one valid document: its objects come from this parse
                    result.valid, result.objects = True, (
                        [v] if isinstance(v, dict) else
                        [e for e in v if isinstance(e, dict)] if isinstance(v, list) else [])
                    return result
            except ValueError:
                result.value = _parse(doc, partial=True)
                result.repaired = result.value is not None
        result.objects = self.completed_objects()
        return result


def parse_arguments(raw: str) -> tuple[Any, bool]:
    """Joined tool-call arguments -> (value, valid), parsed once; not JSON -> (raw, False).
    Empty/whitespace -> ({}, True), as Anthropic's MessageStream keeps content_block_start's `{}`
    when no (or only empty) input_json_delta arrives (OpenAI's SDK raises on "" for strict tools)."""
    if not raw or raw.isspace():
        return {}, True
    try:
        return _parse(raw), True
    except ValueError:
        return raw, False
