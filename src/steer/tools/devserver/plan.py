"""What the server sends and when: realism knobs, planned responses, SSE framing.

The wire-format modules only *describe* a response (lists of byte frames); the
fault layer rearranges those frames and the HTTP layer (`http11.py`) is the only
place that touches sockets or sleeps. Keeping the description as plain data lets
one fault implementation serve every provider and keeps the wire modules sans-IO.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Mapping, Optional

# Defaults are mildly realistic yet fast enough for a test suite: a 20 ms wait for
# the first chunk and 200 tokens/s (one word per chunk, so 5 ms between chunks).
DEFAULT_TTFT = 0.02
DEFAULT_TOKENS_PER_SECOND = 200.0
DEFAULT_CHUNKS = 12

Ending = Literal["end", "truncate", "reset", "stall", "endless"]


@dataclass(frozen=True)
class Knobs:
    """Realism settings of one response (server defaults, overridable per request)."""

    ttft: float = DEFAULT_TTFT  # seconds before the first body frame
    gap: float = 1.0 / DEFAULT_TOKENS_PER_SECOND  # seconds between content frames
    chunks: int = DEFAULT_CHUNKS  # content chunks (= words) of a text answer
    seed: int = 0  # picks the words, ids and padding deterministically
    replay_chunk_bytes: int = 64  # piece size when replaying a non-SSE body
    retry_after_ms: Optional[int] = None  # a retry-after-ms header on HTTP error answers (x-steer-retry-after-ms)

    @classmethod
    def build(
        cls,
        *,
        ttft: Optional[float] = None,
        tokens_per_second: Optional[float] = None,
        chunk_delay: Optional[float] = None,
        chunks: int = DEFAULT_CHUNKS,
        seed: int = 0,
        replay_chunk_bytes: int = 64,
    ) -> "Knobs":
        # `chunk_delay` wins over `tokens_per_second`; `chunk_delay=0` is the
        # benchmark/load setting and means "never sleep", so it also drops the
        # default time-to-first-chunk unless one is given explicitly.
        if chunk_delay is not None:
            gap = float(chunk_delay)
        elif tokens_per_second:
            gap = 1.0 / float(tokens_per_second)
        else:
            gap = 1.0 / DEFAULT_TOKENS_PER_SECOND
        if ttft is None:
            ttft = 0.0 if chunk_delay == 0 else DEFAULT_TTFT
        if gap < 0 or ttft < 0 or chunks < 1 or replay_chunk_bytes < 1:
            raise ValueError("devserver knobs must be non-negative (chunks >= 1)")
        return cls(ttft=float(ttft), gap=gap, chunks=int(chunks), seed=int(seed),
                   replay_chunk_bytes=int(replay_chunk_bytes))

    def with_headers(self, headers: Mapping[str, str]) -> "Knobs":
        """Per-request overrides (`x-steer-ttft`, `-chunk-delay`, `-chunks`, `-seed`, `-retry-after-ms`)."""
        changes: dict[str, Any] = {}
        for name, key, kind in (("x-steer-ttft", "ttft", float), ("x-steer-chunk-delay", "gap", float),
                                ("x-steer-chunks", "chunks", int), ("x-steer-seed", "seed", int),
                                ("x-steer-retry-after-ms", "retry_after_ms", int)):
            if name in headers:
                changes[key] = kind(headers[name])
        return replace(self, **changes) if changes else self


@dataclass
class StreamPlan:
    """A streamed body as frames: `head` (preamble), `body` (paced content), `tail` (closing).

    `more(i)` produces content frame number `i` beyond `body`, for the `endless` fault.
    """

    content_type: str
    head: list[bytes]
    body: list[bytes]
    tail: list[bytes]
    more: Callable[[int], bytes]
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Delivery:
    """Exactly what the HTTP layer does for one request.

    `frames` are (delay before, bytes); with `chunked` each is sent as one HTTP chunk,
    otherwise the body is framed by Content-Length (`content_length` may exceed the
    bytes sent, which is how a truncated non-streaming body is produced).
    """

    status: int
    content_type: str
    frames: list[tuple[float, bytes]]
    chunked: bool
    ending: Ending = "end"
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_length: Optional[int] = None
    more: Optional[Callable[[int], bytes]] = None  # endless: next frame i
    gap: float = 0.0  # endless: pace


def sse(data: Any, event: Optional[str] = None, *, eol: str = "\n") -> bytes:
    """One Server-Sent Event; `data` is JSON-encoded unless it is already a string."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}{eol}" if event else ""
    return f"{head}data: {text}{eol}{eol}".encode()


def json_body(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def json_delivery(status: int, obj: Any, headers: Optional[list[tuple[str, str]]] = None,
                  delay: float = 0.0) -> Delivery:
    """A whole JSON document framed by Content-Length (non-streaming answers, HTTP errors)."""
    body = json_body(obj)
    return Delivery(status=status, content_type="application/json", frames=[(delay, body)],
                    chunked=False, headers=list(headers or []), content_length=len(body))


def text_of(content: Any) -> str:
    """Message content is a string or a list of typed parts; keep the text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class WireFormat:
    """One provider API: renders a fake answer as frames and errors as that API's bodies.

    Subclasses are built per request (they parse the request body in `__init__`)
    and must set `stream_requested`. The fault layer only uses this interface.
    """

    eol = "\n"
    stream_requested = False
    overloaded_status = 500  # what `error_event` becomes for a non-streaming request
    content_event: Optional[str] = None  # SSE event name of content frames, where the API names them

    def __init__(self, body: dict[str, Any], knobs: Knobs, model: str, stream: bool) -> None:
        self.body, self.knobs, self.model, self.stream_requested = body, knobs, model, stream

    def frame(self, data: Any, event: Optional[str] = None) -> bytes:
        return sse(data, event, eol=self.eol)

    def stream(self) -> StreamPlan:
        raise NotImplementedError

    def complete(self) -> Delivery:
        raise NotImplementedError

    def error(self, status: int) -> Delivery:
        raise NotImplementedError

    def error_frames(self, sent: int) -> list[bytes]:
        """The provider's in-stream error, after `sent` frames (ends the stream)."""
        raise NotImplementedError

    def broken_frame(self) -> bytes:
        """A well-formed event whose payload lacks fields the API always sends."""
        raise NotImplementedError


def generation_time(knobs: Knobs, pieces: int) -> float:
    """How long a non-streaming answer takes: as long as streaming it would."""
    return knobs.ttft + knobs.gap * max(0, pieces - 1)
