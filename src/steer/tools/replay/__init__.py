"""`steer replay`: serve one recorded response to the REAL provider SDK making the recorded request,
with steer instrumenting it, and summarise what steer saw (the `--json` contract is in DESIGN).

Telemetry goes to in-memory OpenTelemetry SDK providers and is read back (report).
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any, Dict, Union

from steer.tools.replay.callers import CALLERS
from steer.tools.replay.report import ReplayCapture
from steer.tools.replay.transport import RecordingTransport, load_recording


def replay(source: Union[str, Path, Dict[str, Any]], *, is_async: bool = False, **options: Any) -> Dict[str, Any]:
    """Replay one recording; returns the summary `steer replay --json` prints (contract in DESIGN).
    ``options`` go to ``steer.instrument`` (e.g. ``capture_content=True``)."""
    return run_replay(source, is_async=is_async, **options).summary()


def run_replay(source: Union[str, Path, Dict[str, Any]], *, is_async: bool = False, **options: Any) -> ReplayCapture:
    """Replay one recording; returns what steer emitted (``summary()``, ``metric_lines()``)."""
    recording = load_recording(source)
    caller = CALLERS.get(recording["api"])
    if caller is None:
        raise ValueError(f"steer replay: no replay for api {recording['api']!r} (known: {sorted(CALLERS)})")
    transport = RecordingTransport(recording)
    with ReplayCapture(recording, **options) as capture:
        try:
            with warnings.catch_warnings():  # the SDKs' "model deprecated" notices are noise in a replay
                warnings.simplefilter("ignore", DeprecationWarning)
                capture.chunks = _run(caller(recording, transport, is_async))
        except Exception as exc:  # the SDK's error for an error recording: part of the summary
            capture.raised = exc
    return capture


def _run(coro: Any) -> Any:
    """Run a caller to completion, also when the caller of replay() already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
