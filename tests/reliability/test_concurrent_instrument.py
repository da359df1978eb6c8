"""``instrument()`` / ``uninstrument()`` while calls are in flight on other threads and tasks.

One thread flips steer on and off as fast as it can, each ``instrument()`` with its own telemetry
pipeline (tracer and meter providers, ``on_start`` callback), while sync threads and async tasks keep
streaming through every SDK surface. Every call carries its own model name, so each span is matched
to the call that made it. What must hold:

- the callers see complete streams and no exception, whatever the toggling;
- a call observed at all is observed once: one span, in the pipeline of the ``instrument()`` that was
  active when the call started, ended with ``complete`` and the chunk count the caller read — an
  in-flight call finishes with the telemetry it started with, even after ``uninstrument()`` or a
  re-``instrument()`` with other providers;
- per pipeline: spans == ``on_start`` events, ``steer.client.streams.active`` back at zero, no
  internal error.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any, Dict, List, Tuple

import pytest

import steer
from conftest import Telemetry

from .checks import HEAVY, active_streams, internal_errors
from .test_load import KINDS, close_clients, make_clients, stream_async, stream_sync

PACE = {"x-steer-chunk-delay": "0.002"}  # ~12 chunks over ~25 ms: calls are in flight while steer flips


async def _nothing() -> None:
    return None


def _paced(clients: Dict[str, Any]) -> Dict[str, Any]:
    """The same clients, sending the pacing header (so each stream stays open for a while)."""
    out = dict(clients)
    for kind in ("chat", "responses", "messages"):
        out[kind] = clients[kind].with_options(default_headers=PACE)
    return out


@pytest.mark.parametrize("threads,per_thread,tasks,per_task", [(4, 15, 20, 4), pytest.param(8, 60, 100, 10, marks=HEAVY)],
                         ids=["ci", "full"])
def test_toggling_while_calls_are_in_flight(threads: int, per_thread: int, tasks: int, per_task: int,
                                            devserver_process: Any) -> None:
    pipelines: List[Tuple[Telemetry, List[Any]]] = []
    calls: List[Tuple[str, int]] = []  # (model, items the caller read)
    errors: List[BaseException] = []
    lock = threading.Lock()
    done = threading.Event()
    srv = devserver_process

    undone_at: List[int] = []  # wall-clock ns at which each pipeline's instrument() was undone

    def toggler() -> None:
        while not done.is_set():
            telemetry, starts = Telemetry(), []
            pipelines.append((telemetry, starts))
            steer.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider,
                             on_start=starts.append)
            done.wait(0.02)
            steer.uninstrument()
            undone_at.append(time.time_ns())
            done.wait(0.002)

    def sync_worker(t: int) -> None:
        clients = _paced(make_clients(srv, False))
        try:
            for j in range(per_thread):
                model = f"sync-{t}-{j}"
                n = stream_sync(srv, clients, KINDS[(t + j) % len(KINDS)], model, lambda: None)
                with lock:
                    calls.append((model, n))
        except BaseException as exc:
            errors.append(exc)
        finally:
            asyncio.run(close_clients(clients, False))

    async def async_side() -> None:
        clients = _paced(make_clients(srv, True))

        async def task(k: int) -> None:
            for j in range(per_task):
                model = f"async-{k}-{j}"
                n = await stream_async(srv, clients, KINDS[(k + j) % len(KINDS)], model, _nothing)
                calls.append((model, n))

        try:
            await asyncio.gather(*(task(k) for k in range(tasks)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            await close_clients(clients, True)

    flipper = threading.Thread(target=toggler)
    flipper.start()
    workers = [threading.Thread(target=sync_worker, args=(t,)) for t in range(threads)]
    workers.append(threading.Thread(target=lambda: asyncio.run(async_side())))
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(300)
    finally:
        done.set()
        flipper.join()
        steer.uninstrument()
    import gc

    gc.collect()
    assert not errors, errors[:3]
    assert len(calls) == threads * per_thread + tasks * per_task
    read = dict(calls)
    assert all(n > 0 for n in read.values())

    observed: Counter = Counter()
    outlived = 0  # calls that ended after the instrument() they started under was undone
    at_http_layer = 0
    for (telemetry, starts), undone in zip(pipelines, undone_at + [2**63]):
        spans = telemetry.genai_spans()
        outlived += sum(s.end_time > undone for s in spans)
        assert len(spans) == len(starts)  # each call this pipeline started, it also ended — here
        for span in spans:
            model = span.attributes["gen_ai.request.model"]
            observed[model] += 1
            assert span.attributes["steer.stream.end"] == "complete", model
            # The whole stream was observed. A call whose SDK method ran while steer was off, but whose
            # HTTP request went out after instrument(), is observed one layer down, by the httpx hook:
            # it counts wire frames, which can be one more than the SDK's items (Anthropic's `ping`).
            chunks = span.attributes["steer.stream.chunks"]
            assert chunks >= read[model], model
            at_http_layer += chunks != read[model]
        assert active_streams(telemetry) == 0
        assert internal_errors(telemetry) == 0
    assert all(k == 1 for k in observed.values()), [m for m, k in observed.items() if k > 1][:5]
    assert set(observed) <= set(read)
    print(f"\ninstrument/uninstrument x{len(pipelines)} while {len(calls)} calls ran: "
          f"{len(observed)} observed (one span each, {outlived} of them ending after their instrument() was undone, "
          f"{at_http_layer} seen at the HTTP layer), "
          f"{len(calls) - len(observed)} started while off")
    assert observed and outlived and len(pipelines) > 10  # the toggling really overlapped the calls
    for telemetry, _ in pipelines:
        telemetry.tracer_provider.shutdown()
        telemetry.meter_provider.shutdown()
