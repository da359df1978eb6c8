"""Google Gemini ``generateContent`` / ``streamGenerateContent``: the Gemini API (``gcp.gemini``) and
Vertex AI (``gcp.vertex_ai``) speak the same wire format, read here from google-genai's response
models or from raw REST JSON seen through ``AttrView`` (camelCase keys found from snake_case names).

What a chunk adds: text parts (``thought`` parts are reasoning, as the SDK's ``.text`` leaves them
out), function calls (whole, never fragmented), a finish reason per candidate, and
``usageMetadata``, which every chunk repeats as running totals: only the last one counts. Server-side
tools (``executableCode``, ``codeExecutionResult``, grounding) are not client tool calls.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Dict, List, Mapping, Optional, Tuple

from steer.call import CallInfo
from steer.events import Usage
from steer.providers.base import (Assembly, AttrView, function_tool, make_usage, modality_names, other_tool, output_type,
                                  server_of, text_only)

# Gemini finish reasons the shared table leaves out. STOP, MAX_TOKENS, SAFETY, RECITATION, BLOCKLIST,
# PROHIBITED_CONTENT, SPII, IMAGE_SAFETY and MALFORMED_FUNCTION_CALL are normalised in base.py;
# anything not listed anywhere passes through lower-cased.
_FINISH = {
    "FINISH_REASON_UNSPECIFIED": "error",
    "OTHER": "error",
    "LANGUAGE": "error",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
    "IMAGE_OTHER": "error",
    "NO_IMAGE": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "MISSING_THOUGHT_SIGNATURE": "error",
    "MALFORMED_RESPONSE": "error",
}


def provider_name(vertexai: bool) -> str:
    return "gcp.vertex_ai" if vertexai else "gcp.gemini"


def server_from_url(base_url: Any) -> Tuple[Optional[str], Optional[int]]:
    """(server.address, server.port) from the client's base URL; no port without a host."""
    host, port = server_of(base_url)
    return host, (port if host else None)


def model_name(model: Any) -> Optional[str]:
    """The bare model id: ``models/x`` and ``projects/../publishers/google/models/x`` name model ``x``;
    tuned models (``tunedModels/123``) and endpoints keep their resource name."""
    if not isinstance(model, str) or not model:
        return None
    head, sep, tail = model.rpartition("models/")
    if sep and tail and (not head or head.endswith("/")):
        return tail
    return model


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _cfg(config: Any, name: str) -> Any:
    """A GenerateContentConfig field, from the SDK model or a dict with snake_case or camelCase keys
    (the SDK accepts both)."""
    if config is None:
        return None
    if isinstance(config, Mapping):
        value = config.get(name)
        return config.get(_camel(name)) if value is None else value
    return getattr(config, name, None)


def _thinking_level(thinking_config: Any) -> Optional[str]:
    """``thinking_config.thinking_level`` as sent on the wire (the SDK's enum serialises to its value)."""
    level = _cfg(thinking_config, "thinking_level")
    return getattr(level, "value", level) if level is not None else None


def call_info(kwargs: Mapping[str, Any], *, provider: str, address: Optional[str], port: Optional[int],
              streaming: bool, api: str) -> CallInfo:
    config = kwargs.get("config")
    mime = _cfg(config, "response_mime_type")
    schema = _cfg(config, "response_schema") is not None or _cfg(config, "response_json_schema") is not None
    json_output = mime == "application/json" or schema
    stop = _cfg(config, "stop_sequences")
    params: Dict[str, Any] = {
        "max_tokens": _cfg(config, "max_output_tokens"),
        "temperature": _cfg(config, "temperature"),
        "top_p": _cfg(config, "top_p"),
        "top_k": _cfg(config, "top_k"),
        "frequency_penalty": _cfg(config, "frequency_penalty"),
        "presence_penalty": _cfg(config, "presence_penalty"),
        "stop_sequences": list(stop) if isinstance(stop, (list, tuple)) else None,
        "seed": _cfg(config, "seed"),
        "reasoning_level": _thinking_level(_cfg(config, "thinking_config")),
    }
    count = _cfg(config, "candidate_count")
    if isinstance(count, int) and count != 1:
        params["choice_count"] = count
    modalities = _cfg(config, "response_modalities")
    params["output_type"] = output_type(json_output, modalities)
    if json_output or modality_names(modalities) == {"text"}:
        params["output_modality"] = "text"  # a model's default modalities may include images: only when asked
    return CallInfo(
        provider=provider, api=api, operation="generate_content",
        request_model=model_name(kwargs.get("model")), streaming=streaming,
        server_address=address, server_port=port,
        params={k: v for k, v in params.items() if v is not None},
        request=wire_request(kwargs), json_output=json_output,
    )


# -- the request as plain JSON (usage estimation, content capture) -----------------------------------
def _plain(value: Any, depth: int = 0) -> Any:
    """SDK request objects as plain JSON values, once per call. Bytes are never copied (media are
    only marked), and what has no JSON form (Python tool functions, images) is dropped."""
    if depth > 32:
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    fields = getattr(type(value), "model_fields", None)  # a pydantic model (google-genai types)
    if isinstance(fields, Mapping):
        out = {}
        for name in fields:
            v = getattr(value, name, None)
            if v is not None:
                out[name] = _plain(v, depth + 1)
        return out
    return None


def _contents(contents: Any) -> List[Any]:
    """``contents`` as a list of ``{role, parts}``, grouping bare strings and parts into user turns
    as the SDK does."""
    items = contents if isinstance(contents, (list, tuple)) else [contents]
    out: List[Any] = []
    loose: List[Any] = []
    for item in items:
        plain = {"text": item} if isinstance(item, str) else _plain(item)
        if isinstance(plain, dict) and "parts" not in plain and "role" not in plain:
            loose.append(plain)
            continue
        if loose:
            out.append({"role": "user", "parts": loose})
            loose = []
        if plain is not None:
            out.append(plain)
    if loose:
        out.append({"role": "user", "parts": loose})
    return out


def _take(config: Dict[str, Any], name: str) -> Any:
    value, other = config.pop(name, None), config.pop(_camel(name), None)
    return value if value is not None else other


def _system(system: Any) -> Any:
    if isinstance(system, str):
        return {"parts": [{"text": system}]}
    if isinstance(system, list):
        return {"parts": [{"text": p} if isinstance(p, str) else p for p in system]}
    if isinstance(system, dict) and "parts" not in system:
        return {"parts": [system]}
    return system


def wire_request(kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """The call as a REST-shaped body (``contents``, ``systemInstruction``, ``tools``,
    ``generationConfig``): the shape the usage estimator and content capture read."""
    config = _plain(kwargs.get("config"))
    config = dict(config) if isinstance(config, dict) else {}
    body: Dict[str, Any] = {"model": kwargs.get("model"), "contents": _contents(kwargs.get("contents"))}
    system = _take(config, "system_instruction")
    if system is not None:
        body["systemInstruction"] = _system(system)
    tools = _take(config, "tools")
    if tools:
        body["tools"] = [t for t in tools if t]
    for name in ("http_options", "safety_settings", "tool_config", "labels", "cached_content"):
        _take(config, name)  # request plumbing, not generation settings
    body["generationConfig"] = config
    return body


# -- decoding -------------------------------------------------------------------------------------------
def _has_counts(meta: Any) -> bool:
    # Vertex's early chunks carry usageMetadata with only trafficType: not a usage report.
    return meta.prompt_token_count is not None or meta.candidates_token_count is not None \
        or meta.total_token_count is not None


def usage_from(asm: Assembly, metas: List[Any]) -> Usage:
    """Usage of one call from the last usageMetadata of each response it made (several with automatic
    function calling or continuation). Output counts thoughts: semconv's output tokens are what the
    model generated (and what is billed), with the reasoning share broken out."""
    def total(name: str) -> Optional[int]:
        values = [asm.token_count(getattr(m, name)) for m in metas]
        values = [v for v in values if v is not None]
        return sum(values) if values else None

    candidates, thoughts = total("candidates_token_count"), total("thoughts_token_count")
    output = None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    return make_usage(asm, input_tokens=total("prompt_token_count"), output_tokens=output,
                      total_tokens=total("total_token_count"), cache_read=total("cached_content_token_count"),
                      reasoning=thoughts)


class GenerateContentDecoder:
    """One per call: ``GenerateContentResponse`` chunks (or the one non-streaming response)."""

    __slots__ = ("_meta", "_earlier", "_response", "_calls", "_called")

    def __init__(self) -> None:
        self._meta: Any = None  # the latest usageMetadata with counts, of the current response
        self._earlier: List[Any] = []  # the last usageMetadata of earlier responses of this call
        self._response: Optional[str] = None
        self._calls = 0
        self._called: set = set()  # candidates that called a function in the current response

    def decode(self, chunk: Any, asm: Assembly) -> None:
        rid = chunk.response_id
        if rid is not None and rid != self._response:
            # A new response within one call (automatic function calling, continuation): its usage
            # counts start again from zero, so the finished response's totals are kept aside.
            if self._meta is not None:
                self._earlier.append(self._meta)
                self._meta = None
            self._called.clear()  # "tool_calls" describes how the last response ended
            self._response = asm.response_id = rid
        model = chunk.model_version
        if model:
            asm.response_model = model
        candidates = chunk.candidates
        if candidates:
            for position, candidate in enumerate(candidates):
                index = candidate.index
                if index is None:  # Gemini 2.0 omits it for a single candidate
                    index = position
                content = candidate.content
                parts = content.parts if content is not None else None
                if parts:
                    for part in parts:
                        text = part.text
                        if text:
                            if part.thought:
                                asm.add_reasoning(index, text)
                            else:
                                asm.add_text(index, text)
                        else:  # a Part holds one kind of data: no text, so maybe a call
                            call = part.function_call
                            if call is not None:
                                self._function_call(index, call, asm)
                            elif text is None:
                                _server_tool_part(index, part, asm)
                reason = candidate.finish_reason
                if reason is not None:
                    raw = getattr(reason, "value", reason)
                    asm.set_finish(index, _FINISH.get(raw, raw))
        else:
            feedback = chunk.prompt_feedback
            if feedback is not None and feedback.block_reason:
                asm.set_finish(0, "content_filter")  # the prompt itself was blocked: no candidates
        meta = chunk.usage_metadata
        if meta is not None and _has_counts(meta):
            self._meta = meta

    decode_response = decode

    def _function_call(self, index: int, call: Any, asm: Assembly) -> None:
        args = call.args
        if isinstance(args, AttrView):
            args = args.__pydantic_extra__  # raw JSON: the underlying dict
        self._called.add(index)
        asm.tool_whole(index, self._calls, call.id, call.name, args)
        self._calls += 1
        if asm.deltas is not None:  # listeners get the whole call as one tool-call delta
            asm.deltas.append(("tool_call", json.dumps(args if args is not None else {}, default=str),
                               index, call.id, call.name, None))

    def finish(self, asm: Assembly) -> None:
        # Gemini ends a turn that calls functions with STOP; across providers that is "tool_calls".
        for index in self._called:
            if asm.finish.get(index) == "stop":
                asm.finish[index] = "tool_calls"
        metas = self._earlier + ([self._meta] if self._meta is not None else [])
        if metas:
            asm.usage = usage_from(asm, metas)

    @staticmethod
    def input_content(request: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        return input_messages(request)


def _server_tool_part(index: int, part: Any, asm: Assembly) -> None:
    """Code execution ran at Google: the code and its result, kept (in order) for the captured output."""
    code, result = part.executable_code, part.code_execution_result
    if code is None and result is None:
        return
    parts = asm.extra.setdefault("server_tool_parts", {}).setdefault(index, [])
    if code is not None:
        parts.append({"type": "server_tool_call", "id": getattr(code, "id", None), "name": "code_execution",
                      "server_tool_call": {"type": "code_execution", "language": _value(code.language), "code": code.code}})
    else:
        parts.append({"type": "server_tool_call_response", "id": getattr(result, "id", None),
                      "server_tool_call_response": {"type": "code_execution", "outcome": _value(result.outcome),
                                                    "output": result.output}})


def _value(value: Any) -> Any:
    return getattr(value, "value", value)  # SDK enums


# -- content capture (only when on) ----------------------------------------------------------------------
def _parts(parts: Any) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, Mapping):
            continue
        call = part.get("function_call") or part.get("functionCall")
        result = part.get("function_response") or part.get("functionResponse")
        if isinstance(part.get("text"), str):
            kind = "reasoning" if part.get("thought") else "text"
            out.append({"type": kind, "content": part["text"]})
        elif isinstance(call, Mapping):
            out.append({"type": "tool_call", "id": call.get("id"), "name": call.get("name"), "arguments": call.get("args")})
        elif isinstance(result, Mapping):
            out.append({"type": "tool_call_response", "id": result.get("id"), "response": result.get("response")})
        else:
            out.append({"type": next(iter(part), "unknown")})  # media and server tools: the kind only
    return out


def input_messages(request: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """System instructions (``system_instruction``, text parts), input messages and tool definitions,
    in the semconv JSON shape."""
    if not request:
        return {"system": [], "input": [], "tools": []}
    system_content = request.get("systemInstruction")
    system = text_only(_parts(system_content.get("parts"))) if isinstance(system_content, Mapping) else []
    messages = []
    for content in request.get("contents") or ():
        if not isinstance(content, Mapping):
            continue
        parts = _parts(content.get("parts"))
        role = "assistant" if content.get("role") == "model" else content.get("role") or "user"
        if parts and all(p["type"] == "tool_call_response" for p in parts):
            role = "tool"
        messages.append({"role": role, "parts": parts})
    return {"system": system, "input": messages, "tools": tool_definitions(request)}


def tool_definitions(request: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """``tools``: each function declaration as a function, other tools (``google_search``,
    ``code_execution``...) by their kind."""
    out: List[Dict[str, Any]] = []
    for tool in request.get("tools") or ():
        if not isinstance(tool, Mapping):
            continue
        for kind, spec in tool.items():
            if kind in ("function_declarations", "functionDeclarations"):
                for fn in spec or ():
                    if isinstance(fn, Mapping):
                        params = fn.get("parameters_json_schema") or fn.get("parametersJsonSchema") or fn.get("parameters")
                        out.append(function_tool(fn.get("name"), fn.get("description"), params))
            else:
                out.append(other_tool(kind))
    return out
