"""OpenAI Responses API wire format (``POST /v1/responses``), for OpenAI and the servers that speak it
(DeepSeek, Azure, OpenAI-compatible gateways).

A Responses stream sends the same output several times: text as ``response.output_text.delta``
fragments, then whole again in ``.done``, ``response.content_part.done``, ``response.output_item.done``
and ``response.completed``; function-call arguments as ``.delta`` fragments, then in ``.done``,
``output_item.done`` and ``response.completed``. The deltas are assembled; every later whole copy is a
snapshot compared with what was assembled:

- equal: dropped and counted (``Assembly.duplicates_dropped`` -> ``steer.json.duplicates_dropped``);
- it extends what was assembled (deltas lost at the end, or none sent): the missing tail is added, so
  delta events and the JSON tracker still see every character once;
- otherwise (deltas lost in the middle): the snapshot replaces the assembled part — the server's
  whole copy is the truth (delta events already delivered are not re-sent).

Deltas cost O(1) each; a snapshot costs one join and compare of its part, a fixed number of times per
part (four copies of each text part, three of each argument string), so O(output) per call overall.

Nothing here reads ``sequence_number``: early-2025 recordings have none, and order is the order of
arrival. Only ``function_call`` and ``custom_tool_call`` items are client tool calls; server tools
(web search, file search, code interpreter, MCP, ...) run at the provider and are not reported as
tool calls.

Finish reasons (the Responses API has none; they are derived so spans compare with Chat Completions):
``completed`` -> ``stop``, or ``tool_calls`` when the output holds a client tool call (what Chat
Completions reports for the same answer); ``incomplete`` -> its ``incomplete_details.reason``
normalised (``max_output_tokens`` -> ``length``, ``content_filter``); ``failed`` and ``error`` events
-> ``Assembly.error`` (the pipeline classifies it), no finish reason.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from steer.call import CallInfo
from steer.providers.base import (
    Assembly, choice_order, field_of, function_tool, given, other_tool, output_type, pieces_of, text_only,
)
from steer.providers.openai import usage_from

# Where each kind of streamed content is assembled (the Assembly dict name) and how it is written.
_TEXT, _REFUSAL, _SUMMARY, _REASONING = "text", "refusal", "summary", "reasoning_text"
_STORE = {_TEXT: "text", _REFUSAL: "refusal", _SUMMARY: "reasoning", _REASONING: "reasoning"}
_WRITE = {_TEXT: Assembly.add_text, _REFUSAL: Assembly.add_refusal,
          _SUMMARY: Assembly.add_reasoning, _REASONING: Assembly.add_reasoning}
# Whole content parts by type: (content kind, the field holding the text).
_PARTS = {"output_text": (_TEXT, "text"), "refusal": (_REFUSAL, "refusal"),
          "summary_text": (_SUMMARY, "text"), "reasoning_text": (_REASONING, "text")}
_CLIENT_TOOLS = {"function_call": "arguments", "custom_tool_call": "input"}
# Items named *_call that the application itself carries out (not tools the provider ran).
_CLIENT_RUN = frozenset({"computer_call", "local_shell_call", "shell_call", "apply_patch_call"})


def _pieces(asm: Assembly, store: str) -> List[str]:
    """Choice 0's pieces in one of the Assembly's stores, one list entry per delta: segments address
    them by position, so this store is never folded (``Pieces.addressable``)."""
    return pieces_of(getattr(asm, store), 0, addressable=True).recent


class _Segment:
    """One streamed content part: where its pieces sit in the Assembly's list for choice 0."""

    __slots__ = ("store", "start", "count", "contiguous")

    def __init__(self, store: str, start: int) -> None:
        self.store = store  # the Assembly dict it lives in: "text", "refusal" or "reasoning"
        self.start = start
        self.count = 0
        self.contiguous = True  # False if another part's pieces landed inside it (never seen in practice)


class ResponsesDecoder:
    """Response stream events (and the non-streaming ``Response``) into one Assembly."""

    __slots__ = ("_segments", "_last")

    def __init__(self) -> None:
        self._segments: Dict[Tuple[str, Any, Any], _Segment] = {}
        self._last: Dict[str, _Segment] = {}  # store name -> the part that owns the list's tail

    def decode(self, chunk: Any, asm: Assembly) -> None:
        handler = _HANDLERS.get(chunk.type)  # one dict lookup per event; unknown types are ignored
        if handler is not None:
            handler(self, chunk, asm)

    def decode_response(self, resp: Any, asm: Assembly) -> None:
        self._response(resp, asm)

    def finish(self, asm: Assembly) -> None:
        items = asm.extra.pop("server_tool_items", None)
        if items:
            asm.extra["server_tool_parts"] = {0: [items[i] for i in sorted(items, key=choice_order)]}

    @staticmethod
    def input_content(request: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        return input_messages(request)

    # -- content parts --------------------------------------------------------------------------------
    def _add(self, asm: Assembly, kind: str, key: Tuple[str, Any, Any], s: str) -> None:
        name = _STORE[kind]
        parts = _pieces(asm, name)
        before = len(parts)
        seg = self._segments.get(key)
        if seg is None:
            seg = self._segments[key] = _Segment(name, before)
        elif self._last.get(name) is not seg:
            seg.contiguous = False  # its pieces would no longer be one slice of the list
        self._last[name] = seg
        _WRITE[kind](asm, 0, s)
        seg.count += len(parts) - before

    def _snapshot(self, asm: Assembly, kind: str, key: Tuple[str, Any, Any], full: Any) -> None:
        if not full or not isinstance(full, str):
            return
        seg = self._segments.get(key)
        if seg is None:  # never streamed (non-streaming call, or every delta lost): this is the only copy
            self._add(asm, kind, key, full)
            return
        if not seg.contiguous:
            return
        parts = _pieces(asm, seg.store)
        got = "".join(parts[seg.start:seg.start + seg.count])
        if got == full:
            asm.duplicates_dropped += 1
            return
        if asm.truncated:
            return  # past the capture cap the list holds only a prefix: nothing to compare against
        if full.startswith(got) and self._last.get(seg.store) is seg:
            self._add(asm, kind, key, full[len(got):])
            return
        # Deltas went missing in the middle: the snapshot wins; later parts of the list shift.
        parts[seg.start:seg.start + seg.count] = [full]
        shift = 1 - seg.count
        for other in self._segments.values():
            if other.store == seg.store and other.start > seg.start:
                other.start += shift
        seg.count = 1

    # -- whole items and responses ---------------------------------------------------------------------
    def _part(self, asm: Assembly, index: Any, sub: Any, part: Any) -> None:
        """A whole content part (output text, refusal, reasoning summary or reasoning text)."""
        spec = _PARTS.get(field_of(part, "type"))
        if spec is not None:
            self._snapshot(asm, spec[0], (spec[0], index, sub), field_of(part, spec[1]))

    def _item(self, asm: Assembly, index: Any, item: Any) -> None:
        kind = item.type
        if kind in ("message", "reasoning"):
            for si, part in enumerate(getattr(item, "summary", None) or ()):
                self._part(asm, index, si, part)
            for ci, part in enumerate(getattr(item, "content", None) or ()):
                self._part(asm, index, ci, part)
        elif kind in _CLIENT_TOOLS:
            asm.tool_fragment(0, index, getattr(item, "call_id", None), getattr(item, "name", None), None)
            self._tool_snapshot(asm, index, getattr(item, _CLIENT_TOOLS[kind], None))
        elif isinstance(kind, str) and kind.endswith("_call") and kind not in _CLIENT_RUN:
            _server_tool(asm, index, item)  # web_search_call, file_search_call, code_interpreter_call, mcp_call...

    @staticmethod
    def _tool_snapshot(asm: Assembly, index: Any, full: Any) -> None:
        if isinstance(full, str) and full:
            asm.set_tool_arguments(0, index, full)  # counts a duplicate itself; the snapshot wins otherwise

    def _response(self, resp: Any, asm: Assembly) -> None:
        """A whole Response: non-streaming result, or the payload of a terminal stream event."""
        if resp is None:
            return
        if resp.id:
            asm.response_id = resp.id
        if resp.model:
            asm.response_model = resp.model
        for index, item in enumerate(getattr(resp, "output", None) or ()):  # newer servers may omit it
            self._item(asm, index, item)
        usage = getattr(resp, "usage", None)
        if usage is not None:
            asm.usage = usage_from(asm, usage, "input", "output")
        tier = getattr(resp, "service_tier", None)
        if isinstance(tier, str):
            asm.extra["service_tier"] = tier
        status = getattr(resp, "status", None)
        if status == "completed":
            asm.set_finish(0, "tool_calls" if asm.tools else "stop")
        elif status == "incomplete":
            details = getattr(resp, "incomplete_details", None)
            asm.set_finish(0, field_of(details, "reason") or "incomplete")
        elif status == "failed":
            error = getattr(resp, "error", None)
            code = field_of(error, "code")
            asm.error = {"type": code or "response_failed", "message": field_of(error, "message") or "", "code": code}
        elif status == "cancelled":
            asm.set_finish(0, "cancelled")


def _server_tool(asm: Assembly, index: Any, item: Any) -> None:
    """A tool the provider ran itself, kept for the captured output (never a client tool call). Every
    copy of the item (``output_item.done``, then ``response.completed``) lands on the same index."""
    details = {"type": item.type}
    for name in ("action", "arguments", "code", "server_label", "name", "status"):
        value = getattr(item, name, None)
        if value is not None:
            details[name] = _plain(value)
    by_index = asm.extra.setdefault("server_tool_items", {})
    by_index[index] = {"type": "server_tool_call", "id": getattr(item, "id", None),
                       "name": item.type[:-len("_call")], "server_tool_call": details}


def _plain(value: Any) -> Any:
    """An SDK model (or AttrView) as plain JSON values."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json", exclude_none=True)
    inner = getattr(value, "__pydantic_extra__", None)  # AttrView over raw JSON
    return inner if isinstance(inner, dict) else value


# -- event handlers (one per event type) ---------------------------------------------------------------
def _lifecycle(d: ResponsesDecoder, ev: Any, asm: Assembly) -> None:
    resp = ev.response
    if asm.response_id is None and resp is not None:
        asm.response_id = resp.id or None
        asm.response_model = resp.model or None


def _delta(kind: str, sub: str) -> Any:
    def handle(d: ResponsesDecoder, ev: Any, asm: Assembly) -> None:
        if ev.delta:
            d._add(asm, kind, (kind, ev.output_index, getattr(ev, sub, 0)), ev.delta)
    return handle


def _done(kind: str, sub: str, field: str) -> Any:
    def handle(d: ResponsesDecoder, ev: Any, asm: Assembly) -> None:
        d._snapshot(asm, kind, (kind, ev.output_index, getattr(ev, sub, 0)), getattr(ev, field, None))
    return handle


def _part_done(sub: str) -> Any:
    def handle(d: ResponsesDecoder, ev: Any, asm: Assembly) -> None:
        d._part(asm, ev.output_index, getattr(ev, sub, 0), ev.part)
    return handle


def _item_added(d: ResponsesDecoder, ev: Any, asm: Assembly) -> None:
    item = ev.item
    if item is not None and item.type in _CLIENT_TOOLS:
        asm.tool_fragment(0, ev.output_index, getattr(item, "call_id", None), getattr(item, "name", None), None)
        d._tool_snapshot(asm, ev.output_index, getattr(item, _CLIENT_TOOLS[item.type], None))


def _item_done(d: ResponsesDecoder, ev: Any, asm: Assembly) -> None:
    if ev.item is not None:
        d._item(asm, ev.output_index, ev.item)


def _tool_delta(d: ResponsesDecoder, ev: Any, asm: Assembly) -> None:
    if ev.delta:
        asm.tool_fragment(0, ev.output_index, None, None, ev.delta)


def _tool_done(field: str) -> Any:
    def handle(d: ResponsesDecoder, ev: Any, asm: Assembly) -> None:
        d._tool_snapshot(asm, ev.output_index, getattr(ev, field, None))
    return handle


def _terminal(d: ResponsesDecoder, ev: Any, asm: Assembly) -> None:
    d._response(ev.response, asm)


def _error(d: ResponsesDecoder, ev: Any, asm: Assembly) -> None:
    # An `error` event the SDK did not raise (flat code/message): the pipeline classifies it.
    code = getattr(ev, "code", None)
    asm.error = {"type": code or "error", "message": getattr(ev, "message", None) or "", "code": code}


_HANDLERS = {
    "response.created": _lifecycle,
    "response.in_progress": _lifecycle,
    "response.queued": _lifecycle,
    "response.output_text.delta": _delta(_TEXT, "content_index"),
    "response.output_text.done": _done(_TEXT, "content_index", "text"),
    "response.refusal.delta": _delta(_REFUSAL, "content_index"),
    "response.refusal.done": _done(_REFUSAL, "content_index", "refusal"),
    "response.reasoning_summary_text.delta": _delta(_SUMMARY, "summary_index"),
    "response.reasoning_summary_text.done": _done(_SUMMARY, "summary_index", "text"),
    "response.reasoning_summary_part.done": _part_done("summary_index"),
    "response.reasoning_text.delta": _delta(_REASONING, "content_index"),
    "response.reasoning_text.done": _done(_REASONING, "content_index", "text"),
    "response.content_part.done": _part_done("content_index"),
    "response.output_item.added": _item_added,
    "response.output_item.done": _item_done,
    "response.function_call_arguments.delta": _tool_delta,
    "response.function_call_arguments.done": _tool_done("arguments"),
    "response.custom_tool_call_input.delta": _tool_delta,
    "response.custom_tool_call_input.done": _tool_done("input"),
    "response.completed": _terminal,
    "response.incomplete": _terminal,
    "response.failed": _terminal,
    "error": _error,
}


# -- call info, content capture (usage: openai.usage_from) -----------------------------------------------


def _format_type(text: Any) -> Optional[str]:
    fmt = text.get("format") if isinstance(text, Mapping) else None
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    return kind if isinstance(kind, str) else None


def _effort(reasoning: Any) -> Any:
    return reasoning.get("effort") if isinstance(reasoning, Mapping) else None


def responses_call_info(kwargs: Mapping[str, Any], *, provider: str, address: Optional[str], port: Optional[int],
                        streaming: Optional[bool] = None) -> CallInfo:
    fmt = _format_type(kwargs.get("text"))
    json_output = fmt in ("json_object", "json_schema")
    params = {
        "max_tokens": kwargs.get("max_output_tokens"),
        "temperature": kwargs.get("temperature"),
        "top_p": kwargs.get("top_p"),
        "reasoning_level": _effort(kwargs.get("reasoning")),
        "previous_response_id": kwargs.get("previous_response_id"),
    }
    params["output_type"] = output_type(json_output)
    tools = kwargs.get("tools")
    if not (isinstance(tools, list) and any(isinstance(t, Mapping) and t.get("type") == "image_generation" for t in tools)):
        params["output_modality"] = "text"  # only the image generation tool makes a Responses call output images
    extra: Dict[str, Any] = {"api_type": "responses"}
    tier = kwargs.get("service_tier")
    if given(tier) and isinstance(tier, str) and tier != "auto":  # semconv: set unless "auto"
        extra["request_service_tier"] = tier
    model = kwargs.get("model")
    return CallInfo(
        provider=provider,
        api="openai.responses",
        operation="chat",
        request_model=model if isinstance(model, str) else None,
        streaming=bool(kwargs.get("stream") is True) if streaming is None else streaming,
        server_address=address,
        server_port=port,
        params={k: v for k, v in params.items() if given(v)},
        request=dict(kwargs),
        json_output=json_output,
        extra=extra,
    )


def input_messages(request: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """System instructions (``instructions=`` only), input messages (``system``/``developer`` items stay
    in the history where the caller put them) and tool definitions, in the semconv JSON shape."""
    system: List[Dict[str, Any]] = []
    messages: List[Dict[str, Any]] = []
    out = {"system": system, "input": messages, "tools": tool_definitions(request)}
    if not request:
        return out
    instructions = request.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append({"type": "text", "content": instructions})
    elif isinstance(instructions, (list, tuple)):  # instructions as input items
        for item in instructions:
            if isinstance(item, Mapping):
                system.extend(text_only(_content_parts(item.get("content"))))
    items = request.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items if isinstance(items, (list, tuple)) else ():
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type", "message")
        if kind == "function_call":
            messages.append({"role": "assistant", "parts": [
                {"type": "tool_call", "id": item.get("call_id"), "name": item.get("name"), "arguments": item.get("arguments")}]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "parts": [
                {"type": "tool_call_response", "id": item.get("call_id"), "response": item.get("output")}]})
        elif kind == "message":
            messages.append({"role": item.get("role", "user"), "parts": _content_parts(item.get("content"))})
    return out


def tool_definitions(request: Optional[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """``tools`` of a Responses request: functions as they are, built-in tools by their type."""
    out: List[Dict[str, Any]] = []
    for tool in (request or {}).get("tools") or ():
        if not isinstance(tool, Mapping):
            continue
        if tool.get("type") == "function":
            out.append(function_tool(tool.get("name"), tool.get("description"), tool.get("parameters")))
        else:
            out.append(other_tool(tool.get("type"), tool.get("name") or tool.get("server_label")))
    return out


def _content_parts(content: Any) -> List[Dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: List[Dict[str, Any]] = []
    for part in content if isinstance(content, (list, tuple)) else ():
        if isinstance(part, Mapping) and part.get("type") in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "content": part.get("text", "")})
        elif isinstance(part, Mapping):
            parts.append({"type": str(part.get("type", "unknown"))})  # media: type only, never the bytes
    return parts
