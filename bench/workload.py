"""Synthetic provider streams for the overhead benchmark, served to the REAL SDKs over a MockTransport.

No network: each client is given an httpx (or httpx2) client whose ``MockTransport`` answers every
request with a freshly started response whose body yields one pre-encoded SSE event per read, like
a server that flushes after every token. In async mode the body also does ``await asyncio.sleep(0)``
before each event, so the event loop cycles once per chunk, as it does when awaiting a socket.

Two workloads, the same text (N content pieces of 1-4 "tokens" each):

* ``openai``: Chat Completions with ``stream_options.include_usage`` — a role chunk, N content
  chunks, a finish chunk, a usage chunk, ``[DONE]``: the SDK yields N + 3 ``ChatCompletionChunk``s.
  Every chunk carries what api.openai.com sends (id, created, model, service_tier,
  system_fingerprint, logprobs, usage: null and an ``obfuscation`` pad). This is the shape of the
  team's peers harness (``bench/peers/workload.py``), so the two benchmarks measure the same stream.
* ``anthropic``: Messages — ``message_start``, ``content_block_start``, ``ping``, N
  ``content_block_delta`` (text_delta), ``content_block_stop``, ``message_delta`` (stop reason,
  usage), ``message_stop``: the SDK yields N + 5 events (it drops ``ping``).

``include_usage=False`` drops the usage (OpenAI: no usage chunk; Anthropic: no usage fields), so
steer has to estimate it at the end of the stream: that is how the end-of-stream estimation cost is
measured.
"""

from __future__ import annotations

import importlib
import json
import random
import string
from typing import Any, Dict, List

OPENAI_MODEL = "gpt-4o-mini-2024-07-18"
OPENAI_REQUEST_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
CREATED = 1_763_700_000
PROMPT_TOKENS = 52
SYSTEM = "You are a helpful assistant that answers concisely."
PROMPT = ("Explain, in about seven hundred words, how streaming responses work in chat-completion APIs "
          "and why per-token overhead matters for observability tooling.")

_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "more about up out them some could what into than its only other new time model stream token "
    "latency span trace metric observability instrument chunk delta response request server client "
    "python async await iterator generator overhead measure benchmark result value function"
).split()
_PUNCT = [",", ".", ";", ":", "!", "?"]


def text_pieces(chunks: int, seed: int) -> tuple:
    """(pieces, completion tokens): N pieces of 1-4 word/punctuation "tokens" each."""
    rng = random.Random(seed)
    pieces, tokens = [], 0
    for _ in range(chunks):
        n = rng.randint(1, 4)
        tokens += n
        words = []
        for _ in range(n):
            r = rng.random()
            if r < 0.08:
                words.append(rng.choice(_PUNCT))
            else:
                w = rng.choice(_WORDS)
                words.append(" " + (w.capitalize() if r < 0.15 else w))
        pieces.append("".join(words))
    return pieces, tokens


def _sse(obj: Any, event: str = "") -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class Workload:
    """One pre-encoded stream (``events``, bytes per SSE event) and what a client should see."""

    provider = ""

    def __init__(self, chunks: int = 1000, seed: int = 1234, include_usage: bool = True) -> None:
        self.content_chunks = chunks
        self.include_usage = include_usage
        self.pieces, self.completion_tokens = text_pieces(chunks, seed)
        self.text = "".join(self.pieces)
        self.events: List[bytes] = self._encode(random.Random(seed + 1))
        self.headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
                        "x-request-id": "req_benchsynthetic0000000000000000"}

    def _encode(self, rng: random.Random) -> List[bytes]:
        raise NotImplementedError

    @property
    def chunks_yielded(self) -> int:
        raise NotImplementedError

    def body_bytes(self) -> int:
        return sum(len(e) for e in self.events)

    # -- clients ----------------------------------------------------------------------------------------
    def response_json(self) -> Dict[str, Any]:
        """The same answer as one non-streaming response body."""
        raise NotImplementedError

    def transport(self, httpx_mod: Any, is_async: bool, yield_per_event: bool = True, streaming: bool = True) -> Any:
        events, headers = self.events, self.headers
        if not streaming:
            body = json.dumps(self.response_json()).encode()
            json_headers = {"content-type": "application/json", "x-request-id": headers["x-request-id"]}

            def json_handler(request: Any) -> Any:
                return httpx_mod.Response(200, headers=json_headers, content=body)
            return httpx_mod.MockTransport(json_handler)
        if not is_async:
            def handler(request: Any) -> Any:
                return httpx_mod.Response(200, headers=headers, content=iter(events))
            return httpx_mod.MockTransport(handler)
        import asyncio

        async def body() -> Any:
            for e in events:
                if yield_per_event:
                    await asyncio.sleep(0)
                yield e

        def ahandler(request: Any) -> Any:
            return httpx_mod.Response(200, headers=headers, content=body())
        return httpx_mod.MockTransport(ahandler)


class OpenAIChat(Workload):
    provider = "openai"
    http_lib = "httpx"  # the legacy httpx.Client openai 3.x accepts, as in the peers harness

    def _encode(self, rng: random.Random) -> List[bytes]:
        def chunk(delta: Dict[str, Any], finish: Any = None, choices: bool = True, usage: Any = None) -> bytes:
            content = delta.get("content") or ""
            pad = max(1, 16 - len(content)) if content else rng.randint(4, 12)
            return _sse({
                "id": "chatcmpl-CfBenchSyntheticStream0000001", "object": "chat.completion.chunk",
                "created": CREATED, "model": OPENAI_MODEL, "service_tier": "default",
                "system_fingerprint": "fp_0ba0d124f1",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
                "usage": usage,
                "obfuscation": "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(pad)),
            })

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": p}) for p in self.pieces]
        events.append(chunk({}, finish="stop"))
        if self.include_usage:
            events.append(chunk({}, choices=False, usage={
                "prompt_tokens": PROMPT_TOKENS, "completion_tokens": self.completion_tokens,
                "total_tokens": PROMPT_TOKENS + self.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
            }))
        events.append(b"data: [DONE]\n\n")
        return events

    @property
    def chunks_yielded(self) -> int:
        return self.content_chunks + (3 if self.include_usage else 2)

    def response_json(self) -> Dict[str, Any]:
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": self.completion_tokens,
                 "total_tokens": PROMPT_TOKENS + self.completion_tokens}
        return {"id": "chatcmpl-CfBenchSyntheticStream0000001", "object": "chat.completion", "created": CREATED,
                "model": OPENAI_MODEL, "service_tier": "default", "system_fingerprint": "fp_0ba0d124f1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage if self.include_usage else None}

    def client(self, is_async: bool, yield_per_event: bool = True, streaming: bool = True) -> Any:
        import openai

        httpx_mod = importlib.import_module(self.http_lib)
        transport = self.transport(httpx_mod, is_async, yield_per_event, streaming)
        base = "http://bench.invalid/v1"
        if is_async:
            return openai.AsyncOpenAI(api_key="x", base_url=base, max_retries=0,
                                      http_client=httpx_mod.AsyncClient(transport=transport))
        return openai.OpenAI(api_key="x", base_url=base, max_retries=0, http_client=httpx_mod.Client(transport=transport))

    def kwargs(self) -> Dict[str, Any]:
        kw: Dict[str, Any] = dict(model=OPENAI_REQUEST_MODEL, stream=True, temperature=0.7, max_tokens=4096,
                                  messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}])
        if self.include_usage:
            kw["stream_options"] = {"include_usage": True}
        return kw

    def call(self, client: Any, streaming: bool = True) -> Any:
        kw = self.kwargs()
        if not streaming:
            kw.pop("stream_options", None)
            kw["stream"] = False
        return client.chat.completions.create(**kw)

    @staticmethod
    def chunk_text(chunk: Any) -> str:
        return (chunk.choices[0].delta.content or "") if chunk.choices else ""


class AnthropicMessages(Workload):
    provider = "anthropic"
    http_lib = "httpx2"  # the anthropic SDK's own HTTP library

    def _encode(self, rng: random.Random) -> List[bytes]:
        start_usage = {"input_tokens": PROMPT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                       "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                       "output_tokens": 1, "service_tier": "standard"}
        events = [_sse({"type": "message_start", "message": {
            "model": ANTHROPIC_MODEL, "id": "msg_01BenchSyntheticStream000001", "type": "message", "role": "assistant",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": start_usage if self.include_usage else None}}, "message_start")]
        events.append(_sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                           "content_block_start"))
        events.append(b'event: ping\ndata: {"type": "ping"}\n\n')
        for p in self.pieces:
            events.append(_sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                               "content_block_delta"))
        events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        delta: Dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
        if self.include_usage:
            delta["usage"] = {"input_tokens": PROMPT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                              "output_tokens": self.completion_tokens}
        events.append(_sse(delta, "message_delta"))
        events.append(_sse({"type": "message_stop"}, "message_stop"))
        return events

    @property
    def chunks_yielded(self) -> int:
        return self.content_chunks + 5  # the SDK swallows `ping`

    def response_json(self) -> Dict[str, Any]:
        return {"model": ANTHROPIC_MODEL, "id": "msg_01BenchSyntheticStream000001", "type": "message",
                "role": "assistant", "content": [{"type": "text", "text": self.text}], "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": self.completion_tokens} if self.include_usage
                else {"input_tokens": 0, "output_tokens": 0}}

    def client(self, is_async: bool, yield_per_event: bool = True, streaming: bool = True) -> Any:
        import anthropic

        httpx_mod = importlib.import_module(self.http_lib)
        transport = self.transport(httpx_mod, is_async, yield_per_event, streaming)
        base = "http://bench.invalid"
        if is_async:
            return anthropic.AsyncAnthropic(api_key="x", base_url=base, max_retries=0,
                                            http_client=httpx_mod.AsyncClient(transport=transport))
        return anthropic.Anthropic(api_key="x", base_url=base, max_retries=0, http_client=httpx_mod.Client(transport=transport))

    def kwargs(self) -> Dict[str, Any]:
        return dict(model=ANTHROPIC_MODEL, max_tokens=4096, stream=True, system=SYSTEM,
                    messages=[{"role": "user", "content": PROMPT}])

    def call(self, client: Any, streaming: bool = True) -> Any:
        return client.messages.create(**dict(self.kwargs(), stream=streaming))

    @staticmethod
    def chunk_text(chunk: Any) -> str:
        if chunk.type == "content_block_delta" and chunk.delta.type == "text_delta":
            return chunk.delta.text
        return ""


class OpenAIChatJSON(OpenAIChat):
    """``openai`` in JSON mode: ``response_format={"type": "json_object"}`` and the text, cut in pieces of
    1-4 tokens' length, is one JSON document (an array of small objects), so steer's JSON tracker
    (``steer.json.*``: objects counted as they close, validity checked at the end) runs on every chunk."""

    provider = "openai"

    def __init__(self, chunks: int = 1000, seed: int = 1234, include_usage: bool = True) -> None:
        super().__init__(chunks, seed, include_usage)

    def _encode(self, rng: random.Random) -> List[bytes]:
        self.pieces = json_pieces(self.content_chunks, rng)
        self.text = "".join(self.pieces)
        return super()._encode(rng)

    def kwargs(self) -> Dict[str, Any]:
        return dict(super().kwargs(), response_format={"type": "json_object"})


def json_pieces(chunks: int, rng: random.Random) -> List[str]:
    """A JSON array of small objects, cut into exactly ``chunks`` pieces of about 3-12 characters."""
    items, text = [], ""
    while len(text) < chunks * 8:
        items.append({"id": len(items), "word": rng.choice(_WORDS), "score": round(rng.random(), 3),
                      "tags": [rng.choice(_WORDS) for _ in range(rng.randint(0, 2))]})
        text = json.dumps({"results": items}, separators=(",", ": "))
    cuts = sorted(rng.sample(range(1, len(text)), chunks - 1))
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


WORKLOADS = {"openai": OpenAIChat, "anthropic": AnthropicMessages, "openai-json": OpenAIChatJSON}
