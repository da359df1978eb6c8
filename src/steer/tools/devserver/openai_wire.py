"""OpenAI Chat Completions and legacy Completions wire formats.

Shapes follow recent real streams (see shared/fixtures/streams/openai): every
chunk carries id/object/created/model/system_fingerprint and an `obfuscation`
pad, `"usage": null` appears only when `stream_options.include_usage` asked for
the final usage-only chunk (`choices: []`), and the stream ends with `[DONE]`.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from .fake_model import Answer, ToolSpec, answer, ident, padding, word
from .plan import Delivery, Knobs, StreamPlan, WireFormat, generation_time, json_delivery, text_of

_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"

# (type, code, param, message) per status, as the real API words them.
_ERRORS: dict[int, tuple[str, Optional[str], Optional[str], str]] = {
    400: ("invalid_request_error", None, "messages",
          "Invalid value for 'messages': the steer devserver was asked to reject this request."),
    401: ("invalid_request_error", "invalid_api_key", None,
          "Incorrect API key provided. You can find your API key at "
          "https://platform.openai.com/account/api-keys."),
    404: ("invalid_request_error", "model_not_found", None,
          "The model `{model}` does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", None,
          "Rate limit reached for {model} in organization org-steerdevserver on requests per min "
          "(RPM): Limit 3, Used 3, Requested 1. Please try again in 20s."),
    500: ("server_error", None, None, _SERVER_ERROR),
}


def openai_error(status: int, model: str) -> dict[str, Any]:
    kind, code, param, message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, None,
                 f"steer devserver error {status}"))
    return {"error": {"message": message.format(model=model), "type": kind, "param": param, "code": code}}


def openai_headers(knobs: Knobs, salt: int) -> list[tuple[str, str]]:
    return [("x-request-id", ident("req_", knobs.seed, salt, 32)), ("openai-processing-ms", "1"),
            ("openai-version", "2020-10-01")]


class _OpenAIBase(WireFormat):
    prefix = "chatcmpl-"

    def __init__(self, body: dict[str, Any], knobs: Knobs, salt: int) -> None:
        super().__init__(body, knobs, str(body.get("model") or "gpt-4o-mini"), bool(body.get("stream")))
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.id = ident(self.prefix, knobs.seed, salt, 29)
        self.created = int(time.time())
        self.headers = openai_headers(knobs, salt)
        self.answer = self._answer()

    def _answer(self) -> Answer:
        raise NotImplementedError

    def usage(self) -> dict[str, Any]:
        a = self.answer
        return {"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                "total_tokens": a.input_tokens + a.output_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}}

    def finish_reason(self) -> str:
        if self.answer.tool:
            return "tool_calls"
        return "length" if self.answer.truncated else "stop"

    def error(self, status: int) -> Delivery:
        return json_delivery(status, openai_error(status, self.model), self.headers)

    def error_frames(self, sent: int) -> list[bytes]:
        # What the API sends when generation fails after the 200: a bare error
        # object as a data line, then the connection ends without [DONE].
        return [self.frame(openai_error(500, self.model))]

    def _plan(self, head: list[dict], body: list[dict], tail: list[dict], more: Any) -> StreamPlan:
        frames = [self.frame(c) for c in tail] + [b"data: [DONE]\n\n"]
        return StreamPlan(content_type="text/event-stream; charset=utf-8",
                          head=[self.frame(c) for c in head], body=[self.frame(c) for c in body],
                          tail=frames, more=lambda i: self.frame(more(i)), headers=self.headers)


class ChatCompletions(_OpenAIBase):
    """`POST /v1/chat/completions`."""

    def _answer(self) -> Answer:
        messages = [m for m in self.body.get("messages") or [] if isinstance(m, dict)]
        users = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        others = [text_of(m.get("content")) for m in messages if m.get("role") != "user"]
        tools = [ToolSpec(t["function"]["name"], t["function"].get("parameters") or {})
                 for t in self.body.get("tools") or []
                 if isinstance(t, dict) and isinstance(t.get("function"), dict)]
        fmt = self.body.get("response_format") or {}
        return answer(users[-1] if users else "", self.knobs, tools=tools,
                      json_mode=fmt.get("type") in ("json_object", "json_schema"),
                      json_schema=(fmt.get("json_schema") or {}).get("schema"),
                      max_tokens=self.body.get("max_completion_tokens") or self.body.get("max_tokens"),
                      context=" ".join(users[:-1] + others))

    def chunk(self, delta: dict[str, Any], finish: Optional[str] = None, n: int = 0) -> dict[str, Any]:
        out = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model, "service_tier": "default", "system_fingerprint": "fp_steerdev0",
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            out["usage"] = None
        out["obfuscation"] = padding(self.knobs.seed, n)
        return out

    def stream(self) -> StreamPlan:
        a = self.answer
        if a.tool:
            call = {"index": 0, "id": ident("call_", self.knobs.seed, 1), "type": "function",
                    "function": {"name": a.tool.name, "arguments": ""}}
            first = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
            body = [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in a.tool_pieces]
        else:
            first = {"role": "assistant", "content": "", "refusal": None}
            body = [{"content": p} for p in a.pieces]
        tail = [self.chunk({}, self.finish_reason(), len(body) + 1)]
        if self.include_usage:
            tail.append({**self.chunk({}, n=len(body) + 2), "choices": [], "usage": self.usage()})
        return self._plan([self.chunk(first)], [self.chunk(d, n=i + 1) for i, d in enumerate(body)],
                          tail, lambda i: self.chunk({"content": " " + word(self.knobs.seed, i)}, n=i))

    def broken_frame(self) -> bytes:
        return self.frame({"choices": [{"index": 0, "delta": {}}]})

    def complete(self) -> Delivery:
        a = self.answer
        message: dict[str, Any] = {"role": "assistant", "content": a.text or None, "refusal": None,
                                   "annotations": []}
        if a.tool:
            message["tool_calls"] = [{"id": ident("call_", self.knobs.seed, 1), "type": "function",
                                      "function": {"name": a.tool.name, "arguments": a.tool_args}}]
        doc = {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "message": message, "logprobs": None,
                            "finish_reason": self.finish_reason()}],
               "usage": self.usage(), "service_tier": "default", "system_fingerprint": "fp_steerdev0"}
        delay = generation_time(self.knobs, len(a.pieces) or len(a.tool_pieces))
        return json_delivery(200, doc, self.headers, delay)


class Completions(_OpenAIBase):
    """Legacy `POST /v1/completions` (`text_completion` objects)."""

    prefix = "cmpl-"

    def _answer(self) -> Answer:
        prompt = self.body.get("prompt") or ""
        if isinstance(prompt, list):
            prompt = " ".join(p for p in prompt if isinstance(p, str))
        return answer(str(prompt), self.knobs, max_tokens=self.body.get("max_tokens"))

    def chunk(self, text: str, finish: Optional[str] = None) -> dict[str, Any]:
        out = {"id": self.id, "object": "text_completion", "created": self.created,
               "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
               "model": self.model, "system_fingerprint": None}
        if self.include_usage:
            out["usage"] = None
        return out

    def usage(self) -> dict[str, Any]:
        a = self.answer
        return {"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                "total_tokens": a.input_tokens + a.output_tokens}

    def stream(self) -> StreamPlan:
        pieces = self.answer.pieces
        tail = [self.chunk("", self.finish_reason())]
        if self.include_usage:
            tail.append({**self.chunk(""), "choices": [], "usage": self.usage()})
        return self._plan([self.chunk(pieces[0])], [self.chunk(p) for p in pieces[1:]], tail,
                          lambda i: self.chunk(" " + word(self.knobs.seed, i)))

    def broken_frame(self) -> bytes:
        return self.frame({"choices": [{"text": "", "index": 0}]})

    def complete(self) -> Delivery:
        doc = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
               "choices": [{"text": self.answer.text, "index": 0, "logprobs": None,
                            "finish_reason": self.finish_reason()}],
               "usage": self.usage(), "system_fingerprint": None}
        return json_delivery(200, doc, self.headers,
                             generation_time(self.knobs, len(self.answer.pieces)))
