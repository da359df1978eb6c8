"""Replay one recording (shared/fixtures/streams format) for any request.

The recorded body is cut into pieces — at SSE event boundaries, or every
`replay_chunk_bytes` for other bodies — so the client reads a real stream with
the knobs' pacing. Faults still apply: error bodies and in-stream errors come
from the wire format named by the recording's `api`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Union

from .anthropic_messages import Messages
from .gemini import Gemini
from .openai_responses import Responses
from .openai_wire import ChatCompletions, Completions
from .plan import Delivery, Knobs, StreamPlan, WireFormat

_EVENT_END = re.compile(r"(?<=\r\n\r\n)|(?<=\n\n)|(?<=\r\r)")


def load_recording(recording: Union[str, Path, dict[str, Any]]) -> dict[str, Any]:
    if isinstance(recording, dict):
        data = recording
    else:
        data = json.loads(Path(recording).read_text(encoding="utf-8"))
    if not isinstance(data.get("response"), dict):
        raise ValueError("a recording needs a `response` object with `status` and `body`")
    return data


def _looks_like_sse(body: str) -> bool:
    return body.lstrip().startswith(("data:", "event:", ":", "id:", "retry:"))


class Replay(WireFormat):
    def __init__(self, recording: dict[str, Any], knobs: Knobs, salt: int) -> None:
        response = recording["response"]
        self.knobs = knobs
        self.status = int(response.get("status") or 200)
        self.body = str(response.get("body") or "")
        self.sse_body = _looks_like_sse(self.body)
        self.content_type = response.get("content_type") or (
            "text/event-stream" if self.sse_body else "application/json")
        self.stream_requested = self.status < 400  # a recorded error is sent as one document
        self.inner = self._inner_wire(recording, knobs, salt)
        self.eol, self.content_event = self.inner.eol, self.inner.content_event

    def _inner_wire(self, recording: dict[str, Any], knobs: Knobs, salt: int) -> WireFormat:
        api = str(recording.get("api") or "")
        body = (recording.get("request") or {}).get("body") or {}
        if api.startswith("google."):
            return Gemini(body, knobs, salt, model=str(recording.get("model") or "gemini"),
                          stream=True, sse=self.sse_body)
        kinds = {"anthropic.messages": Messages, "openai.responses": Responses,
                 "openai.completions": Completions}
        return kinds.get(api, ChatCompletions)(body, knobs, salt)

    def pieces(self) -> list[bytes]:
        if self.sse_body:
            return [p.encode() for p in _EVENT_END.split(self.body) if p]
        raw, size = self.body.encode(), self.knobs.replay_chunk_bytes
        return [raw[i:i + size] for i in range(0, len(raw), size)] or [b""]

    def stream(self) -> StreamPlan:
        pieces = self.pieces()
        head, body, tail = pieces[:1], pieces[1:-1], pieces[1:][-1:]
        cycle = body or pieces
        return StreamPlan(content_type=self.content_type, head=head, body=body, tail=tail,
                          more=lambda i: cycle[i % len(cycle)])

    def complete(self) -> Delivery:
        raw = self.body.encode()
        return Delivery(status=self.status, content_type=self.content_type, frames=[(self.knobs.ttft, raw)],
                        chunked=False, content_length=len(raw))

    def error(self, status: int) -> Delivery:
        return self.inner.error(status)

    def error_frames(self, sent: int) -> list[bytes]:
        return self.inner.error_frames(sent)

    def broken_frame(self) -> bytes:
        return self.inner.broken_frame()

    def frame(self, data: Any, event: Any = None) -> bytes:
        return self.inner.frame(data, event)
