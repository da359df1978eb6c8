"""Fault injection: turn a wire format's planned response into the delivery to perform.

One implementation serves every provider because faults only rearrange frames
(cut the body short, splice in garbage or the provider's own error frame) or
swap the response for the provider's error body; the wire formats supply the
provider-specific pieces.
"""

from __future__ import annotations

import re
from typing import Optional

from .plan import Delivery, Knobs, StreamPlan, WireFormat

FAULTS = (
    "malformed_sse",  # garbage line, unknown event, chunk missing fields, invalid JSON; ends normally
    "truncate",  # connection closed mid-event (no terminating chunk, no [DONE])
    "reset",  # TCP RST mid-stream (SO_LINGER 0, then close)
    "error_event",  # the provider's in-stream error frame, then the stream ends
    "http_400", "http_401", "http_404", "http_429", "http_500",  # any http_NNN works
    # http_NNN_then_ok (or http_NNNxK_then_ok): K requests (default 1) carrying this fault get HTTP NNN,
    # the next one the normal answer, and the count starts again: an SDK's retries meet a flaky server.
    "http_500_then_ok", "http_529_then_ok", "http_429x2_then_ok",
    "stall",  # headers + first chunk, then silence until the client or the server gives up
    "endless",  # content chunks forever at the configured pace
)
_HTTP = re.compile(r"^http_([1-5]\d\d)$")
_THEN_OK = re.compile(r"^http_([1-5]\d\d)(?:x(\d+))?_then_ok$")


def check(name: Optional[str]) -> Optional[str]:
    """Validate a fault name; None, "" and "none" mean no fault."""
    if name is None:
        return None
    name = name.strip().lower()
    if name in ("", "none"):
        return None
    if name in FAULTS or _HTTP.match(name) or _THEN_OK.match(name):
        return name
    raise ValueError(f"unknown steer devserver fault {name!r}; known: {', '.join(FAULTS)}")


def then_ok(name: Optional[str]) -> Optional[tuple[int, int]]:
    """(status, failures before the success) of an ``http_NNN[xK]_then_ok`` fault, else None."""
    match = _THEN_OK.match(name) if name else None
    return (int(match.group(1)), int(match.group(2) or 1)) if match else None


def timeline(head: list[bytes], body: list[bytes], tail: list[bytes], knobs: Knobs) -> list[tuple[float, bytes]]:
    """Attach delays: time-to-first-chunk before the first frame, `gap` between content frames."""
    frames = [(0.0, f) for f in head]
    frames += [(knobs.gap if i else 0.0, f) for i, f in enumerate(body)]
    frames += [(0.0, f) for f in tail]
    if frames:
        frames[0] = (knobs.ttft, frames[0][1])
    return frames


def garbage(wire: WireFormat) -> list[bytes]:
    # Ordered from harmless to fatal-for-strict-parsers, so tolerant clients get furthest.
    eol = wire.eol
    return [f"this line is not server-sent events{eol}{eol}".encode(),
            wire.frame({"type": "steer.unknown_event"}, "steer.unknown_event"),
            wire.broken_frame(),
            wire.frame('{"invalid": json,', wire.content_event)]


def deliver(wire: WireFormat, fault: Optional[str], knobs: Knobs) -> Delivery:
    if fault is not None and fault.startswith("http_"):
        delivery = wire.error(int(fault[5:]))
        if knobs.retry_after_ms is not None:  # the SDKs honour it (retry-after-ms: Stainless; google-genai not)
            delivery.headers = [*delivery.headers, ("retry-after-ms", str(knobs.retry_after_ms))]
        return delivery
    if not wire.stream_requested:
        return _whole(wire, fault)
    plan = wire.stream()
    head, body, tail, ending = plan.head, plan.body, plan.tail, "end"
    cut = len(body) // 2
    if fault == "malformed_sse":
        body = body[:1] + garbage(wire) + body[1:]
    elif fault == "truncate":
        # Half of the next frame goes out, then the connection closes mid-event.
        rest = plan.body[cut:] + plan.tail
        body, tail, ending = body[:cut], [f[: max(1, len(f) // 2)] for f in rest[:1]], "truncate"
    elif fault == "reset":
        body, tail, ending = body[:cut], [], "reset"
    elif fault == "error_event":
        body, tail = body[:cut], wire.error_frames(len(head) + cut)
    elif fault == "stall":
        body, tail, ending = body[:1], [], "stall"
    elif fault == "endless":
        tail, ending = [], "endless"
    return _streamed(plan, timeline(head, body, tail, knobs), ending, knobs)


def _streamed(plan: StreamPlan, frames: list[tuple[float, bytes]], ending: str, knobs: Knobs) -> Delivery:
    return Delivery(status=200, content_type=plan.content_type, frames=frames, chunked=True,
                    ending=ending, headers=plan.headers, more=plan.more, gap=knobs.gap)  # type: ignore[arg-type]


def _whole(wire: WireFormat, fault: Optional[str]) -> Delivery:
    """Faults on a non-streaming request: the same failure modes on one JSON body."""
    if fault == "error_event":
        return wire.error(wire.overloaded_status)
    delivery = wire.complete()
    if fault in ("truncate", "reset"):
        delay, body = delivery.frames[0]
        delivery.frames = [(delay, body[: len(body) // 2])]
        delivery.ending = fault  # type: ignore[assignment]
    elif fault in ("stall", "endless"):
        # Nothing streams on a non-streaming call, so "forever" is headers then silence.
        delivery.frames, delivery.ending = [], "stall"
    return delivery  # malformed_sse concerns streams only
