"""Gemini / Vertex AI `generateContent` and `streamGenerateContent` wire formats.

Modelled on shared/fixtures/streams/google: with `?alt=sse` every event ends in
CRLF CRLF and repeats `usageMetadata` as running totals, the last one carrying
`finishReason`; without `alt=sse` the same objects form one JSON array that is
streamed incrementally (`[{...}`, `,\\r\\n{...}`, `]`). Function calls arrive whole.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from .fake_model import Answer, ToolSpec, answer, ident, word
from .plan import Delivery, Knobs, StreamPlan, WireFormat, generation_time, json_delivery

# status -> canonical gRPC status name used in Google error bodies.
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
           404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
           504: "DEADLINE_EXCEEDED"}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
         "cookie or other valid authentication credential.",
    404: "models/{model} is not found for API version v1beta, or is not supported for "
         "generateContent.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}


def google_error(status: int, model: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": _MESSAGES.get(status, f"steer devserver error {status}")
                      .format(model=model), "status": _STATUS.get(status, "UNKNOWN"), "details": []}}


def _dump(obj: Any) -> str:
    # Gemini's own serializer puts a space after ':' and ','.
    return json.dumps(obj)


class Gemini(WireFormat):
    eol = "\r\n"
    overloaded_status = 503

    def __init__(self, body: dict[str, Any], knobs: Knobs, salt: int, *, model: str,
                 stream: bool, sse: bool) -> None:
        super().__init__(body, knobs, model, stream)
        self.sse_mode = sse
        self.response_id = ident("", knobs.seed, salt, 23)
        self.answer = self._answer()

    def _answer(self) -> Answer:
        b = self.body
        users = [" ".join(str(p.get("text", "")) for p in c.get("parts") or [] if isinstance(p, dict))
                 for c in b.get("contents") or [] if isinstance(c, dict) and c.get("role", "user") == "user"]
        tools = [ToolSpec(str(d.get("name")), d.get("parametersJsonSchema") or d.get("parameters") or {})
                 for t in b.get("tools") or [] if isinstance(t, dict)
                 for d in t.get("functionDeclarations") or [] if isinstance(d, dict)]
        config = b.get("generationConfig") or {}
        system = " ".join(str(p.get("text", "")) for p in (b.get("systemInstruction") or {}).get("parts") or []
                          if isinstance(p, dict))
        return answer(users[-1] if users else "", self.knobs, tools=tools,
                      json_mode=config.get("responseMimeType") == "application/json",
                      json_schema=config.get("responseJsonSchema") or _lower_types(config.get("responseSchema")),
                      max_tokens=config.get("maxOutputTokens"), context=" ".join(users[:-1] + [system]))

    def usage(self, candidates: int) -> dict[str, Any]:
        prompt = self.answer.input_tokens
        return {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                "totalTokenCount": prompt + candidates,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}

    def chunk(self, parts: list[dict[str, Any]], candidates: int, finish: Optional[str] = None) -> dict:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        return {"candidates": [candidate], "usageMetadata": self.usage(candidates),
                "modelVersion": self.model, "responseId": self.response_id}

    def finish_reason(self) -> str:
        return "MAX_TOKENS" if self.answer.truncated else "STOP"

    def frame(self, data: Any, event: Optional[str] = None) -> bytes:
        text = data if isinstance(data, str) else _dump(data)
        if self.sse_mode:
            return super().frame(text, event)
        return (",\r\n" + text).encode()  # an element of the streamed JSON array

    def _chunks(self) -> list[dict[str, Any]]:
        a = self.answer
        if a.tool:
            call = {"functionCall": {"name": a.tool.name, "args": json.loads(a.tool_args)}}
            return [self.chunk([call], a.output_tokens, self.finish_reason())]
        last = len(a.pieces) - 1
        # The last text chunk carries the finish reason, as in the recordings.
        return [self.chunk([{"text": p}], i + 1, self.finish_reason() if i == last else None)
                for i, p in enumerate(a.pieces)]

    def stream(self) -> StreamPlan:
        frames = [self.frame(c) for c in self._chunks()]
        content_type = "text/event-stream"
        if not self.sse_mode:
            frames[0] = b"[" + frames[0][3:]  # the first element has no separator
            frames.append(b"]")
            content_type = "application/json; charset=UTF-8"
        tail = frames[-1:] if self.sse_mode else frames[-2:]
        body = frames[:len(frames) - len(tail)]
        return StreamPlan(content_type=content_type, head=[], body=body, tail=tail,
                          more=lambda i: self.frame(self.chunk([{"text": " " + word(self.knobs.seed, i)}],
                                                               len(self.answer.pieces) + i)))

    def complete(self) -> Delivery:
        a = self.answer
        if a.tool:
            doc = self._chunks()[0]
        else:
            doc = self.chunk([{"text": a.text}], a.output_tokens, self.finish_reason())
        return json_delivery(200, doc, delay=generation_time(self.knobs, len(a.pieces) or 1))

    def error(self, status: int) -> Delivery:
        return json_delivery(status, google_error(status, self.model))

    def error_frames(self, sent: int) -> list[bytes]:
        error = self.frame(google_error(500, self.model))
        if not self.sse_mode and sent == 0:
            error = b"[" + error[3:]
        return [error] if self.sse_mode else [error, b"]"]

    def broken_frame(self) -> bytes:
        # A candidate without parts, and no usageMetadata / modelVersion / responseId.
        return self.frame({"candidates": [{"content": {"role": "model"}, "index": 0}]})


def _lower_types(schema: Any) -> Optional[dict[str, Any]]:
    """`responseSchema` uses OpenAPI-style upper-case types (STRING, OBJECT); normalise."""
    if not isinstance(schema, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {k: _lower_types(v) or {} for k, v in value.items()}
        elif key == "items":
            out[key] = _lower_types(value) or {}
        else:
            out[key] = value
    return out
