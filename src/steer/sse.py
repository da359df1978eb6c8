"""Incremental, sans-IO Server-Sent Events decoder (bytes in, events out).

Implements the WHATWG HTML "event stream interpretation" rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
with one deliberate difference: ``flush()`` dispatches a final event that has no
terminating blank line, because real providers end streams that way and the spec's
"discard" would silently drop the last chunk (often the one carrying usage).

The decoder does no I/O: callers hand it whatever the transport produced (any cut
points, including inside a CRLF pair or a multi-byte UTF-8 character) and get whole
events back. Work is done per chunk with C-level str methods (find/replace/split);
Python code runs once per *line*, never per character, because this sits on the
hot path of every streamed LLM call.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEDecoder", "ServerSentEvent"]


@dataclass(slots=True)
class ServerSentEvent:
    """One dispatched event. Compared by value (dataclass ``__eq__``)."""

    event: str = "message"
    data: str = ""
    # The *last event ID buffer* at dispatch time: per spec it persists across
    # events until another ``id`` field changes it. None if no stream ever set it.
    id: str | None = None
    # The ``retry`` value given in this event's block (not sticky), if any.
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSEDecoder:
    """Feed raw bytes (``feed``) or text (``feed_text``); call ``flush`` at end of stream.

    After ``flush`` the decoder is ready for a new stream (a reconnect); only the
    last event ID survives, as ``EventSource`` keeps it across reconnections.
    Do not interleave ``feed`` and ``feed_text`` in the middle of a multi-byte
    character: the byte decoder's pending bytes are not seen by ``feed_text``.

    ``max_event_chars`` bounds memory against a hostile or broken server (a line
    that never ends, data lines with no blank line): an event whose data plus
    unterminated line outgrow it is dropped whole and counted in ``dropped``,
    and the decoder resynchronises at the next blank line. None (the default)
    keeps the spec's unbounded behaviour. The check runs once per feed, not per line.
    """

    __slots__ = ("_utf8", "_at_start", "_skip_lf", "_partial", "_data", "_event", "_retry", "_last_id",
                 "_max", "_psize", "_dsize", "_dcount", "_overflow", "_skip_line", "dropped")

    def __init__(self, max_event_chars: int | None = None) -> None:
        self._last_id: str | None = None
        self._max = max_event_chars
        self.dropped = 0  # events dropped for outgrowing max_event_chars (kept across flush)
        self._reset()

    def _reset(self) -> None:
        # Per-stream state only; _last_id is owned by __init__ and the "id" field.
        # Incremental decoder: keeps an incomplete UTF-8 sequence until the next chunk.
        # errors="replace" as the spec's "UTF-8 decode" does; never raise on bad bytes.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True  # a BOM is stripped only as the very first character
        self._skip_lf = False  # previous chunk ended in CR: a leading LF completes that CRLF
        self._partial: list[str] = []  # pieces of an unterminated line (list: no O(n^2) concat)
        self._data: list[str] = []  # data lines of the current block; empty == empty data buffer
        self._event = ""
        self._retry: int | None = None
        # Bookkeeping for max_event_chars: characters held in _partial and in _data (counted
        # incrementally: _dcount data lines are already in _dsize), and whether the current event or
        # line outgrew the cap (its data is dropped; the rest of an oversized line is ignored).
        self._psize = self._dsize = self._dcount = 0
        self._overflow = self._skip_line = False

    # -- input -----------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        events = self._feed_str(self._utf8.decode(chunk))
        if self._max is not None:
            self._bound()
        return events

    def feed_text(self, text: str) -> list[ServerSentEvent]:
        events = self._feed_str(text)
        if self._max is not None:
            self._bound()
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: decode leftover bytes, finish the last line, dispatch the last event."""
        events = self._feed_str(self._utf8.decode(b"", True))
        if self._partial and not self._skip_line:
            # An unterminated final line is still a complete field line at EOF.
            self._process(["".join(self._partial)], events)
        self._dispatch(events)
        self._reset()  # leaves _last_id alone (see class docstring)
        return events

    # -- core ------------------------------------------------------------------

    def _feed_str(self, text: str) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        if self._skip_lf:
            # A CR ended the previous chunk and already terminated its line; an LF
            # starting this chunk is the second half of that CRLF, not another line end.
            if not text:
                return events
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        if not text:
            return events
        if self._at_start:
            # Decided on the first non-empty text: the incremental decoder emits U+FEFF
            # only once all three BOM bytes arrived, so a BOM split across feeds works.
            self._at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
                if not text:
                    return events
        if "\r" in text:
            if text[-1] == "\r":
                self._skip_lf = True
            # Normalise CRLF then lone CR to LF so a single split() finds every line end.
            text = text.replace("\r\n", "\n")
            if "\r" in text:
                text = text.replace("\r", "\n")
        lines = text.split("\n")
        tail = lines.pop()  # text after the last line end: an incomplete line ("" if none)
        if not lines:
            self._partial.append(tail)
            self._psize += len(tail)
            return events
        if self._skip_line:  # the start of this line was dropped (too long): ignore its rest too
            self._skip_line = False
            lines[0] = ":"  # a comment line: a no-op that still ends the line
            self._partial = [tail] if tail else []
        elif self._partial:
            self._partial.append(lines[0])
            lines[0] = "".join(self._partial)
            self._partial = [tail] if tail else []
        elif tail:
            self._partial.append(tail)
        self._psize = len(tail)
        self._process(lines, events)
        return events

    def _bound(self) -> None:
        """Enforce max_event_chars after a feed (amortised O(1) per line: new data lines only)."""
        data = self._data
        for i in range(self._dcount, len(data)):
            self._dsize += len(data[i])
        self._dcount = len(data)
        if self._psize + self._dsize <= self._max:  # type: ignore[operator]
            return
        self._overflow = True
        data.clear()
        self._dsize = self._dcount = 0
        if self._psize > self._max:  # type: ignore[operator]
            self._partial, self._psize, self._skip_line = [], 0, True

    def _process(self, lines: list[str], events: list[ServerSentEvent]) -> None:
        data = self._data
        for line in lines:
            if not line:  # blank line: end of block
                self._dispatch(events)
                continue
            if line.startswith("data:"):
                # Fast path for the overwhelmingly common line; avoids partition()'s tuple.
                data.append(line[6:] if line.startswith(" ", 5) else line[5:])
                continue
            name, _, value = line.partition(":")  # no colon: whole line is the name, value ""
            if not name:
                continue  # comment (":..."), e.g. OpenRouter keep-alives
            if value.startswith(" "):
                value = value[1:]  # exactly one leading space is stripped
            if name == "event":
                self._event = value
            elif name == "data":  # "data" without a colon: an empty data line
                data.append(value)
            elif name == "id":
                if "\0" not in value:  # spec: ids containing NUL are ignored
                    self._last_id = value
            elif name == "retry":
                # Spec: only ASCII digits; str.isdigit() alone would accept "²" or "٣".
                if value.isascii() and value.isdigit():
                    self._retry = int(value)
            # any other field name is ignored

    def _dispatch(self, events: list[ServerSentEvent]) -> None:
        data = self._data
        if self._overflow:  # the event outgrew max_event_chars: dropped whole, never half-delivered
            self._overflow = False
            self.dropped += 1
            data.clear()
        elif data:
            events.append(
                ServerSentEvent(self._event or "message", "\n".join(data), self._last_id, self._retry)
            )
            data.clear()
        self._dsize = self._dcount = 0
        # Per spec the event type resets even when nothing is dispatched (empty data);
        # retry is per block in our model. The last event id deliberately persists.
        self._event = ""
        self._retry = None
