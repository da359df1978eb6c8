"""Anthropic Messages wire format (`POST /v1/messages`).

Modelled on shared/fixtures/streams/anthropic: `message_start` (input usage),
`content_block_start`, a `ping`, `content_block_delta`s, `content_block_stop`,
`message_delta` (stop_reason + cumulative usage), `message_stop`. Like the real
API, data lines are padded with a few trailing spaces, which decoders must accept.
"""

from __future__ import annotations

import json
import random
from typing import Any, Optional

from .fake_model import Answer, ToolSpec, answer, fragments, ident, word
from .plan import Delivery, Knobs, StreamPlan, WireFormat, generation_time, json_delivery, text_of

# (error type, message) per status; 529 is Anthropic's "overloaded".
_ERRORS = {
    400: ("invalid_request_error", "messages: the steer devserver was asked to reject this request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization "
                              "of 50 requests per minute."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}

_TOOL_PREAMBLE = "I'll check the weather for you."


class Messages(WireFormat):
    overloaded_status = 529
    content_event = "content_block_delta"
    def __init__(self, body: dict[str, Any], knobs: Knobs, salt: int) -> None:
        super().__init__(body, knobs, str(body.get("model") or "claude-sonnet-4-5"), bool(body.get("stream")))
        self.id = ident("msg_01", knobs.seed, salt, 22)
        self.request_id = ident("req_011", knobs.seed, salt, 21)
        self.headers = [("request-id", self.request_id), ("anthropic-organization-id", "steer-devserver")]
        self.pad = random.Random(knobs.seed * 17 + salt)
        self.answer = self._answer()
        self.tool_id = ident("toolu_01", knobs.seed, salt, 22)

    def _answer(self) -> Answer:
        b = self.body
        users = [text_of(m.get("content")) for m in b.get("messages") or []
                 if isinstance(m, dict) and m.get("role") == "user"]
        tools = [ToolSpec(str(t.get("name")), t.get("input_schema") or {})
                 for t in b.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
        fmt = (b.get("output_config") or {}).get("format") or b.get("output_format") or {}
        return answer(users[-1] if users else "", self.knobs, tools=tools,
                      json_mode=fmt.get("type") == "json_schema", json_schema=fmt.get("schema"),
                      max_tokens=b.get("max_tokens"),
                      context=" ".join(users[:-1] + [text_of(b.get("system"))]))

    def frame(self, data: Any, event: Optional[str] = None) -> bytes:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        return super().frame(text + " " * self.pad.randint(0, 12), event)

    def event(self, payload: dict[str, Any]) -> bytes:
        return self.frame(payload, payload["type"])

    def usage(self, output_tokens: int) -> dict[str, Any]:
        return {"input_tokens": self.answer.input_tokens, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": output_tokens}

    def stop_reason(self) -> str:
        if self.answer.tool:
            return "tool_use"
        return "max_tokens" if self.answer.truncated else "end_turn"

    def _blocks(self) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """(content block as started, its deltas) in order."""
        a = self.answer
        if not a.tool:
            return [({"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in a.pieces])]
        preamble = [{"type": "text_delta", "text": p} for p in fragments(_TOOL_PREAMBLE, 8)]
        tool = {"type": "tool_use", "id": self.tool_id, "name": a.tool.name, "input": {}}
        # The real API opens every tool_use input with an empty partial_json.
        args = [{"type": "input_json_delta", "partial_json": p} for p in [""] + a.tool_pieces]
        return [({"type": "text", "text": ""}, preamble), (tool, args)]

    def stream(self) -> StreamPlan:
        message = {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {**self.usage(1), "service_tier": "standard"}}
        head = [self.event({"type": "message_start", "message": message})]
        body: list[bytes] = []
        for index, (block, deltas) in enumerate(self._blocks()):
            start = self.event({"type": "content_block_start", "index": index, "content_block": block})
            (body if index else head).append(start)
            if index == 0:
                head.append(self.frame({"type": "ping"}, "ping"))
            body += [self.event({"type": "content_block_delta", "index": index, "delta": d})
                     for d in deltas]
            body.append(self.event({"type": "content_block_stop", "index": index}))
        tail = [body.pop(),  # the last content_block_stop closes the turn, unpaced
                self.event({"type": "message_delta",
                            "delta": {"stop_reason": self.stop_reason(), "stop_sequence": None},
                            "usage": self.usage(self.answer.output_tokens)}),
                self.event({"type": "message_stop"})]
        return StreamPlan(content_type="text/event-stream; charset=utf-8", head=head, body=body, tail=tail,
                          more=lambda i: self.event({"type": "content_block_delta", "index": 0, "delta": {
                              "type": "text_delta", "text": " " + word(self.knobs.seed, i)}}),
                          headers=self.headers)

    def complete(self) -> Delivery:
        a = self.answer
        content: list[dict[str, Any]] = []
        if a.tool:
            content = [{"type": "text", "text": _TOOL_PREAMBLE},
                       {"type": "tool_use", "id": self.tool_id, "name": a.tool.name,
                        "input": json.loads(a.tool_args)}]
        else:
            content = [{"type": "text", "text": a.text}]
        doc = {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
               "content": content, "stop_reason": self.stop_reason(), "stop_sequence": None,
               "usage": {**self.usage(a.output_tokens), "service_tier": "standard"}}
        return json_delivery(200, doc, self.headers,
                             generation_time(self.knobs, len(a.pieces) or len(a.tool_pieces)))

    def error_body(self, status: int) -> dict[str, Any]:
        kind, message = _ERRORS.get(status, ("api_error" if status >= 500 else "invalid_request_error",
                                             f"steer devserver error {status}"))
        return {"type": "error", "error": {"type": kind, "message": message.format(model=self.model)},
                "request_id": self.request_id}

    def error(self, status: int) -> Delivery:
        return json_delivery(status, self.error_body(status), self.headers)

    def error_frames(self, sent: int) -> list[bytes]:
        return [self.frame(self.error_body(529), "error")]

    def broken_frame(self) -> bytes:
        # A text delta without its block `index`.
        return self.frame({"type": "content_block_delta", "delta": {"type": "text_delta", "text": ""}},
                          "content_block_delta")
