"""Legacy Completions (``client.completions.create``) and the Azure OpenAI clients, through the real
openai SDK.

No public recording of a legacy ``text_completion`` stream was found, so its bodies are written here
by hand in the wire format OpenAI sends for ``gpt-3.5-turbo-instruct`` (``choices[].text`` fragments,
a last chunk with the finish reason, a usage-only chunk when ``stream_options.include_usage`` is set,
then ``[DONE]``). Expectations come from the SDK parsing the same bytes without steer. Azure uses the
real recording ``azure_openai/azure_chat_content_filter_2024.json``.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any, Dict, List, Optional

import openai
import pytest

from steer import instrumentation
from recordings import Served, load

MODEL = "gpt-3.5-turbo-instruct"
PIECES = ["\n\n", "This", " is", " a", " test", "."]
USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


def chunk(choices: List[Dict[str, Any]], **extra: Any) -> Dict[str, Any]:
    return {"id": "cmpl-9QpY2bR7x2Qv0Zl", "object": "text_completion", "created": 1716000000,
            "choices": choices, "model": MODEL, **extra}


def completion_sse(pieces: List[str] = PIECES, finish: str = "stop", usage: bool = True, n: int = 1) -> Dict[str, Any]:
    events = []
    for text in pieces:
        for index in range(n):  # n > 1: choices interleaved, as the API sends them
            events.append(chunk([{"text": text, "index": index, "logprobs": None, "finish_reason": None}]))
    for index in range(n):
        events.append(chunk([{"text": "", "index": index, "logprobs": None, "finish_reason": finish}]))
    if usage:
        events.append(chunk([], usage=USAGE))
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    request = {"model": MODEL, "prompt": "Say this is a test", "max_tokens": 7, "temperature": 0, "stream": True}
    if usage:
        request["stream_options"] = {"include_usage": True}
    if n != 1:
        request["n"] = n
    return {"request": {"body": request}, "response": {"status": 200, "content_type": "text/event-stream", "body": body},
            "_chunks": len(events)}


def completion_json(finish: str = "length") -> Dict[str, Any]:
    body = chunk([{"text": "".join(PIECES), "index": 0, "logprobs": None, "finish_reason": finish}], usage=USAGE)
    body["object"] = "text_completion"
    request = {"model": MODEL, "prompt": "Say this is a test", "max_tokens": 7}
    return {"request": {"body": request}, "response": {"status": 200, "content_type": "application/json", "body": json.dumps(body)}}


def openai_client(rec: Dict[str, Any], is_async: bool) -> Any:
    served = Served(rec)
    if is_async:
        return openai.AsyncOpenAI(api_key="test", http_client=served.async_client())
    return openai.OpenAI(api_key="test", http_client=served.client())


def sdk_texts(rec: Dict[str, Any]) -> Dict[int, str]:
    """What the SDK yields for the same bytes, without steer: text per choice."""
    assert not instrumentation.patched_targets()
    out: Dict[int, str] = {}
    for c in openai_client(rec, False).completions.create(**rec["request"]["body"]):
        for choice in c.choices:
            out[choice.index] = out.get(choice.index, "") + choice.text
    return out


class Collected:
    def __init__(self) -> None:
        self.complete: List[Any] = []
        self.deltas: List[Any] = []

    def options(self) -> Dict[str, Any]:
        return {"on_complete": self.complete.append, "on_delta": self.deltas.append}


def only_span(tel: Any) -> Any:
    spans = tel.spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


async def call(client: Any, is_async: bool, body: Dict[str, Any], resource: str = "completions") -> List[Any]:
    create = client.completions.create if resource == "completions" else client.chat.completions.create
    if not is_async:
        result = create(**body)
        return list(result) if body.get("stream") else [result]
    result = await create(**body)
    if body.get("stream"):
        return [c async for c in result]
    return [result]


# -- legacy completions -------------------------------------------------------------------------------
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_completions_stream(is_async, instrumented):
    rec = completion_sse()
    want = sdk_texts(rec)
    got = Collected()
    tel = instrumented(**got.options())
    chunks = await call(openai_client(rec, is_async), is_async, rec["request"]["body"])
    span = only_span(tel)
    a = span.attributes
    assert span.name == f"text_completion {MODEL}"
    assert a["gen_ai.operation.name"] == "text_completion"
    assert a["openai.api.type"] == "completions"
    assert a["gen_ai.provider.name"] == "openai" and a["server.address"] == "api.openai.com"
    assert a["gen_ai.request.stream"] is True and a["gen_ai.request.max_tokens"] == 7
    assert a["steer.stream.end"] == "complete" and a["steer.stream.chunks"] == len(chunks) == rec["_chunks"]
    assert list(a["gen_ai.response.finish_reasons"]) == ["stop"]
    assert a["gen_ai.response.model"] == MODEL and a["gen_ai.response.id"] == "cmpl-9QpY2bR7x2Qv0Zl"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (5, 7)
    assert got.complete[0].text == want[0] == "".join(PIECES)
    assert "".join(d.get_text() for d in got.deltas) == want[0]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_completions_stream_without_usage_is_estimated(is_async, instrumented):
    rec = completion_sse(finish="length", usage=False)
    tel = instrumented()
    await call(openai_client(rec, is_async), is_async, rec["request"]["body"])
    a = only_span(tel).attributes
    assert a["steer.usage.source"] == "estimated"
    assert "gen_ai.usage.output_tokens" not in a and a["steer.usage.estimated.output_tokens"] > 0
    assert list(a["gen_ai.response.finish_reasons"]) == ["length"]


def test_completions_n2_interleaved(instrumented):
    rec = completion_sse(n=2)
    want = sdk_texts(rec)
    got = Collected()
    tel = instrumented(**got.options())
    list(openai_client(rec, False).completions.create(**rec["request"]["body"]))
    a = only_span(tel).attributes
    assert a["gen_ai.request.choice.count"] == 2
    assert list(a["gen_ai.response.finish_reasons"]) == ["stop", "stop"]
    assert got.complete[0].text == want[0]  # the event's text is the first choice's, as the SDK's choices[0]
    for index in (0, 1):
        assert "".join(d.delta for d in got.deltas if d.choice_index == index) == want[index]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_completions_not_streaming(is_async, instrumented):
    rec = completion_json()
    got = Collected()
    tel = instrumented(**got.options())
    (resp,) = await call(openai_client(rec, is_async), is_async, rec["request"]["body"])
    a = only_span(tel).attributes
    assert a["gen_ai.request.stream"] is False and "steer.stream.end" not in a
    assert a["gen_ai.operation.name"] == "text_completion"
    assert list(a["gen_ai.response.finish_reasons"]) == ["length"]
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (5, 7)
    assert got.complete[0].text == resp.choices[0].text


def test_completions_lifecycle(instrumented):
    rec = completion_sse()
    tel = instrumented()
    client = openai_client(rec, False)
    with client.completions.create(**rec["request"]["body"]) as stream:
        for _ in stream:
            break
    assert only_span(tel).attributes["steer.stream.end"] == "closed_early"
    tel.clear()
    stream = client.completions.create(**rec["request"]["body"])
    next(stream)
    del stream
    gc.collect()
    a = only_span(tel).attributes
    assert (a["steer.stream.end"], a["steer.stream.chunks"]) == ("abandoned", 1)
    assert tel.active_streams() == 0


async def test_completions_lifecycle_async(instrumented):
    rec = completion_sse()
    tel = instrumented()
    client = openai_client(rec, True)
    stream = await client.completions.create(**rec["request"]["body"])
    await stream.__anext__()
    await stream.close()
    a = only_span(tel).attributes
    assert (a["steer.stream.end"], a["steer.stream.chunks"]) == ("closed_early", 1)
    tel.clear()
    boom = RuntimeError("user code")
    with pytest.raises(RuntimeError) as caught:
        async with await client.completions.create(**rec["request"]["body"]) as stream:
            async for _ in stream:
                raise boom
    assert caught.value is boom
    assert only_span(tel).attributes["steer.stream.end"] == "closed_early"
    assert tel.active_streams() == 0


# -- Azure OpenAI -------------------------------------------------------------------------------------
AZURE = "azure_openai/azure_chat_content_filter_2024.json"
ENDPOINT = "https://myres.openai.azure.com"


def azure_client(rec: Dict[str, Any], is_async: bool, served: Optional[Served] = None) -> Any:
    served = served or Served(rec)
    cls, http = (openai.AsyncAzureOpenAI, served.async_client()) if is_async else (openai.AzureOpenAI, served.client())
    return cls(azure_endpoint=ENDPOINT, api_version="2024-02-01", api_key="test", http_client=http)


def data_events(rec: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [json.loads(line[5:]) for line in rec["response"]["body"].splitlines()
            if line.startswith("data:") and line[5:].strip() != "[DONE]"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_azure_chat_stream(is_async, instrumented):
    rec = load(AZURE)
    events = data_events(rec)
    first_real = next(e for e in events if e["model"])
    want = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    got = Collected()
    served = Served(rec)
    tel = instrumented(**got.options())
    chunks = await call(azure_client(rec, is_async, served), is_async, rec["request"]["body"], resource="chat")
    span = only_span(tel)
    a = span.attributes
    assert span.name == "chat openllmetry-testing"  # the deployment name is the request model
    assert a["gen_ai.provider.name"] == "azure.ai.openai"
    assert (a["server.address"], a["server.port"]) == ("myres.openai.azure.com", 443)
    assert a["gen_ai.response.model"] == first_real["model"] == "gpt-35-turbo"  # not the empty first chunk's
    assert a["gen_ai.response.id"] == first_real["id"]
    assert a["steer.stream.chunks"] == len(chunks) == len(events)  # the prompt-filter chunk counts as a chunk
    assert a["steer.stream.end"] == "complete"
    assert list(a["gen_ai.response.finish_reasons"]) == ["stop"]
    assert a["steer.usage.source"] == "estimated"  # Azure sent no usage
    assert got.complete[0].text == want == "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (request,) = served.requests
    assert request.url.path == "/openai/deployments/openllmetry-testing/chat/completions"
    assert request.url.params["api-version"] == "2024-02-01"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_azure_responses_stream(is_async, instrumented):
    rec = load("openai/responses_basic_gpt4o_mini.json")
    tel = instrumented()
    client = azure_client(rec, is_async)
    body = {k: v for k, v in rec["request"]["body"].items() if k != "stream"}
    if is_async:
        async with client.responses.stream(**body) as stream:
            final = await stream.get_final_response()
    else:
        with client.responses.stream(**body) as stream:
            final = stream.get_final_response()
    a = only_span(tel).attributes
    assert a["gen_ai.provider.name"] == "azure.ai.openai" and a["server.address"] == "myres.openai.azure.com"
    assert a["openai.api.type"] == "responses" and a["steer.stream.end"] == "complete"
    assert a["gen_ai.usage.output_tokens"] == final.usage.output_tokens


async def test_azure_abandoned_async(instrumented):
    rec = load(AZURE)
    tel = instrumented()
    stream = await azure_client(rec, True).chat.completions.create(**rec["request"]["body"])
    await stream.__anext__()
    del stream
    for _ in range(50):
        gc.collect()
        if tel.spans():
            break
        await asyncio.sleep(0)
    assert only_span(tel).attributes["steer.stream.end"] == "abandoned"
    assert tel.active_streams() == 0
