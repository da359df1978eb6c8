"""Input tokens of a request body, in each provider's own shape, and the per-family format constants.

Part of usage estimation (``steer.processing.usage``): OpenAI chat ``messages`` are counted the way the
openai-cookbook does (3 tokens per message, 3 to prime the reply, ``num_tokens_for_tools`` for tools),
Responses ``input``/``instructions``, Anthropic ``system``/``messages``/``tools`` (with Anthropic's
documented tool-use prompt), Gemini ``systemInstruction``/``contents``/``functionDeclarations``. The
constants are fitted on the recordings in shared/fixtures/streams (tests/test_usage_calibration.py).
Odd shapes are skipped, never raised on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence

from steer.processing.tokenizers import (
    CL100K,
    Counter,
    bare_model,
    encoding_for_model,
    model_family,
    resolve_counter,
    tiktoken_encoding_name,
)

# ------------------------------------------------------------------------------------------ model facts

# How many of the provider's tokens one tiktoken token of output text is worth, per family (reported /
# counted, median over the plain-text recordings). Claude's tokenizer cuts English ~20 % finer than
# cl100k; Gemini's ~5 % finer than o200k; the open models are within a few percent of their encoding.
TEXT_SCALE: Dict[str, float] = {"anthropic": 1.2, "google": 1.05}

# Output tokens a client tool call costs beyond its argument JSON: the call's wire format (name, ids,
# delimiters) as the provider counts it, per call; plus, for OpenAI, the parallel-call wrapper once
# when there is more than one call. Measured on the recordings with tool calls (OpenAI chat/Responses:
# 8 + name; Anthropic ~40: its tool calls are generated in a verbose markup; DeepSeek ~40; xAI ~20;
# Gemini counts the arguments alone).
TOOL_CALL_OVERHEAD: Dict[str, int] = {
    "openai": 8,
    "anthropic": 38,
    "deepseek": 38,
    "xai": 18,
    "google": 0,
}
DEFAULT_TOOL_CALL_OVERHEAD = 10
PARALLEL_CALLS_OVERHEAD: Dict[str, int] = {"openai": 10}

# Reasoning-capable OpenAI models (o-series, gpt-5) wrap every answer in channel markers that count as
# output (4 tokens, also when no reasoning tokens are reported); the Responses API counts the end token.
OPENAI_REASONING_MODEL = re.compile(r"^(o\d|gpt-5(?!-chat)|gpt-oss)")


# ------------------------------------------------------------------------------------ request input


def _dumps(value: Any) -> str:
    """JSON as models are shown it: compact (measured: compact schemas match OpenAI's and Anthropic's
    counts; the spaced form over-counts by ~25 %)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class _Template:
    """How a family's chat template frames a request, in tokens (constants, not scaled)."""

    per_message: int  # role markers and separators around each message
    priming: int  # once: start of text, the reply header
    scale: float = 1.0  # provider tokens per tiktoken token of request text


# openai: openai-cookbook num_tokens_from_messages (3 per message, 3 priming); meta: Llama 3 headers
# (<|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|>), +24 for the date block Llama 3.1+ puts
# in the system turn; deepseek: <｜User｜>/<｜Assistant｜> markers; qwen: ChatML; anthropic: Human/Assistant
# turns, text scaled like its output; google: Gemini counts the text alone. Fitted on the recordings.
_TEMPLATES: Dict[str, _Template] = {
    "openai": _Template(3, 3),
    "anthropic": _Template(1, 5, TEXT_SCALE["anthropic"]),
    "google": _Template(0, 0),
    "meta": _Template(5, 5),
    "deepseek": _Template(1, 3),
    "qwen": _Template(5, 3),
}
_LLAMA_DATE_BLOCK = 24
_GOOGLE_FUNCTION_INIT = 8
_LLAMA_31_PLUS = re.compile(r"llama-?3\.[1-9]|llama-?[4-9]")

# Anthropic adds a tool-use system prompt whenever client tools are given (Anthropic docs, tool use
# pricing: 346 tokens for auto/none tool_choice, 313 for any/tool on Claude 3.5+ and 4 models), a
# thinking preamble when thinking is on (~28, measured on three recordings) and a structured-output
# preamble with output_config.format (~170, one recording).
_ANTHROPIC_TOOL_PROMPT = {"auto": 346, "none": 346, "any": 313, "tool": 313}
_ANTHROPIC_THINKING_PROMPT = 28
_ANTHROPIC_STRUCTURED_PROMPT = 170

# Media parts cannot be counted from the request text; each is taken as this many tokens and the
# input confidence drops (OpenAI: 85 for a low-detail image, ~765 for a 512 px tile set; Claude ~1,600
# for a 1,000 px image; Gemini 258 per image).
_MEDIA_TOKENS = 500


def list_field(value: Any) -> Sequence[Any]:
    """A list field of a request body, or nothing when the field is absent or of another type."""
    return value if isinstance(value, (list, tuple)) else ()


class InputCount:
    """Adds up a request's tokens: text (scaled to the family's tokenizer) and fixed template tokens."""

    __slots__ = ("count", "text_tokens", "fixed", "media", "tools", "scale")

    def __init__(self, count: Counter, scale: float) -> None:
        self.count = count
        self.text_tokens = 0
        self.fixed = 0
        self.media = 0
        self.tools = False
        self.scale = scale

    def text(self, s: Any) -> None:
        if s is None:
            return
        if not isinstance(s, str):
            s = _dumps(s)
        if s:
            self.text_tokens += self.count(s)

    def add(self, n: int) -> None:
        self.fixed += n

    def media_part(self) -> None:
        self.media += 1
        self.fixed += _MEDIA_TOKENS

    @property
    def total(self) -> int:
        return max(0, round(self.text_tokens * self.scale) + self.fixed)


def _content_parts(inp: InputCount, content: Any) -> None:
    """OpenAI chat / Responses / Anthropic content: a string, or a list of typed parts/blocks."""
    if content is None:
        return
    if isinstance(content, str):
        inp.text(content)
        return
    if isinstance(content, Mapping):
        content = [content]
    if not isinstance(content, list):
        inp.text(content)
        return
    for part in content:
        if isinstance(part, str):
            inp.text(part)
            continue
        if not isinstance(part, Mapping):
            continue
        ptype = part.get("type", "")
        if isinstance(part.get("text"), str):
            inp.text(part["text"])
        elif ptype in ("image", "image_url", "input_image", "document", "input_file", "input_audio", "file"):
            inp.media_part()
        elif ptype in ("tool_use", "server_tool_use"):  # Anthropic assistant turn
            inp.text(part.get("name"))
            inp.text(part.get("input", {}))
            inp.add(TOOL_CALL_OVERHEAD["anthropic"])
        elif ptype in ("tool_result", "web_search_tool_result"):
            _content_parts(inp, part.get("content"))
        elif ptype == "thinking":
            inp.text(part.get("thinking"))
        elif isinstance(part.get("refusal"), str):
            inp.text(part["refusal"])


def _function_tokens(
    inp: InputCount, name: Any, description: Any, parameters: Any, func_init: int, k: int = 1
) -> None:
    """One function definition the way the openai-cookbook counts it ("How to count tokens with
    tiktoken", num_tokens_for_tools): ``name:description``, then ``key:type:description`` per property,
    enum items, with small per-item constants (``k`` = 1). Gemini's counts follow the same shape with a
    fixed cost per function and no per-item constants (``k`` = 0; fitted on its three tool recordings)."""
    inp.add(func_init)
    inp.text(f"{name or ''}:{str(description or '').rstrip('.')}")
    props = parameters.get("properties") if isinstance(parameters, Mapping) else None
    if not isinstance(props, Mapping) or not props:
        return
    inp.add(3 * k)  # prop_init
    for key, prop in props.items():
        inp.add(3 * k)  # prop_key
        prop = prop if isinstance(prop, Mapping) else {}
        enum = prop.get("enum")
        if isinstance(enum, list) and enum:
            inp.add(-3 * k)  # enum_init
            for item in enum:
                inp.add(3 * k)  # enum_item
                inp.text(str(item))
        inp.text(f"{key}:{prop.get('type', '')}:{str(prop.get('description') or '').rstrip('.')}")
        nested = {x: prop[x] for x in ("properties", "items", "anyOf", "oneOf", "$ref") if x in prop}
        if nested:
            inp.text(nested)


def _openai_tools(inp: InputCount, tools: Any, legacy: bool) -> None:
    """OpenAI function tools (chat ``{"type":"function","function":{...}}`` or Responses' flat shape);
    other tools (built-in, custom) are counted as their JSON."""
    counted = False
    for tool in list_field(tools):
        if not isinstance(tool, Mapping):
            continue
        fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
        if tool.get("type", "function") == "function" and isinstance(fn, Mapping) and "name" in fn:
            counted = True
            _function_tokens(
                inp, fn.get("name"), fn.get("description"), fn.get("parameters"), 10 if legacy else 7
            )
        else:
            inp.text(tool)
    if counted:
        inp.tools = True
        inp.add(12)  # func_end


def _schema_format(inp: InputCount, fmt: Any) -> None:
    """Structured-output schemas (chat ``response_format``, Responses ``text.format``)."""
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        inner = fmt.get("json_schema", fmt)
        inp.text(inner.get("schema", inner) if isinstance(inner, Mapping) else inner)
        inp.tools = True


def _chat_messages(inp: InputCount, messages: Any, tpl: _Template) -> None:
    for msg in list_field(messages):
        if not isinstance(msg, Mapping):
            continue
        inp.add(tpl.per_message)
        for key, value in msg.items():
            if key == "content":
                _content_parts(inp, value)
            elif key == "tool_calls" and isinstance(value, list):
                for call in value:
                    fn = call.get("function") if isinstance(call, Mapping) else None
                    fn = fn if isinstance(fn, Mapping) else {}
                    inp.text(fn.get("name"))
                    inp.text(fn.get("arguments"))
                    inp.add(TOOL_CALL_OVERHEAD["openai"])
            elif key in ("role", "name", "tool_call_id") and isinstance(value, str):
                inp.text(value)
                if key == "name":
                    inp.add(1)
            elif key == "function_call" and isinstance(value, Mapping):
                inp.text(value.get("name"))
                inp.text(value.get("arguments"))
    inp.add(tpl.priming)


def _responses_items(inp: InputCount, body: Mapping[str, Any], tpl: _Template) -> None:
    if body.get("instructions"):
        inp.add(tpl.per_message)
        inp.text(body["instructions"])
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        itype = item.get("type", "message")
        if itype == "message" or "role" in item:
            inp.add(tpl.per_message)
            inp.text(item.get("role"))
            _content_parts(inp, item.get("content"))
        elif itype == "function_call":
            inp.text(item.get("name"))
            inp.text(item.get("arguments"))
            inp.add(TOOL_CALL_OVERHEAD["openai"])
        elif itype == "function_call_output":
            inp.add(tpl.per_message)
            inp.text(item.get("output"))
        elif itype == "reasoning":
            for part in list_field(item.get("summary")):
                if isinstance(part, Mapping):
                    inp.text(part.get("text"))
    inp.add(tpl.priming)


def _anthropic_request(inp: InputCount, body: Mapping[str, Any], tpl: _Template) -> None:
    system = body.get("system")
    if system:
        inp.add(tpl.per_message)
        _content_parts(inp, system)
    for msg in list_field(body.get("messages")):
        if isinstance(msg, Mapping):
            inp.add(tpl.per_message)
            _content_parts(inp, msg.get("content"))
    inp.add(tpl.priming)
    client_tools = False
    for tool in list_field(body.get("tools")):
        if isinstance(tool, Mapping):
            client_tools = client_tools or "input_schema" in tool
            inp.text({k: v for k, v in tool.items() if k in ("name", "description", "input_schema", "type")})
    if client_tools:
        choice = body.get("tool_choice")
        ctype = choice.get("type") if isinstance(choice, Mapping) else None
        inp.add(_ANTHROPIC_TOOL_PROMPT.get(ctype if isinstance(ctype, str) else "auto", 346))
        inp.tools = True
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive"):
        inp.add(_ANTHROPIC_THINKING_PROMPT)
    config = body.get("output_config")
    fmt = body.get("output_format") or (config.get("format") if isinstance(config, Mapping) else None)
    if isinstance(fmt, Mapping):
        inp.text(fmt.get("schema", fmt))
        inp.add(_ANTHROPIC_STRUCTURED_PROMPT)
        inp.tools = True


def _google_parts(inp: InputCount, parts: Any) -> None:
    if isinstance(parts, Mapping):
        parts = [parts]
    for part in parts if isinstance(parts, list) else ():
        if isinstance(part, str):
            inp.text(part)
            continue
        if not isinstance(part, Mapping):
            continue
        if isinstance(part.get("text"), str):
            inp.text(part["text"])
        fc = part.get("functionCall") or part.get("function_call")
        if isinstance(fc, Mapping):
            inp.text(fc.get("name"))
            inp.text(fc.get("args") or {})
        fr = part.get("functionResponse") or part.get("function_response")
        if isinstance(fr, Mapping):
            inp.text(fr.get("name"))
            inp.text(fr.get("response") or {})
        if any(k in part for k in ("inlineData", "inline_data", "fileData", "file_data")):
            inp.media_part()


def _google_request(inp: InputCount, body: Mapping[str, Any]) -> None:
    sys_inst = body.get("systemInstruction") or body.get("system_instruction")
    if isinstance(sys_inst, Mapping):
        _google_parts(inp, sys_inst.get("parts"))
    elif isinstance(sys_inst, str):
        inp.text(sys_inst)
    contents = body.get("contents")
    for content in contents if isinstance(contents, list) else [contents]:
        if isinstance(content, Mapping):
            _google_parts(inp, content.get("parts"))
        elif isinstance(content, str):
            inp.text(content)
    for tool in list_field(body.get("tools")):
        if not isinstance(tool, Mapping):
            continue
        for decl in list_field(tool.get("functionDeclarations") or tool.get("function_declarations")):
            if isinstance(decl, Mapping):
                params = (
                    decl.get("parameters")
                    or decl.get("parametersJsonSchema")
                    or decl.get("parameters_json_schema")
                )
                _function_tokens(
                    inp, decl.get("name"), decl.get("description"), params, _GOOGLE_FUNCTION_INIT, 0
                )
                inp.tools = True
    config = body.get("generationConfig") or body.get("generation_config") or {}
    if isinstance(config, Mapping):
        schema = (
            config.get("responseJsonSchema") or config.get("responseSchema") or config.get("response_schema")
        )
        if schema:
            inp.text(schema)
            inp.tools = True


def request_tokens(
    api: str, request: Optional[Mapping[str, Any]], count: Counter, family: str, model: Optional[str]
) -> Optional[InputCount]:
    if not isinstance(request, Mapping) or not request:
        return None
    tpl = _TEMPLATES.get(family, _TEMPLATES["openai"])
    inp = InputCount(count, tpl.scale)
    legacy = tiktoken_encoding_name(bare_model(model)) == CL100K
    if api.startswith("anthropic"):
        _anthropic_request(inp, request, tpl)
    elif api.startswith("google") or "contents" in request:
        _google_request(inp, request)
    elif api == "openai.completions" or "prompt" in request:
        prompt = request.get("prompt")
        for p in prompt if isinstance(prompt, list) else [prompt]:
            inp.text(p)
    elif api == "openai.responses" or ("input" in request and "messages" not in request):
        _responses_items(inp, request, tpl)
        _openai_tools(inp, request.get("tools"), legacy)
        text_cfg = request.get("text")
        if isinstance(text_cfg, Mapping):
            _schema_format(inp, text_cfg.get("format"))
    elif "messages" in request:
        _chat_messages(inp, request.get("messages"), tpl)
        _openai_tools(inp, request.get("tools") or request.get("functions"), legacy)
        _schema_format(inp, request.get("response_format"))
    else:
        return None
    if family == "anthropic":
        thinking_or = request.get("reasoning")  # OpenRouter's reasoning switch for Claude
        if (
            isinstance(thinking_or, Mapping)
            and thinking_or.get("enabled") is not False
            and not api.startswith("anthropic")
        ):
            inp.add(_ANTHROPIC_THINKING_PROMPT)
    if family == "meta" and _LLAMA_31_PLUS.search(bare_model(model)):
        inp.add(_LLAMA_DATE_BLOCK)
    return inp


def count_input_tokens(
    api: str,
    request: Optional[Mapping[str, Any]],
    count: Optional[Counter] = None,
    *,
    provider: str = "openai",
    model: Optional[str] = None,
) -> Optional[int]:
    """Input tokens of a request body in its provider's shape; None when there is no body.
    ``count`` defaults to the model's encoding (or the heuristic)."""
    family = model_family(provider, model)
    if count is None:
        count = resolve_counter(encoding_for_model(provider, model)[0], 5.0)[0]
    try:
        inp = request_tokens(api, request, count, family, model)
    except Exception:  # an odd body shape: unknown, never an error
        return None
    return None if inp is None else inp.total
