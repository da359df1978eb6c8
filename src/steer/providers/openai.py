"""OpenAI wire formats: Chat Completions and legacy Completions, for OpenAI and every
OpenAI-compatible provider (Azure, xAI, OpenRouter, Groq, Mistral, DeepSeek, Together, ...).

Decoders read SDK chunk models by attribute (or raw JSON through ``AttrView``): no per-chunk dict
conversion. Provider extensions (``x_groq``, ``reasoning_content``) are read from the model's extras.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from steer.call import CallInfo
from steer.events import Usage
from steer.providers.base import (Assembly, field_of, function_tool, given, make_usage, message_parts, other_tool,
                                  output_type, server_of)

# Host suffix -> gen_ai.provider.name. Decided from the client's base URL, never assumed.
_HOSTS: Tuple[Tuple[str, str], ...] = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure.ai.openai"),
    (".cognitiveservices.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
    ("api.x.ai", "x_ai"),
    ("openrouter.ai", "openrouter"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.deepseek.com", "deepseek"),
    ("api.together.xyz", "together"),
    ("api.together.ai", "together"),
    ("api.perplexity.ai", "perplexity"),
    ("api.fireworks.ai", "fireworks"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
)


def provider_from_url(base_url: Any, default: str = "openai") -> Tuple[str, Optional[str], Optional[int]]:
    """(provider name, server.address, server.port) from a client's base URL."""
    host, port = server_of(base_url)
    for suffix, name in _HOSTS:
        if host and (host == suffix.lstrip(".") or host.endswith(suffix)):
            return name, host, port
    return default, host, port


def _extra_reasoning(asm: Assembly, index: int, extra: Mapping[str, Any]) -> None:
    """Reasoning in fields the SDK does not model: DeepSeek/xAI ``reasoning_content``, OpenRouter/Groq
    ``reasoning``."""
    reasoning = extra.get("reasoning_content") or extra.get("reasoning")
    if isinstance(reasoning, str):
        asm.add_reasoning(index, reasoning)


def _stop_list(stop: Any) -> Optional[List[str]]:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        return list(stop)
    return None


def _response_format_type(fmt: Any) -> Optional[str]:
    if isinstance(fmt, Mapping):
        return fmt.get("type")
    if isinstance(fmt, type):  # .parse(response_format=PydanticModel)
        return "json_schema"
    return None


def chat_call_info(kwargs: Mapping[str, Any], *, provider: str, address: Optional[str], port: Optional[int],
                   operation: str = "chat", api: str = "openai.chat.completions") -> CallInfo:
    fmt = _response_format_type(kwargs.get("response_format"))
    params: Dict[str, Any] = {
        "max_tokens": kwargs.get("max_completion_tokens", kwargs.get("max_tokens")),
        "temperature": kwargs.get("temperature"),
        "top_p": kwargs.get("top_p"),
        "frequency_penalty": kwargs.get("frequency_penalty"),
        "presence_penalty": kwargs.get("presence_penalty"),
        "stop_sequences": _stop_list(kwargs.get("stop")),
        "seed": kwargs.get("seed"),
        "reasoning_level": kwargs.get("reasoning_effort"),
    }
    n = kwargs.get("n")
    if isinstance(n, int) and n != 1:
        params["choice_count"] = n
    modalities = kwargs.get("modalities")
    if given(kwargs.get("audio")) and not given(modalities):
        modalities = ["audio"]  # audio output parameters given: the answer is spoken
    params["output_type"] = output_type(fmt in ("json_object", "json_schema"), modalities)
    if params["output_type"] != "speech":  # no audio asked for: Chat and Completions answer in text
        params["output_modality"] = "text"
    extra: Dict[str, Any] = {"api_type": "chat_completions" if operation == "chat" else "completions"}
    tier = kwargs.get("service_tier")
    if given(tier) and isinstance(tier, str) and tier != "auto":  # semconv: set unless "auto"
        extra["request_service_tier"] = tier
    return CallInfo(
        provider=provider,
        api=api,
        operation=operation,
        request_model=kwargs.get("model") if isinstance(kwargs.get("model"), str) else None,
        streaming=bool(kwargs.get("stream")),
        server_address=address,
        server_port=port,
        params={k: v for k, v in params.items() if given(v)},
        request=dict(kwargs),
        json_output=fmt in ("json_object", "json_schema"),
        extra=extra,
    )


def usage_from(asm: Assembly, u: Any, input_name: str = "prompt", output_name: str = "completion") -> Usage:
    """Chat Completions usage (``prompt_tokens``, ``completion_tokens`` and their ``_details``); the
    Responses API names the same fields ``input_`` / ``output_`` (cached and reasoning included)."""
    details_in = field_of(u, f"{input_name}_tokens_details")
    details_out = field_of(u, f"{output_name}_tokens_details")
    return make_usage(
        asm,
        input_tokens=field_of(u, f"{input_name}_tokens"),
        output_tokens=field_of(u, f"{output_name}_tokens"),
        total_tokens=field_of(u, "total_tokens"),
        cache_read=field_of(details_in, "cached_tokens") if details_in is not None else None,
        cache_creation=field_of(details_in, "cache_write_tokens") if details_in is not None else None,
        reasoning=field_of(details_out, "reasoning_tokens") if details_out is not None else None,
    )


class ChatDecoder:
    """``chat.completion.chunk`` stream (and the non-streaming ``chat.completion``)."""

    __slots__ = ()

    def decode(self, chunk: Any, asm: Assembly) -> None:
        if asm.response_model is None:
            # Azure's first chunk has empty id/model (prompt filter results only): take the first real one.
            if chunk.model:
                asm.response_model = chunk.model
            if chunk.id:
                asm.response_id = chunk.id
            _response_extras(chunk, asm)
        choices = chunk.choices
        if choices:
            for choice in choices:
                index = choice.index or 0
                delta = choice.delta
                if delta is not None:
                    content = delta.content
                    if content:
                        asm.add_text(index, content)
                    calls = delta.tool_calls
                    if calls:
                        for call in calls:
                            fn = call.function
                            asm.tool_fragment(
                                index, call.index, call.id,
                                fn.name if fn is not None else None,
                                fn.arguments if fn is not None else None,
                            )
                    if delta.refusal:
                        asm.add_refusal(index, delta.refusal)
                    extra = delta.__pydantic_extra__
                    if extra:
                        _extra_reasoning(asm, index, extra)
                if choice.finish_reason:
                    asm.set_finish(index, choice.finish_reason)
        usage = chunk.usage
        if usage is None:
            extra = chunk.__pydantic_extra__
            if extra:
                groq = extra.get("x_groq")
                usage = field_of(groq, "usage") if groq is not None else None
        if usage is not None:
            asm.usage = usage_from(asm, usage)

    def decode_response(self, resp: Any, asm: Assembly) -> None:
        asm.response_id = resp.id or None
        asm.response_model = resp.model or None
        _response_extras(resp, asm)
        for choice in resp.choices or ():
            index = choice.index or 0
            message = choice.message
            if message is not None:
                if message.content:
                    asm.add_text(index, message.content)
                if getattr(message, "refusal", None):
                    asm.add_refusal(index, message.refusal)
                for position, call in enumerate(getattr(message, "tool_calls", None) or ()):
                    fn = getattr(call, "function", None)
                    asm.tool_fragment(index, position, call.id, getattr(fn, "name", None), getattr(fn, "arguments", None))
                extra = message.__pydantic_extra__
                if extra:
                    _extra_reasoning(asm, index, extra)
            if choice.finish_reason:
                asm.set_finish(index, choice.finish_reason)
        if resp.usage is not None:
            asm.usage = usage_from(asm, resp.usage)

    def finish(self, asm: Assembly) -> None:
        return None

    @staticmethod
    def input_content(request: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        return {"system": [], "input": input_messages(request), "tools": tool_definitions(request)}


def _response_extras(response: Any, asm: Assembly) -> None:
    """``service_tier`` and ``system_fingerprint`` of a response (every chunk repeats them: read once)."""
    for name in ("service_tier", "system_fingerprint"):
        value = getattr(response, name, None)
        if isinstance(value, str) and value:
            asm.extra[name] = value


class CompletionDecoder(ChatDecoder):
    """Legacy ``text_completion`` chunks: ``choices[].text`` instead of ``delta.content``."""

    __slots__ = ()

    def decode(self, chunk: Any, asm: Assembly) -> None:
        if asm.response_model is None and chunk.model:
            asm.response_model = chunk.model
            asm.response_id = chunk.id or None
        for choice in chunk.choices or ():
            index = choice.index or 0
            if choice.text:
                asm.add_text(index, choice.text)
            if choice.finish_reason:
                asm.set_finish(index, choice.finish_reason)
        if chunk.usage is not None:
            asm.usage = usage_from(asm, chunk.usage)

    decode_response = decode


def input_messages(request: Optional[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The input messages in the semconv JSON shape, for content capture. ``system`` and ``developer``
    messages stay where the caller put them: they are part of the chat history, not instructions
    given apart (the conventions keep ``gen_ai.system_instructions`` for those)."""
    messages: List[Dict[str, Any]] = []
    if not request:
        return messages
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        messages.append({"role": "user", "parts": [{"type": "text", "content": prompt}]})
    for message in request.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        role = message.get("role", "user")
        parts = _content_parts(message.get("content"))
        for call in message.get("tool_calls") or ():
            fn = call.get("function", {}) if isinstance(call, Mapping) else {}
            parts.append({"type": "tool_call", "id": call.get("id"), "name": fn.get("name"), "arguments": fn.get("arguments")})
        if role == "tool":
            parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"), "response": message.get("content")}]
        messages.append({"role": role, "parts": parts})
    return messages


def tool_definitions(request: Optional[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """``tools`` (and the older ``functions``) of a Chat Completions request, for ``gen_ai.tool.definitions``."""
    out: List[Dict[str, Any]] = []
    if not request:
        return out
    for tool in request.get("tools") or ():
        if not isinstance(tool, Mapping):
            continue
        fn = tool.get("function")
        if tool.get("type", "function") == "function" and isinstance(fn, Mapping):
            out.append(function_tool(fn.get("name"), fn.get("description"), fn.get("parameters")))
        else:
            spec = tool.get(str(tool.get("type")))
            out.append(other_tool(tool.get("type"), spec.get("name") if isinstance(spec, Mapping) else None))
    for fn in request.get("functions") or ():
        if isinstance(fn, Mapping):
            out.append(function_tool(fn.get("name"), fn.get("description"), fn.get("parameters")))
    return out


def _content_parts(content: Any) -> List[Dict[str, Any]]:
    return message_parts(content, _item_part)


def _item_part(item: Mapping[str, Any]) -> Dict[str, Any]:
    if item.get("type") == "text":
        return {"type": "text", "content": item.get("text", "")}
    return {"type": str(item.get("type", "unknown"))}  # media: type only, never the bytes
