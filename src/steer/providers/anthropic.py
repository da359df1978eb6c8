"""Anthropic Messages wire format (``POST /v1/messages``, plain and ``?beta=true``), streamed and not.

A stream is ``message_start`` (id, model, input usage), then per content block ``content_block_start``
/ ``content_block_delta``* / ``content_block_stop``, then ``message_delta`` (stop reason, cumulative
usage) and ``message_stop``; ``ping`` may come anywhere. The decoder reads the SDK's event models (or
raw wire JSON through ``AttrView``) by attribute, keeping one small dict of block kinds per call.

What the decoder keeps apart, and why:
- ``thinking`` blocks are reasoning, never output text (``signature_delta`` is neither).
- ``tool_use`` blocks are client tool calls: ``input_json_delta`` fragments are joined per block and
  parsed once at the end (the pipeline does it), like the SDK's ``MessageStream`` does.
- Server tool blocks (``server_tool_use``, ``mcp_tool_use``, and their ``*_tool_result`` blocks) run at
  Anthropic; they are not calls the application must answer, so they never join ``tool_calls``.
  They are recorded under ``asm.extra["server_tool_calls"]``.
Usage follows semconv: ``input_tokens`` is the TOTAL input (Anthropic's ``input_tokens`` plus cache read
plus cache creation, which it reports apart); the cache counts also go in their own fields. Input comes
from ``message_start``, output from the last ``message_delta``; a value in ``message_delta`` wins (its
counts are cumulative), as in the SDK's own accumulator.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional

from steer.call import CallInfo
from steer.providers.base import (Assembly, function_tool, given, make_usage, message_parts, other_tool, output_type,
                                  server_of, text_only)

PROVIDER = "anthropic"
API = "anthropic.messages"

# content_block_start types -> how their deltas are read. Anything unknown is ignored (future blocks).
_TEXT, _THINKING, _TOOL, _SERVER = 1, 2, 3, 4
_BLOCK_KINDS = {
    "text": _TEXT,
    "thinking": _THINKING,
    "tool_use": _TOOL,
    "server_tool_use": _SERVER,
    "mcp_tool_use": _SERVER,
}


endpoint = server_of  # (server.address, server.port) of a client's base URL (``httpx2.URL`` or a string)


def clean_body(body: Any, extra: Any = None) -> Dict[str, Any]:
    """The request body as the API will see it: sentinels dropped, ``extra_body`` merged over it.

    ``messages`` is kept only when it is a list or tuple: the SDK accepts any iterable, and reading a
    one-shot iterator here would take it away from the request.
    """
    out: Dict[str, Any] = {}
    for source in (body, extra):
        if isinstance(source, Mapping):
            for key, value in source.items():
                if given(value):
                    out[key] = value
    if not isinstance(out.get("messages"), (list, tuple)):
        out.pop("messages", None)
    return out


def _json_output(body: Mapping[str, Any]) -> bool:
    """Structured output asked for: ``output_config.format`` (or the older ``output_format``) is a JSON schema."""
    config = body.get("output_config")
    formats = (config.get("format") if isinstance(config, Mapping) else None, body.get("output_format"))
    return any(isinstance(fmt, Mapping) and fmt.get("type") == "json_schema" for fmt in formats)


def messages_call_info(body: Mapping[str, Any], *, streaming: bool, provider: str = PROVIDER,
                       address: Optional[str] = None, port: Optional[int] = None) -> CallInfo:
    stops = body.get("stop_sequences")
    params: Dict[str, Any] = {
        "max_tokens": body.get("max_tokens"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "top_k": body.get("top_k"),
        "stop_sequences": list(stops) if isinstance(stops, (list, tuple)) and all(isinstance(s, str) for s in stops) else None,
    }
    config = body.get("output_config")
    if isinstance(config, Mapping):
        params["reasoning_level"] = config.get("effort")  # the exact value sent (low ... max)
    json_output = _json_output(body)
    params["output_type"] = output_type(json_output)
    params["output_modality"] = "text"  # Messages answers in text (and tool calls, text too)
    model = body.get("model")
    return CallInfo(
        provider=provider,
        api=API,
        operation="chat",
        request_model=model if isinstance(model, str) else None,
        streaming=streaming,
        server_address=address,
        server_port=port,
        params={k: v for k, v in params.items() if v is not None},
        request=dict(body),
        json_output=json_output,
    )


class _ServerTool:
    __slots__ = ("id", "name", "parts")

    def __init__(self, call_id: Any, name: Any) -> None:
        self.id, self.name, self.parts = call_id, name, []


class MessagesDecoder:
    """One per call: raw Messages stream events (or a whole ``Message``) -> Assembly."""

    __slots__ = ("kinds", "server", "results", "usage_in", "cache_read", "cache_creation", "usage_out", "reasoning_tokens", "seen_usage")

    def __init__(self) -> None:
        self.kinds: Dict[int, int] = {}  # content block index -> _TEXT / _THINKING / _TOOL / _SERVER
        self.server: Dict[int, _ServerTool] = {}
        self.results: Dict[int, Dict[str, Any]] = {}  # server tool results by block index: id and block type
        self.usage_in: Optional[int] = None
        self.cache_read: Optional[int] = None
        self.cache_creation: Optional[int] = None
        self.usage_out: Optional[int] = None
        self.reasoning_tokens: Optional[int] = None
        self.seen_usage = False

    # -- streaming (hot path: content_block_delta first) ---------------------------------------------
    def decode(self, chunk: Any, asm: Assembly) -> None:
        kind = chunk.type
        if kind == "content_block_delta":
            delta = chunk.delta
            dtype = delta.type
            if dtype == "text_delta":
                asm.add_text(0, delta.text)
            elif dtype == "thinking_delta":
                asm.add_reasoning(0, delta.thinking)
            elif dtype == "input_json_delta":
                index = chunk.index
                block = self.kinds.get(index)
                if block == _TOOL:
                    asm.tool_fragment(0, index, None, None, delta.partial_json)
                elif block == _SERVER:
                    self.server[index].parts.append(delta.partial_json or "")
            # signature_delta, citations_delta: neither output text nor reasoning.
        elif kind == "content_block_start":
            self._block(chunk.index, chunk.content_block, asm)
        elif kind == "message_start":
            message = chunk.message
            asm.response_id = message.id or None
            asm.response_model = message.model or None
            self._usage(message.usage, final=False)
        elif kind == "message_delta":
            asm.set_finish(0, chunk.delta.stop_reason)
            self._usage(chunk.usage, final=True)
        elif kind == "error":  # raw wire JSON only: the SDK raises on `event: error` instead
            error = chunk.error
            asm.error = {"type": getattr(error, "type", None) or "error", "message": getattr(error, "message", None) or ""}

    def _block(self, index: int, block: Any, asm: Assembly) -> None:
        kind = _BLOCK_KINDS.get(block.type)
        if kind is None:
            self._result(index, block)
            return  # web_search_tool_result, redacted_thinking, ...: not output text, not client calls
        self.kinds[index] = kind
        if kind == _TEXT:
            asm.add_text(0, block.text)  # usually "", but the SDK keeps whatever it starts with
        elif kind == _THINKING:
            asm.add_reasoning(0, block.thinking)
        elif kind == _TOOL:
            inp = block.input
            if type(inp) is dict and inp:  # arrived whole (not the streamed `{}` placeholder)
                asm.tool_whole(0, index, block.id, block.name, inp)
            else:
                asm.tool_fragment(0, index, block.id, block.name, None)
        else:
            self.server[index] = _ServerTool(block.id, block.name)

    def _usage(self, usage: Any, final: bool) -> None:
        if usage is None:
            return
        self.seen_usage = True
        # message_delta counts are cumulative totals: a value there replaces message_start's; an absent
        # one (older API versions send only output_tokens) leaves it.
        value = usage.input_tokens
        if value is not None:
            self.usage_in = value
        value = usage.cache_read_input_tokens
        if value is not None:
            self.cache_read = value
        value = usage.cache_creation_input_tokens
        if value is not None:
            self.cache_creation = value
        if final:
            # message_start's output_tokens is a placeholder (1-5); only message_delta's is the output.
            self.usage_out = usage.output_tokens
            details = getattr(usage, "output_tokens_details", None)
            thinking = getattr(details, "thinking_tokens", None) if details is not None else None
            if thinking is not None:
                self.reasoning_tokens = thinking

    # -- non-streaming ---------------------------------------------------------------------------------
    def decode_response(self, resp: Any, asm: Assembly) -> None:
        asm.response_id = resp.id or None
        asm.response_model = resp.model or None
        for index, block in enumerate(resp.content or ()):
            kind = _BLOCK_KINDS.get(block.type)
            if kind == _TEXT:
                asm.add_text(0, block.text)
            elif kind == _THINKING:
                asm.add_reasoning(0, block.thinking)
            elif kind == _TOOL:
                asm.tool_whole(0, index, block.id, block.name, block.input)
            elif kind == _SERVER:
                tool = self.server[index] = _ServerTool(block.id, block.name)
                tool.parts.append(_json_text(block.input))
            else:
                self._result(index, block)
        asm.set_finish(0, resp.stop_reason)
        self._usage(resp.usage, final=True)

    def _result(self, index: int, block: Any) -> None:
        kind = block.type
        if isinstance(kind, str) and kind.endswith("_tool_result"):  # web_search_tool_result, mcp_tool_result...
            self.results[index] = {"type": "server_tool_call_response", "id": getattr(block, "tool_use_id", None),
                                   "server_tool_call_response": {"type": kind}}

    def finish(self, asm: Assembly) -> None:
        if self.server:
            asm.extra["server_tool_calls"] = [
                {"id": t.id, "name": t.name, "arguments": "".join(t.parts)} for t in self.server.values()
            ]
        if self.server or self.results:
            # The output message's server tool parts, in block order (the conventions' parts).
            parts = dict(self.results)
            for index, t in self.server.items():
                parts[index] = {"type": "server_tool_call", "id": t.id, "name": t.name,
                                "server_tool_call": {"type": t.name, "arguments": _parsed("".join(t.parts))}}
            asm.extra["server_tool_parts"] = {0: [parts[i] for i in sorted(parts)]}
        if not self.seen_usage:
            return
        count = asm.token_count  # each count checked once, before any sum
        usage_in, cache_read, cache_creation = count(self.usage_in), count(self.cache_read), count(self.cache_creation)
        parts = [v for v in (usage_in, cache_read, cache_creation) if v is not None]
        total_in = sum(parts) if parts else None
        out = count(self.usage_out)
        asm.usage = make_usage(
            asm,
            input_tokens=total_in,
            output_tokens=out,
            total_tokens=total_in + out if total_in is not None and out is not None else None,
            cache_read=cache_read,
            cache_creation=cache_creation,
            reasoning=self.reasoning_tokens,
        )

    @staticmethod
    def input_content(request: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        return input_messages(request)


def _parsed(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return ""


def input_messages(request: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """System instructions (``system=``, text parts), input messages and tool definitions, in the
    semconv JSON shape, for content capture."""
    if not request:
        return {"system": [], "input": [], "tools": []}
    messages = []
    for message in request.get("messages") or ():
        if isinstance(message, Mapping):
            messages.append({"role": message.get("role", "user"), "parts": _parts(message.get("content"))})
    return {"system": text_only(_parts(request.get("system"))), "input": messages, "tools": tool_definitions(request)}


def tool_definitions(request: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """``tools``: client tools (``input_schema``) as functions, server tools (``web_search_20250305``...) by type."""
    out: List[Dict[str, Any]] = []
    for tool in request.get("tools") or ():
        if not isinstance(tool, Mapping):
            continue
        if "input_schema" in tool or tool.get("type") in (None, "custom"):
            out.append(function_tool(tool.get("name"), tool.get("description"), tool.get("input_schema")))
        else:
            out.append(other_tool(tool.get("type"), tool.get("name")))
    return out


def _parts(content: Any) -> List[Dict[str, Any]]:
    return message_parts(content, _block_part)


def _block_part(block: Mapping[str, Any]) -> Dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "content": block.get("text", "")}
    if kind == "tool_use":
        return {"type": "tool_call", "id": block.get("id"), "name": block.get("name"), "arguments": block.get("input")}
    if kind == "tool_result":
        return {"type": "tool_call_response", "id": block.get("tool_use_id"), "response": block.get("content")}
    if kind == "thinking":
        return {"type": "reasoning", "content": block.get("thinking", "")}
    return {"type": str(kind or "unknown")}  # media & co.: the type only, never the bytes
