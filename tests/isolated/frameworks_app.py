"""Runs inside the isolated venv (tests/test_frameworks_isolated.py): one framework, driven against a
devserver on loopback with steer instrumented, then every request the framework sent is sent again
through the bare SDK (steer uninstrumented) to count the items the SDK yields for it.

    python frameworks_app.py instructor|llama_index|litellm

Prints one line, ``STEER-REPORT <JSON>``: per scenario, the request bodies the framework sent, the finished steer
spans' attributes, and for each body what the bare SDK yields (items, usage).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from typing import Any, Callable, Dict, List

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price list

import anthropic
import openai
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

import steer
from steer.tools.devserver import DevServer

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
REPORT = "STEER-REPORT "


class Weather(BaseModel):
    city: str
    temperature: int


# -- the frameworks' scenarios: each makes one logical call --------------------------------------------
def instructor_scenarios(srv: DevServer) -> Dict[str, Callable[[], Any]]:
    import instructor

    def client(is_async: bool = False) -> Any:
        sdk = (openai.AsyncOpenAI if is_async else openai.OpenAI)(base_url=srv.openai_base_url, api_key="x", max_retries=0)
        return instructor.from_openai(sdk)

    def create() -> Any:
        return client().chat.completions.create(model="gpt-4o-mini", response_model=Weather, messages=USER, max_retries=0)

    def partial() -> Any:
        return [p for p in client().chat.completions.create_partial(
            model="gpt-4o-mini", response_model=Weather, messages=USER, max_retries=0)]

    async def apartial() -> Any:
        return [p async for p in client(True).chat.completions.create_partial(
            model="gpt-4o-mini", response_model=Weather, messages=USER, max_retries=0)]

    return {"create": create, "create_partial": partial, "async_create_partial": lambda: asyncio.run(apartial())}


def llama_index_scenarios(srv: DevServer) -> Dict[str, Callable[[], Any]]:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai import OpenAI

    llm = OpenAI(model="gpt-4o-mini", api_base=srv.openai_base_url, api_key="x", max_retries=0)
    messages = [ChatMessage(role="user", content="Say something")]

    def stream_break() -> Any:
        stream = llm.stream_chat(messages)
        first = next(stream)
        stream.close()  # the caller stops after the first delta
        return first.delta

    async def astream() -> Any:
        return [r.delta async for r in await llm.astream_chat(messages)]

    return {"chat": lambda: llm.chat(messages).message.content,
            "stream_chat": lambda: [r.delta for r in llm.stream_chat(messages)],
            "async_stream_chat": lambda: asyncio.run(astream()),
            "stream_chat_closed_early": stream_break}


def litellm_scenarios(srv: DevServer) -> Dict[str, Callable[[], Any]]:
    import litellm

    openai_kw = {"model": "openai/gpt-4o-mini", "api_base": srv.openai_base_url, "api_key": "x",
                 "messages": [{"role": "user", "content": "Say something"}]}
    anthropic_kw = {"model": "anthropic/claude-test", "api_base": srv.base_url + "/v1/messages", "api_key": "x",
                    "messages": [{"role": "user", "content": "Say something"}], "max_tokens": 100}

    def texts(stream: Any) -> List[Any]:
        return [c.choices[0].delta.content for c in stream]

    async def atexts(kw: Dict[str, Any]) -> List[Any]:
        return [c.choices[0].delta.content async for c in await litellm.acompletion(stream=True, **kw)]

    def closed_early(kw: Dict[str, Any]) -> Any:
        stream = litellm.completion(stream=True, **kw)
        first = next(stream)
        stream.close()  # the caller stops after the first chunk
        return first.choices[0].delta.content

    return {"openai_completion": lambda: litellm.completion(**openai_kw).choices[0].message.content,
            "openai_stream": lambda: texts(litellm.completion(stream=True, **openai_kw)),
            "openai_async_stream": lambda: asyncio.run(atexts(openai_kw)),
            "anthropic_completion": lambda: litellm.completion(**anthropic_kw).choices[0].message.content,
            "anthropic_stream": lambda: texts(litellm.completion(stream=True, **anthropic_kw)),
            "anthropic_async_stream": lambda: asyncio.run(atexts(anthropic_kw)),
            "openai_stream_closed_early": lambda: closed_early(openai_kw),
            "anthropic_stream_closed_early": lambda: closed_early(anthropic_kw)}


DISTRIBUTIONS = {"instructor": "instructor", "llama_index": "llama-index-llms-openai", "litellm": "litellm"}
SCENARIOS = {"instructor": instructor_scenarios, "llama_index": llama_index_scenarios, "litellm": litellm_scenarios}


# -- the bare SDK for the same request ----------------------------------------------------------------
def bare(srv: DevServer, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """What the bare SDK yields for ``body``: items (a stream) and the usage it reports."""
    if path.endswith("/v1/messages"):
        client: Any = anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="x", max_retries=0)
        result = client.messages.create(**body)
        if not body.get("stream"):
            return {"items": None, "usage": [result.usage.input_tokens, result.usage.output_tokens]}
        items, usage, through_stop_reason = list(result), [None, None], None
        for n, event in enumerate(items, 1):
            if event.type == "message_start":
                usage[0] = event.message.usage.input_tokens
            elif event.type == "message_delta":
                usage[1], through_stop_reason = event.usage.output_tokens, n
        # a reader may close right after the stop reason, before `message_stop` (LiteLLM's sync one)
        return {"items": len(items), "usage": usage, "through_stop_reason": through_stop_reason}
    client = openai.OpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0)
    result = client.chat.completions.create(**body)
    if not body.get("stream"):
        return {"items": None, "usage": [result.usage.prompt_tokens, result.usage.completion_tokens]}
    items = list(result)
    last = next((c.usage for c in reversed(items) if c.usage is not None), None)
    return {"items": len(items), "usage": [last.prompt_tokens, last.completion_tokens] if last else [None, None]}


def main(framework: str) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    steer.instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))
    report: Dict[str, Any] = {"versions": {}, "scenarios": {}}
    from importlib.metadata import version

    for dist in ("openai", "anthropic", "httpx", DISTRIBUTIONS[framework]):
        report["versions"][dist] = version(dist)
    with DevServer(chunk_delay=0, chunks=8) as srv:
        for name, run in SCENARIOS[framework](srv).items():
            srv.clear_requests()
            exporter.clear()
            result = run()
            gc.collect()  # a stream the framework dropped ends when collected
            steer.flush(60)
            spans = [dict(s.attributes) | {"status": s.status.status_code.name}
                     for s in exporter.get_finished_spans() if "gen_ai.operation.name" in (s.attributes or {})]
            sent = [(r.path, r.body) for r in srv.requests if r.method == "POST"]
            report["scenarios"][name] = {"result": repr(result)[:200], "spans": spans, "sent": sent}
        steer.uninstrument()
        for entry in report["scenarios"].values():
            entry["bare"] = [bare(srv, path, body) for path, body in entry["sent"]]
    print(REPORT + json.dumps(report, default=str))  # a line of its own: frameworks print to stdout too


if __name__ == "__main__":
    main(sys.argv[1])
