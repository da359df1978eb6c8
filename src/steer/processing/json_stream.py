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
_MAX_PROLOGUE = 64  # characters of whitespace + fence before the document
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


def _after_scan(name: str, doc: str) -> Any:
    """A read-only attribute of JsonStreamTracker that first scans the text not yet scanned."""
    def get(self: "JsonStreamTracker") -> Any:
        self._sync()
        return getattr(self, name)
    return property(get, doc=doc)


class JsonStreamTracker(JsonDeduper):
    """Follows one JSON text stream; each counted object is known once, as it closes.

    Counted (`objects_completed`, `completed_spans` = [start, end) offsets into `text`): the
    top-level value if it is an object, and each object element of a top-level array; deeper
    objects are part of their parent. Leading whitespace and one opening ```json fence are skipped
    (models in JSON mode do send them). After the top-level value: whitespace is ignored; a
    backtick (closing fence) ends tracking; `{`, `[` or `"` starts a further document (JSON Lines:
    its objects count, but the result is not `valid` and `value` is the first document); other
    text is trailing garbage (not valid; tracking stops). A bare top-level number or literal is
    only checked at `finish()`. Errors (the first sticks; the text is kept up to the offending
    character, later feeds are dropped): deeper than `max_depth` -> json.depth_exceeded; over
    `max_bytes` UTF-8 bytes -> json.size_exceeded; an unmatched closer or a non-JSON start ->
    json.invalid.

    On demand (docs/design-decisions.md, "JSON tracked incrementally, on demand"): `feed()` only
    checks the size bound and keeps the piece, since nothing in steer reads the structure
    mid-stream. The structural scan runs when something asks (the attributes below, `text`,
    `partial()`, `completed_objects()`), over the pieces not scanned yet, each as it was fed, so
    every answer is the one a scan at every feed gives. `finish()` skips the scan when the text is
    one valid document. Memory: the pieces held are bounded by `max_bytes`, checked at every feed.
    """

    __slots__ = ("max_depth", "max_bytes", "_error", "_depth_seen", "_spans", "_documents", "_fenced",
                 "_len", "_bytes", "_stack", "_phase", "_in_str", "_esc", "_pre", "_start", "_doc_end",
                 "_cand", "_extra", "_parsed", "_scanned")

    def __init__(self, max_depth: int = 64, max_bytes: int = 8 * 1024 * 1024) -> None:
        super().__init__()
        self.max_depth, self.max_bytes = max_depth, max_bytes
        self._reset()

    def _reset(self) -> None:
        self._error: str | None = None
        self._depth_seen = self._documents = self._len = self._bytes = self._cand = self._scanned = 0
        self._spans: list[tuple[int, int]] = []
        self._parts: list[str] = []  # offsets are in characters, limits in UTF-8 bytes
        self._stack: list[str] = []
        self._phase = _PRE
        self._fenced = self._in_str = self._esc = self._extra = False
        self._pre = ""  # unresolved prologue: whitespace or a fence still arriving
        self._start: int | None = None  # offset of the first document
        self._doc_end: int | None = None  # offset just past the first document
        self._parsed: list[Any] = []  # cache of completed_spans parses

    # Mid-stream state: each read first scans what arrived since the last one.
    error = _after_scan("_error", "json.depth_exceeded / json.size_exceeded / json.invalid, or None")
    max_depth_seen = _after_scan("_depth_seen", "deepest nesting scanned")
    completed_spans = _after_scan("_spans", "[start, end) of each counted object, in closing order")
    documents = _after_scan("_documents", "top-level values seen")
    fenced = _after_scan("_fenced", "the document came inside a markdown code fence")
    depth = property(lambda self: self._sync() or len(self._stack), doc="current nesting depth")
    objects_completed = property(lambda self: len(self.completed_spans), doc="counted objects")

    @property
    def text(self) -> str:
        self._sync()  # an error truncates the text, and joining forgets where the pieces were cut
        text = JsonDeduper.text.fget(self)  # type: ignore[attr-defined]
        self._scanned = len(self._parts)
        return text

    def feed(self, text: str) -> None:
        # Hot path (every text delta in JSON mode): the size bound, and keep the piece. O(1).
        if self._error is not None or not text:
            return
        try:
            size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        except AttributeError:  # not text: dropped silently only after an error, as a per-feed scan did
            self._sync()
            if self._error is not None:
                return
            raise
        if self._bytes + size > self.max_bytes:
            self._sync()  # an error earlier in the text stays the error, as when scanned per feed
            if self._error is None:
                self._error = SIZE_EXCEEDED
            return
        self._bytes += size
        self._parts.append(text)

    def _sync(self) -> None:
        """Scan the pieces fed since the last scan, one by one (the prologue's bound depends on where
        pieces were cut); on an error, keep the text up to the offending character and drop the rest."""
        parts = self._parts
        k = self._scanned
        while k < len(parts) and self._phase != _DONE:
            piece = parts[k]
            keep = self._scan(piece, self._len)
            self._len += keep
            k += 1
            if self._error is not None:
                parts[k - 1] = piece[:keep]
                del parts[k:]
        self._scanned = len(parts)  # after the top-level value ends (_DONE) nothing is scanned

    def _scan(self, s: str, base: int) -> int:
        """Scan one piece; return how much of it to keep (all of it unless an error is set)."""
        i, n, stack = 0, len(s), self._stack
        if self._phase == _PRE:
            i = self._prologue(s)  # len(s) when there is nothing (more) to scan
            if self._error is not None:
                return 0
        while i < n:
            if self._in_str:
                if self._esc:  # the escaped character is the first one of this piece
                    self._esc, i = False, i + 1
                i = _STRING_BODY.match(s, i).end()
                if i >= n:
                    return n
                if s[i] == "\\":  # lone backslash at the end of the piece
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
                    self._extra = self._extra or c != "`" or not self._fenced
                    self._phase = _DONE
                    return n
                self._phase, self._extra = _IN, True  # a further document, or a stray closer
                self._documents += c in '{["'  # (which the closer branch below rejects)
            m = _STRUCTURAL.search(s, i)
            if m is None:
                return n
            c, i = m.group(), m.end()
            if c == '"':
                self._in_str = True
            elif c == "{" or c == "[":
                if len(stack) >= self.max_depth:
                    self._error = DEPTH_EXCEEDED
                    return i - 1
                if c == "{" and (not stack or stack == ["["]):  # a counted object: "O"
                    c, self._cand = "O", base + i - 1
                stack.append(c)
                self._depth_seen = max(self._depth_seen, len(stack))
            else:
                if not stack or stack[-1] not in ("{O" if c == "}" else "["):
                    self._error = INVALID
                    return i - 1
                if stack.pop() == "O":
                    self._spans.append((self._cand, base + i))
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
            if len(self._pre) > _MAX_PROLOGUE:  # far longer than any fence line
                self._error = INVALID
            return len(s)
        i = j - len(self._pre)  # index in s; negative only when a stray backtick starts `rest`
        if i < 0 or not (rest[0] in '{["' or rest[0] in "-0123456789tfn"):
            self._error = INVALID
            return len(s)
        self._fenced, self._pre = "`" in pre[:j], ""
        self._start, self._documents = self._len + i, 1
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
            doc = doc[:-3] if self._fenced and doc.endswith("```") else doc
        return doc

    def partial(self) -> Any:
        """The first document as it stands, closed up by jiter; None before it starts."""
        doc = None if self.error is not None else self._document()
        return None if doc is None else _parse(doc, partial=True)

    def completed_objects(self) -> list[Any]:
        """Counted objects parsed, in closing order; each span is parsed once, then cached."""
        spans = self.completed_spans
        if len(self._parsed) < len(spans):
            text = self.text
            for a, b in spans[len(self._parsed):]:
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
        whole = None if self._error is not None else _whole_document("".join(self._parts), self.max_depth)
        if whole is not None:  # the common case, known without the structural scan
            v, fenced = whole
            return JsonResult(v, _counted(v), True, False, truncated, None, self.duplicates_dropped,
                              self.snapshot_mismatches, 1, fenced)
        self._sync()
        result = JsonResult(None, [], False, False, truncated, self._error, self.duplicates_dropped,
                            self.snapshot_mismatches, self._documents, self._fenced)
        doc = None if self._error is not None else self._document()
        if doc is not None:
            try:
                v = result.value = _parse(doc)
                if not self._extra:  # one valid document: its objects come from this parse
                    result.valid, result.objects = True, _counted(v)
                    return result
            except ValueError:
                result.value = _parse(doc, partial=True)
                result.repaired = result.value is not None
        result.objects = self.completed_objects()
        return result


def _counted(v: Any) -> list[Any]:
    """The counted objects of one parsed document: itself if an object, or its object elements."""
    if isinstance(v, list):
        return [e for e in v if isinstance(e, dict)]
    return [v] if isinstance(v, dict) else []


def _whole_document(text: str, max_depth: int) -> tuple[Any, bool] | None:
    """(value, fenced) when `text` is exactly what the scan would call one valid document: an
    object, array or string after whitespace and an optional opening fence (a prologue of at most
    _MAX_PROLOGUE characters), then only whitespace and, when fenced, a closing ```; nested at most
    `max_depth` deep. None in every other case (the caller then scans)."""
    j = _LEAD.match(text).end()
    if j == len(text) or text[j] not in '{["' or len(text[:j].lstrip()) > _MAX_PROLOGUE:
        return None  # (a prologue that short was never long enough to be rejected, however cut)
    fenced = "`" in text[:j]
    doc = text[j:].rstrip()
    if doc.endswith("`"):  # the value itself cannot end with one: a closing fence, or not ours
        if not (fenced and doc.endswith("```")):
            return None
        doc = doc[:-3].rstrip()
    try:
        v = _parse(doc)
    except ValueError:
        return None
    if not _within_depth(v, doc, max_depth):
        return None
    return v, fenced


_CONTAINERS = {dict, list}


def _within_depth(v: Any, doc: str, limit: int) -> bool:
    """Whether the scan would stay within `limit`: nesting depth of the parsed value, level by level.
    A duplicate key drops a value from the parse (which may have been deeper): when the containers
    found are fewer than the brackets in the text (the rest may sit in strings), the parse is
    redone refusing duplicate keys."""
    openers = doc.count("{") + doc.count("[")
    if openers <= limit:
        return True  # it cannot nest deeper than it has brackets
    level, depth, found = [v] if type(v) in _CONTAINERS else [], 0, 0
    while level:
        depth += 1
        if depth > limit:
            return False
        found += len(level)
        level = [x for c in level for x in (c.values() if type(c) is dict else c) if type(x) in _CONTAINERS]
    if found == openers:
        return True
    try:
        jiter.from_json(doc.encode("utf-8", "surrogatepass"), allow_inf_nan=False, catch_duplicate_keys=True)
    except ValueError:  # duplicate keys: let the scan decide
        return False
    return True


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
