"""The demo workload as a process: real provider SDKs against the loopback devserver, under steer.

    python tests/backends/workload.py --passes 3
    python tests/backends/workload.py --seconds 60      # keep going (for a scraping Prometheus)

steer is instrumented with no providers, so everything it exports is set up by ``steer.otel_setup``
from the standard OTEL_* variables the test passes (OTLP to Phoenix, the Prometheus exporter, ...).
Each pass runs every call of ``steer demo`` (steer.tools.demo.CALLS: openai, anthropic, google-genai) and
then the extra calls the dashboards need to show every panel: varied time to first chunk, JSON cut
short (invalid), a non-streaming call, HTTP 500 and 529, an in-stream error, an HTTP 500 the SDK retries,
and a stream that stalls (past ``STALL_AFTER``) until the caller's timeout cancels it. One JSON line per pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import steer
from steer import otel_setup
from steer.tools.demo import CALLS, DemoCall
from steer.tools.devserver import DevServer

# The extra calls; each ends in the SDK's own exception (what the test expects in the summary).
FAULTY = ("chat gpt-4o json cut short", "chat gpt-4o HTTP 500", "chat gpt-4o-mini in-stream error",
          "messages claude-haiku-4-5 overloaded", "chat gpt-4o-mini stalled, cancelled by a timeout")

# Short, so the stalled call is seen stalling (the dashboards' stalled-streams panel); the healthy calls
# send a chunk every few milliseconds.
STALL_AFTER = 0.25

PROMPT = [{"role": "user", "content": "Say something about streams and spans."}]
JSON_PROMPT = [{"role": "user", "content": "Give me a JSON object describing a river."}]


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def _demo(call: DemoCall, server: DevServer) -> Callable[[], None]:
    def run() -> None:
        result = call.run(server)
        if asyncio.iscoroutine(result):
            asyncio.run(result)

    return run


def calls(server: DevServer) -> List[Tuple[str, Callable[[], None]]]:
    """(label, call) for one pass: the demo's calls, then the extras."""
    import anthropic
    import openai

    oa = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-workload", max_retries=0)
    an = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-ant-workload", max_retries=0)

    def chat(model: str, *, usage: bool = True, fault: str = "none", ttft: float = 0.01, **kw: Any) -> Callable[[], None]:
        extra = {"x-steer-fault": fault, "x-steer-ttft": str(ttft), "x-steer-chunk-delay": "0.002"}
        opts = {"stream_options": {"include_usage": True}} if usage else {}
        return lambda: _drain(oa.chat.completions.create(model=model, messages=PROMPT if "response_format" not in kw else JSON_PROMPT,
                                                         stream=True, extra_headers=extra, **opts, **kw))

    def responses(model: str) -> Callable[[], None]:
        extra = {"x-steer-ttft": "0.02", "x-steer-chunk-delay": "0.002"}
        return lambda: _drain(oa.responses.create(model=model, input="Say something about spans.", stream=True, extra_headers=extra))

    def claude(model: str, fault: str = "none", ttft: float = 0.03) -> Callable[[], None]:
        extra = {"x-steer-fault": fault, "x-steer-ttft": str(ttft), "x-steer-chunk-delay": "0.002"}
        return lambda: _drain(an.messages.create(model=model, max_tokens=256, messages=PROMPT, stream=True, extra_headers=extra))

    def retried() -> None:
        # One HTTP 500, then success: the SDK's own retry (steer.client.retries), one span for the call.
        oa.with_options(max_retries=2).chat.completions.create(
            model="gpt-4o-mini", messages=PROMPT, stream=True, stream_options={"include_usage": True},
            extra_headers={"x-steer-fault": "http_500_then_ok", "x-steer-retry-after-ms": "10"}).close()

    def cancelled() -> None:
        # The stream stalls after its first chunk; the caller gives up (asyncio.wait_for cancels the task
        # awaiting the next chunk): steer.stream.end=cancelled, after a live stall.
        async def run() -> None:
            client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-workload", max_retries=0)
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True,
                                                          extra_headers={"x-steer-fault": "stall"})
            async for _ in stream:
                pass

        asyncio.run(asyncio.wait_for(run(), timeout=10 * STALL_AFTER))

    def whole() -> None:
        oa.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, extra_headers={"x-steer-ttft": "0.01"})

    extras = [
        ("chat gpt-4o-mini (reported usage)", chat("gpt-4o-mini")),
        ("chat gpt-4o (no usage: estimated)", chat("gpt-4o", usage=False, ttft=0.05)),
        ("chat gpt-4o-mini json_object", chat("gpt-4o-mini", response_format={"type": "json_object"})),
        ("chat gpt-4o json cut short", chat("gpt-4o", fault="truncate", response_format={"type": "json_object"})),
        ("chat gpt-4o-mini non-streaming", whole),
        ("responses gpt-4.1-nano", responses("gpt-4.1-nano")),
        ("messages claude-sonnet-4-6", claude("claude-sonnet-4-6")),
        ("chat gpt-4o HTTP 500", chat("gpt-4o", fault="http_500")),
        ("chat gpt-4o-mini in-stream error", chat("gpt-4o-mini", fault="error_event")),
        ("messages claude-haiku-4-5 overloaded", claude("claude-haiku-4-5", fault="http_529")),
        ("chat gpt-4o-mini HTTP 500, retried", retried),
        ("chat gpt-4o-mini stalled, cancelled by a timeout", cancelled),
    ]
    return [(f"demo: {c.label}", _demo(c, server)) for c in CALLS] + extras


def run_pass(plan: List[Tuple[str, Callable[[], None]]]) -> Dict[str, Any]:
    errors: Dict[str, str] = {}
    for label, call in plan:
        try:
            call()
        except Exception as exc:  # the injected faults: the SDK's own exceptions, as an app would see them
            errors[label] = type(exc).__name__
    return {"calls": len(plan), "errors": errors}


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.0, help="keep running passes this long (bounded)")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between passes")
    args = parser.parse_args(argv)
    steer.instrument(stall_after=STALL_AFTER)
    print(json.dumps({"otel_setup": dict(otel_setup.describe())}), file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.seconds
    with DevServer() as server:
        plan = calls(server)
        done = 0
        while done < args.passes or time.monotonic() < deadline:
            print(json.dumps(run_pass(plan)), flush=True)
            done += 1
            time.sleep(args.pause)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
