"""Raw HTTP bodies -> the parsed JSON events the provider decoders read, sans-IO.

An application calling a provider's HTTP API directly (httpx, httpx-sse) gets the same decoding as
the SDKs: this module frames the bytes it reads — Server-Sent Events, or Gemini's streamed JSON array
(no ``alt=sse``), or one JSON document — into JSON values, handed to the provider's decoder through
``AttrView``. It never changes the bytes the application reads: it only sees a copy.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any, List, Optional, Tuple

from steer.providers.base import view
from steer.sse import SSEDecoder

Frame = Tuple[str, Any]  # (SSE event name or "", the parsed JSON value seen through AttrView)

# The most steer holds for one frame (an SSE event, one element of a JSON array). Far above any
# real frame (a Gemini inline image is a few MB), so only a hostile or broken body reaches it: that
# frame is dropped and counted in `bad`, and memory stays bounded whatever the server sends.
MAX_FRAME_CHARS = 32 * 1024 * 1024
# json.loads raises RecursionError (not ValueError) on deeply nested input: both mean "not a frame".
_NOT_JSON = (ValueError, RecursionError)
_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.S)  # up to a closing quote or a lone trailing backslash
_STRUCTURAL = re.compile(r'"|[{\[]+|[}\]]+')


# Events after which a provider sends nothing more that matters: a reader that closes the response
# once one arrived read the whole answer (``complete``, not ``closed_early``).
TERMINAL_EVENTS = frozenset({"message_stop", "response.completed", "response.failed", "response.incomplete"})
# Events the SDKs read past without handing the caller anything: not chunks (keep-alive comments
# never become events at all).
NOT_CHUNKS = frozenset({"ping"})


class SSEFrames:
    """SSE bytes -> JSON frames. ``[DONE]`` ends nothing by itself; data that is not a JSON object is
    counted. ``done``: the stream's terminal event arrived (``[DONE]`` or ``TERMINAL_EVENTS``)."""

    __slots__ = ("_sse", "_bad", "done")

    def __init__(self, max_chars: int = MAX_FRAME_CHARS) -> None:
        self._sse = SSEDecoder(max_event_chars=max_chars)
        self._bad = 0
        self.done = False  # `data: [DONE]` or a terminal event seen: the stream reached its end marker

    @property
    def bad(self) -> int:
        """Frames that were not JSON, plus events dropped for outgrowing the cap."""
        return self._bad + self._sse.dropped

    def feed(self, data: bytes) -> List[Frame]:
        return self._frames(self._sse.feed(data))

    def flush(self) -> List[Frame]:
        return self._frames(self._sse.flush())

    def _frames(self, events: Any) -> List[Frame]:
        out: List[Frame] = []
        for event in events:
            text = event.data
            if not text:
                continue
            if text.startswith("[DONE]"):
                self.done = True
                continue
            name = event.event if event.event != "message" else ""
            if name in NOT_CHUNKS:
                continue
            if name in TERMINAL_EVENTS:
                self.done = True
            try:
                value = json.loads(text)
            except _NOT_JSON:
                self._bad += 1
                continue
            if type(value) is not dict:  # `data: null`, a number, a list: no provider frame looks like that
                self._bad += 1
                continue
            if name == "error" and isinstance(value, dict) and "type" not in value:
                value = {"type": "error", **value}
            out.append((name, view(value)))
        return out


class JsonArrayFrames:
    """A streamed top-level JSON array (Gemini without ``alt=sse``): each element as it closes.

    Scans only new text for the element boundaries (depth, strings, escapes; string bodies are
    skipped by one regex call, so per-character work runs in C); an element is parsed once, when its
    closing brace arrives. Bytes are decoded incrementally, so a UTF-8 character split between two
    reads stays whole. Only the open element is kept (as pieces, joined once), at most ``max_chars``
    of it: a larger one is scanned through, dropped and counted in ``bad``.
    """

    __slots__ = ("_utf8", "_parts", "_size", "_depth", "_in_string", "_escape", "_open", "_dropping", "_max", "bad", "done")

    def __init__(self, max_chars: int = MAX_FRAME_CHARS) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: List[str] = []  # text of the element being read
        self._size = 0
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._open = False  # inside an element (an object at depth 2)
        self._dropping = False  # the open element outgrew max_chars: scanned, not kept
        self._max = max_chars
        self.bad = 0
        self.done = False  # the top-level array closed: the whole answer arrived

    def feed(self, data: bytes) -> List[Frame]:
        text = self._utf8.decode(data)
        out: List[Frame] = []
        i, n = 0, len(text)
        start = 0  # where the open element's text begins in `text`
        while i < n:
            if self._in_string:
                if self._escape:  # the escaped character opens this piece
                    self._escape, i = False, i + 1
                    continue
                i = _STRING_BODY.match(text, i).end()  # type: ignore[union-attr]
                if i >= n:
                    break
                if text[i] == "\\":  # a lone backslash ends the piece: its escape is carried over
                    self._escape, i = True, n
                    break
                self._in_string, i = False, i + 1
                continue
            m = _STRUCTURAL.search(text, i)  # a quote, or a run of openers, or a run of closers
            if m is None:
                break
            run, i = m.group(), m.end()
            d = self._depth
            if run == '"':
                self._in_string = True
            elif run[0] in "{[":  # a run costs one step however deep it nests (hostile input)
                self._depth = d + len(run)
                if d < 2 <= self._depth and run[1 - d] == "{":  # the opener reaching depth 2
                    self._open, start = True, m.start() + 1 - d
                    self._parts, self._size, self._dropping = [], 0, False
            else:
                self._depth = d - len(run)
                if self._depth <= 0 < d:
                    self.done = True
                if self._open and d >= 2 > self._depth:  # the closer back to depth 1 ends the element
                    self._open, end = False, m.start() + d - 1
                    if self._keep(text[start:end]):
                        self._emit("".join(self._parts), out)
                    else:
                        self.bad += 1
                    self._parts = []
        if self._open:
            self._keep(text[start:])
        return out

    def _keep(self, piece: str) -> bool:
        if not self._dropping:
            self._size += len(piece)
            if self._size <= self._max:
                self._parts.append(piece)
            else:
                self._dropping, self._parts = True, []
        return not self._dropping

    def flush(self) -> List[Frame]:
        return []

    def _emit(self, text: str, out: List[Frame]) -> None:
        try:
            out.append(("", view(json.loads(text))))
        except _NOT_JSON:
            self.bad += 1


class WholeJson:
    """A non-streaming JSON body: one frame at the end."""

    __slots__ = ("_parts", "bad")

    def __init__(self) -> None:
        self._parts: List[bytes] = []
        self.bad = 0

    def feed(self, data: bytes) -> List[Frame]:
        self._parts.append(data)
        return []

    def flush(self) -> List[Frame]:
        try:
            value = json.loads(b"".join(self._parts) or b"null")
        except _NOT_JSON:
            self.bad += 1
            return []
        return [("", view(value))] if isinstance(value, dict) else []


def framer_for(content_type: str, streaming: bool) -> Any:
    ctype = (content_type or "").lower()
    if "event-stream" in ctype:
        return SSEFrames()
    if streaming and "json" in ctype:
        return JsonArrayFrames()
    return WholeJson()
