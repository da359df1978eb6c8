"""Fault matrix: every provider surface, sync and async, against every fault the devserver injects
over real loopback sockets.

Each case runs twice, each time against a fresh devserver (so ids match request for request): once
bare, once under ``steer.instrument()``. The caller must see exactly the same thing both times —
the same chunks (``model_dump`` of each) and the same exception type and message — and the
instrumented run must leave exactly one span, ended once, with the right status and
``steer.stream.end``, its metrics recorded, ``steer.client.streams.active`` back at zero and no
internal error of steer's.
"""

from __future__ import annotations

import logging
from typing import Any, List, Tuple

import pytest

from steer.tools.devserver import DevServer

from .checks import active_streams, histogram_count, internal_errors, otel_complaints, points
from .surfaces import SURFACES, STREAMING, UNARY, Seen, Surface, drive_async, drive_sync

STREAM_FAULTS = ["none", "malformed_sse", "truncate", "reset", "error_event", "http_400", "http_401", "http_404",
                 "http_429", "http_500", "stall", "endless"]
# Raw httpx hands every HTTP status back as a response: two statuses say all there is to say.
RAW_FAULTS = [f for f in STREAM_FAULTS if f not in ("http_400", "http_401", "http_404")]
# Non-streaming calls: malformed SSE does not apply, and "endless" is a stall for a unary call.
UNARY_FAULTS = ["none", "truncate", "reset", "error_event", "http_400", "http_429", "http_500", "stall"]
ENDLESS_READ = 5  # the caller of an endless stream stops after this many items


def _cases() -> List[Tuple[str, str, str, str]]:
    cases = []
    for mode in ("sync", "async"):
        for surface in STREAMING:
            for fault in RAW_FAULTS if surface.raw else STREAM_FAULTS:
                cases.append((surface.name, fault, "close", mode))
                # The caller loses interest and lets go without closing. Sync only: an async stream
                # dropped mid-read is closed by the event loop's async-generator finaliser, where the
                # SDKs' own clean-up already errors without steer (tests/test_lifecycle.py covers it).
                if fault == "endless" and mode == "sync" and not surface.manager:
                    cases.append((surface.name, fault, "drop", mode))
        cases += [(s.name, fault, "close", mode) for s in UNARY for fault in UNARY_FAULTS]
    return cases


CASES = _cases()
PARAMS = [pytest.param(*c, id="-".join(c)) for c in CASES]


async def run(surface: Surface, mode: str, fault: str, stop: str) -> Seen:
    headers = {"x-steer-fault": fault}
    limit = ENDLESS_READ if fault == "endless" else 0
    with DevServer(chunk_delay=0) as srv:  # a fresh server: request n gets the same ids every run
        if mode == "sync":
            return drive_sync(surface, srv, headers, limit, stop)
        return await drive_async(surface, srv, headers, limit, stop)


def expected_end(surface: Surface, fault: str, stop: str, bare: Seen) -> str:
    if fault == "endless":
        return "closed_early" if stop == "close" else "abandoned"
    if surface.manager and isinstance(bare.error, TypeError):
        # Anthropic's MessageStream chokes on the event that lacks its block `index`: the wire stream
        # was intact, the helper's own accumulation raised. To steer that is the same as an exception
        # in the caller's loop body (tests/test_lifecycle.py): the stream was closed early.
        return "closed_early"
    if bare.error is not None or fault == "error_event" or fault.startswith("http_"):
        return "error"  # raised by the SDK, or (raw httpx, Responses API) an error the caller reads as data
    return "complete"


@pytest.mark.parametrize("surface_name,fault,stop,mode", PARAMS)
async def test_fault(surface_name: str, fault: str, stop: str, mode: str, instrumented: Any, caplog: Any) -> None:
    surface = SURFACES[surface_name]
    bare = await run(surface, mode, fault, stop)
    telemetry = instrumented()
    caplog.set_level(logging.WARNING)
    seen = await run(surface, mode, fault, stop)

    # The caller sees exactly what it sees without steer: same chunks, same exception and message.
    assert seen.comparable() == bare.comparable()
    if fault == "endless":
        assert len(seen.items) >= ENDLESS_READ

    # One span, ended once, with the right ending and status.
    spans = telemetry.spans()
    assert len(spans) == 1, [s.name for s in spans]
    span = spans[0]
    attrs = dict(span.attributes or {})
    end = expected_end(surface, fault, stop, bare)
    if surface.streaming:
        assert attrs["steer.stream.end"] == end
        if not surface.raw and not surface.manager:  # every item the SDK yielded was counted, once
            assert attrs["steer.stream.chunks"] == len(seen.items)
    else:
        assert "steer.stream.end" not in attrs
    failed = end == "error"
    assert span.status.status_code.name == ("ERROR" if failed else "UNSET"), span.status
    assert bool(attrs.get("error.type")) == failed
    if seen.error is not None and failed:
        recorded = [e for e in span.events if e.name == "exception"]
        assert recorded and recorded[0].attributes["exception.type"].endswith(type(seen.error).__name__)
    if surface.raw and fault == "malformed_sse":
        assert attrs.get("steer.decode.errors", 0) >= 1  # the frame that is not JSON is counted, not hidden

    # Metrics recorded once; the stream no longer counts as active; steer itself never failed.
    assert histogram_count(telemetry, "gen_ai.client.operation.duration") == 1
    if failed:
        assert all(p.attributes.get("error.type") for p in points(telemetry, "gen_ai.client.operation.duration"))
    if surface.streaming:
        assert histogram_count(telemetry, "steer.client.stream.chunks") == 1
    assert active_streams(telemetry) == 0
    assert internal_errors(telemetry) == 0
    assert not otel_complaints(caplog.records)
