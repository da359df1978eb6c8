"""Raw HTTP bodies -> the parsed JSON events the provider decoders read, sans-IO.

An application calling a provider's HTTP API directly (httpx, httpx-sse) gets the same decoding as
the SDKs: this module frames the bytes it reads — Server-Sent Events, or Gemini's streamed JSON array
(no ``alt=sse``), or one JSON document — into JSON values, handed to the provider's decoder through
``AttrView``. It never changes the bytes the application reads: it only sees a copy.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional, Tuple

from steer.providers.base import view
from steer.sse import SSEDecoder

Frame = Tuple[str, Any]  # (SSE event name or "", the parsed JSON value seen through AttrView)


class SSEFrames:
    """SSE bytes -> JSON frames. ``[DONE]`` ends nothing by itself; data that is not JSON is counted."""

    __slots__ = ("_sse", "bad")

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self.bad = 0

    def feed(self, data: bytes) -> List[Frame]:
        return self._frames(self._sse.feed(data))

    def flush(self) -> List[Frame]:
        return self._frames(self._sse.flush())

    def _frames(self, events: Any) -> List[Frame]:
        out: List[Frame] = []
        for event in events:
            text = event.data
            if not text or text.startswith("[DONE]"):
                continue
            try:
                value = json.loads(text)
            except ValueError:
                self.bad += 1
                continue
            name = event.event if event.event != "message" else ""
            if name == "error" and isinstance(value, dict) and "type" not in value:
                value = {"type": "error", **value}
            out.append((name, view(value)))
        return out


class JsonArrayFrames:
    """A streamed top-level JSON array (Gemini without ``alt=sse``): each element as it closes.

    Scans only new bytes for the element boundaries (depth, strings, escapes); an element is parsed
    once, when its closing brace arrives.
    """

    __slots__ = ("_buf", "_depth", "_in_string", "_escape", "_start", "_pos", "bad")

    def __init__(self) -> None:
        self._buf = ""
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._start: Optional[int] = None
        self._pos = 0
        self.bad = 0

    def feed(self, data: bytes) -> List[Frame]:
        self._buf += data.decode("utf-8", errors="replace")
        out: List[Frame] = []
        buf, i = self._buf, self._pos
        while i < len(buf):
            ch = buf[i]
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
                if self._depth == 2 and ch == "{":
                    self._start = i
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 1 and self._start is not None:
                    self._emit(buf[self._start:i + 1], out)
                    self._start = None
            i += 1
        # Keep only the unfinished element: memory stays bounded by the largest element.
        cut = self._start if self._start is not None else len(buf)
        self._buf, self._pos = buf[cut:], i - cut
        if self._start is not None:
            self._start = 0
        return out

    def flush(self) -> List[Frame]:
        return []

    def _emit(self, text: str, out: List[Frame]) -> None:
        try:
            out.append(("", view(json.loads(text))))
        except ValueError:
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
        except ValueError:
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
