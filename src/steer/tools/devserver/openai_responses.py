"""OpenAI Responses API wire format (`POST /v1/responses`).

Modelled on shared/fixtures/streams/openai/responses_*.json: each event is
`event: <type>` + `data:` with a running `sequence_number`, and the same output
arrives several times over (deltas, `.done`, `content_part.done`,
`output_item.done`, `response.completed`) — the duplication steer must undo.
"""

from __future__ import annotations

import time
from typing import Any

from .fake_model import Answer, ToolSpec, answer, ident, padding, word
from .openai_wire import openai_error, openai_headers
from .plan import Delivery, Knobs, StreamPlan, WireFormat, generation_time, json_delivery, text_of


def _input_text(value: Any) -> list[str]:
    """`input` is a string or a list of messages whose content is a string or parts."""
    if isinstance(value, str):
        return [value]
    texts: list[str] = []
    for item in value or []:
        if not isinstance(item, dict) or item.get("role") not in ("user", None):
            continue
        content = item.get("content")
        if isinstance(content, (str, list)):
            texts.append(text_of(content))
    return texts


class Responses(WireFormat):
    content_event = "response.output_text.delta"

    def __init__(self, body: dict[str, Any], knobs: Knobs, salt: int) -> None:
        super().__init__(body, knobs, str(body.get("model") or "gpt-4o-mini"), bool(body.get("stream")))
        self.id = ident("resp_", knobs.seed, salt, 48)
        self.call_id = ident("call_", knobs.seed, salt, 24)
        self.created = int(time.time())
        self.headers = openai_headers(knobs, salt)
        self.format = ((body.get("text") or {}).get("format")) or {"type": "text"}
        self.answer = self._answer()
        self.item_id = ident("fc_" if self.answer.tool else "msg_", knobs.seed, salt + 1, 48)
        self.seq = 0

    def _answer(self) -> Answer:
        users = _input_text(self.body.get("input"))
        tools = [ToolSpec(str(t.get("name")), t.get("parameters") or {})
                 for t in self.body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        instructions = self.body.get("instructions")
        return answer(users[-1] if users else "", self.knobs, tools=tools,
                      json_mode=self.format.get("type") in ("json_object", "json_schema"),
                      json_schema=self.format.get("schema"),
                      max_tokens=self.body.get("max_output_tokens"),
                      context=" ".join(users[:-1] + ([instructions] if isinstance(instructions, str) else [])))

    # -- objects ---------------------------------------------------------------

    def usage(self) -> dict[str, Any]:
        a = self.answer
        return {"input_tokens": a.input_tokens, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": a.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": a.input_tokens + a.output_tokens}

    def item(self, done: bool) -> dict[str, Any]:
        a, status = self.answer, "completed" if done else "in_progress"
        if a.tool:
            return {"id": self.item_id, "type": "function_call", "status": status,
                    "arguments": a.tool_args if done else "", "call_id": self.call_id, "name": a.tool.name}
        content = [self.part(a.text)] if done else []
        return {"id": self.item_id, "type": "message", "status": status, "content": content,
                "role": "assistant"}

    @staticmethod
    def part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def response(self, status: str) -> dict[str, Any]:
        finished = status != "in_progress"
        b = self.body
        return {"id": self.id, "object": "response", "created_at": self.created, "status": status,
                "background": False, "completed_at": int(time.time()) if finished else None,
                "error": None, "frequency_penalty": 0.0,
                "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
                "instructions": b.get("instructions"), "max_output_tokens": b.get("max_output_tokens"),
                "max_tool_calls": None, "model": self.model,
                "output": [self.item(True)] if finished else [], "parallel_tool_calls": True,
                "presence_penalty": 0.0, "previous_response_id": b.get("previous_response_id"),
                "prompt_cache_key": None, "prompt_cache_retention": "in_memory",
                "reasoning": {"effort": None, "summary": None}, "safety_identifier": None,
                "service_tier": "default", "store": b.get("store", True),
                "temperature": b.get("temperature", 1.0),
                "text": {"format": self.format, "verbosity": "medium"},
                "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools") or [],
                "top_logprobs": 0, "top_p": b.get("top_p", 1.0), "truncation": "disabled",
                "usage": self.usage() if finished else None, "user": None,
                "metadata": b.get("metadata") or {}}

    def final_status(self) -> str:
        return "incomplete" if self.answer.truncated else "completed"

    # -- stream ----------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, **fields, "sequence_number": self.seq}
        self.seq += 1
        return self.frame(payload, kind)

    def endless_delta(self, start: int, i: int) -> bytes:
        self.seq = start + i  # `endless` continues the numbering where the body stopped
        return self.delta(" " + word(self.knobs.seed, i))

    def delta(self, text: str) -> bytes:
        if self.answer.tool:
            return self.event("response.function_call_arguments.delta", delta=text, item_id=self.item_id,
                              obfuscation=padding(self.knobs.seed, self.seq), output_index=0)
        return self.event("response.output_text.delta", content_index=0, delta=text,
                          item_id=self.item_id, logprobs=[],
                          obfuscation=padding(self.knobs.seed, self.seq), output_index=0)

    def stream(self) -> StreamPlan:
        a, ids = self.answer, {"item_id": self.item_id, "output_index": 0}
        head = [self.event("response.created", response=self.response("in_progress")),
                self.event("response.in_progress", response=self.response("in_progress")),
                self.event("response.output_item.added", item=self.item(False), output_index=0)]
        if not a.tool:
            head.append(self.event("response.content_part.added", content_index=0, **ids,
                                   part=self.part("")))
        body = [self.delta(p) for p in (a.tool_pieces if a.tool else a.pieces)]
        body_end = self.seq
        if a.tool:
            tail = [self.event("response.function_call_arguments.done", arguments=a.tool_args, **ids)]
        else:
            tail = [self.event("response.output_text.done", content_index=0, **ids, logprobs=[],
                               text=a.text),
                    self.event("response.content_part.done", content_index=0, **ids,
                               part=self.part(a.text))]
        status = self.final_status()
        tail += [self.event("response.output_item.done", item=self.item(True), output_index=0),
                 self.event(f"response.{status}", response=self.response(status))]
        return StreamPlan(content_type="text/event-stream; charset=utf-8", head=head, body=body,
                          tail=tail, more=lambda i: self.endless_delta(body_end, i),
                          headers=self.headers)

    def complete(self) -> Delivery:
        n = len(self.answer.pieces) or len(self.answer.tool_pieces)
        return json_delivery(200, self.response(self.final_status()), self.headers,
                             generation_time(self.knobs, n))

    def error(self, status: int) -> Delivery:
        return json_delivery(status, openai_error(status, self.model), self.headers)

    def error_frames(self, sent: int) -> list[bytes]:
        # The Responses API reports a mid-stream failure as an `error` event
        # (openai.types.responses.ResponseErrorEvent), not a bare error object.
        self.seq = sent
        return [self.event("error", code="server_error", param=None,
                           message="The server had an error while processing your request. "
                                   "Sorry about that!")]

    def broken_frame(self) -> bytes:
        # A text delta without item_id / logprobs / sequence_number.
        return self.frame({"type": "response.output_text.delta", "output_index": 0,
                           "content_index": 0, "delta": ""}, "response.output_text.delta")
