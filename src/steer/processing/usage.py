"""Token usage when the provider reports none: estimated from the request and the assembled output.

Reported usage always wins; this module is only asked when a stream ended without usage (xAI and
OpenAI-compatible servers without ``include_usage``, interrupted streams, Gemini chunks without
``usageMetadata``). It counts tokens with tiktoken (the model's own encoding where tiktoken knows it, a
close one for other families, see ``tokenizers``), or with a character heuristic when no encoding can be
loaded offline, and attaches a calibrated confidence.

Confidence ``c`` in ``[0, 1]`` means: with probability at least 0.9 the estimated output tokens lie
within a factor ``1/c`` of the true count, i.e. ``c <= estimate / actual <= 1 / c`` (relative error in
``[c - 1, 1/c - 1]``; ``confidence_band(c)``). 0.9 is "within -10 % / +11 %", 0.5 "within a factor of 2",
0 claims nothing; reported usage is 1.0. ``Usage.confidence`` is about output tokens (what is missing
most often); ``UsageEstimate.input_confidence`` makes the same claim about input tokens. The numbers live
in ``_CONFIDENCE`` / ``_INPUT_CONFIDENCE`` below, measured on the recordings in ``shared/fixtures/streams``
(tests/test_usage_calibration.py re-checks them; docs/usage-estimation.md publishes the table).
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

from steer.events import Usage
from steer.processing import tokenizers
from steer.processing.tokenizers import (
    CL100K,
    O200K,
    bare_model as _bare_model,
    encoding_for_model,
    heuristic_token_count,
    model_family,
    non_ascii_share,
    resolve_counter as _resolve_counter,
)
from steer.processing.usage_input import (
    DEFAULT_TOOL_CALL_OVERHEAD,
    OPENAI_REASONING_MODEL,
    PARALLEL_CALLS_OVERHEAD,
    TEXT_SCALE,
    TOOL_CALL_OVERHEAD,
    list_field,
    count_input_tokens,
    request_tokens as _request_tokens,
)

__all__ = [
    "UsageEstimate",
    "confidence_band",
    "count_input_tokens",
    "encoding_for_model",
    "estimate_usage",
    "estimate_usage_detail",
    "heuristic_token_count",
    "model_family",
    "warm_up",
    "within_band",
]

# ------------------------------------------------------------------------------------- content kinds

_GOOGLE_SERVER_TOOLS = (
    "googleSearch",
    "google_search",
    "googleSearchRetrieval",
    "google_search_retrieval",
    "codeExecution",
    "code_execution",
    "urlContext",
    "url_context",
    "googleMaps",
)


def _server_tools(api: str, request: Optional[Mapping[str, Any]]) -> bool:
    """Provider-side tools (web search, code execution, grounding, MCP) add output (and input) that the
    client-side stream does not fully show."""
    if not isinstance(request, Mapping):
        return False
    if request.get("web_search_options") is not None:
        return True
    for tool in list_field(request.get("tools")):
        if not isinstance(tool, Mapping):
            continue
        if api.startswith("google"):
            if any(k in tool for k in _GOOGLE_SERVER_TOOLS):
                return True
        elif api.startswith("anthropic"):
            if "input_schema" not in tool and tool.get("type") not in (None, "custom"):
                return True
        elif tool.get("type") not in (None, "function", "custom"):
            return True
    return False


def _reasoning_requested(family: str, model: Optional[str], request: Optional[Mapping[str, Any]]) -> bool:
    """Whether the model may think before answering (and count those tokens as output)."""
    m = _bare_model(model)
    body = request if isinstance(request, Mapping) else {}
    if family == "openai" and OPENAI_REASONING_MODEL.match(m):
        return True
    effort = body.get("reasoning_effort")
    if effort not in (None, "none"):
        return True
    reasoning = body.get("reasoning")
    if (
        isinstance(reasoning, Mapping)
        and reasoning.get("enabled") is not False
        and reasoning.get("effort") != "none"
    ):
        return True
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive"):
        return True
    if family == "google" and re.match(r"^gemini-(2\.5|[3-9])", m):  # these think by default
        return True
    if family in ("deepseek", "qwen") and ("reason" in m or "r1" in m or m.startswith("qwq")):
        return True
    return bool(family == "xai" and "mini" in m)


def _reasoning_in_output(provider: str, api: str) -> bool:
    """Whether steer's reported output count includes reasoning tokens. xAI reports ``reasoning_tokens``
    beside completion_tokens. Everyone else counts them in the output: OpenAI, Anthropic, DeepSeek,
    OpenRouter, Groq natively, and Gemini as steer reports it (candidatesTokenCount + thoughtsTokenCount,
    see docs/providers/google.md), so an estimate is on the same basis as a reported count."""
    return (provider or "").lower() not in ("xai", "x_ai")


def _reasoning_fully_streamed(family: str, model: Optional[str]) -> bool:
    """Whether the reasoning text that streams is all of it (raw chain of thought) rather than a
    summary: DeepSeek, xAI, Qwen and open-weight models stream it raw; Claude 3.7 streams full thinking;
    OpenAI, Gemini and Claude 4+ stream summaries of it (or nothing)."""
    m = _bare_model(model)
    if family in ("deepseek", "xai", "qwen", "meta", "mistral"):
        return True
    if family == "openai":
        return m.startswith("gpt-oss")
    if family == "anthropic":
        return "3-7" in m or "3.7" in m
    return False


# -------------------------------------------------------------------------------------- confidence


def confidence_band(confidence: float) -> Tuple[float, float]:
    """The relative-error interval ``(low, high)`` that an estimate of this confidence falls in with
    probability >= 0.9: ``estimate / actual`` in ``[c, 1/c]``, so ``(c - 1, 1/c - 1)``."""
    if confidence <= 0:
        return (-1.0, math.inf)
    c = min(confidence, 1.0)
    return (c - 1.0, 1.0 / c - 1.0)


def within_band(estimate: float, actual: float, confidence: float) -> bool:
    """Whether ``estimate`` honours the claim of ``confidence`` about ``actual``."""
    if actual <= 0:
        return estimate <= 0 or confidence <= 0
    low, high = confidence_band(confidence)
    rel = (estimate - actual) / actual
    return low - 1e-9 <= rel <= high + 1e-9


# Output-token confidence per (family group, encoding class, content kind). Each value is the lower of
# (a) what the calibration recordings support: the 10th percentile over the cell of min(est/reported,
#     reported/est) with the short-output slack taken out (``python tests/test_usage_calibration.py
#     --derive``; shared/fixtures/streams, 43 recordings with reported usage, three loader modes), and
# (b) a cap for what 43 English recordings cannot show: other languages (cl100k counts non-Latin
#     scripts 10-50 % higher than o200k; Claude's and Gemini's tokenizers differ more there), newer
#     tokenizers (Claude Opus 4.7), tool/reasoning overheads fitted on one or two recordings, and
#     hidden reasoning, which is unbounded (o-series at high effort think 10-50x what they say).
# Family groups: "openai"; "open" (Llama, Mistral, DeepSeek, Qwen, Grok: BPE vocabularies close to
# cl100k/o200k); "anthropic"; "google". Encoding classes: "exact" (the model's own encoding), "close"
# (another encoding), "heuristic" (no encoding loaded; one row for every family). Kinds: "text";
# "tools" (client tool calls, wire overhead modelled per family); "reasoning" (reasoning streamed in
# full and counted as output); "server_tools" (provider-side tools, partly invisible work);
# "hidden_reasoning" (the output count includes thinking the stream shows only summarised or not at
# all: o-series/gpt-5, Claude 4 thinking, Gemini through OpenAI-compatible gateways). An estimate
# that is several kinds at once takes the lowest.
_KINDS = ("text", "tools", "reasoning", "server_tools", "hidden_reasoning")
# fmt: off
_CONFIDENCE_ROWS: Dict[Tuple[str, str], Tuple[float, ...]] = {
    #                       text  tools reason server hidden    measured p10 (n), same order
    ("openai", "exact"):   (0.90, 0.85, 0.70, 0.30, 0.05),  # 1.00 (9)  0.97 (3)  —         —         0.10 (4)
    ("openai", "close"):   (0.75, 0.70, 0.60, 0.30, 0.05),  # 0.99 (7)  0.97 (3)  —         —         0.10 (4)
    ("open", "close"):     (0.75, 0.60, 0.60, 0.30, 0.05),  # 1.00 (8)  1.00 (2)  0.98 (2)  —         —
    ("anthropic", "close"): (0.75, 0.65, 0.65, 0.50, 0.35),  # 0.80 (12) 0.98 (4)  0.97 (2)  0.70 (2)  0.78 (4)
    ("google", "close"):   (0.80, 0.60, 0.60, 0.60, 0.10),  # 0.95 (12) 0.74 (2)  —         0.80 (4)  0.41 (2)
    ("any", "heuristic"):  (0.60, 0.50, 0.50, 0.40, 0.05),  # 0.75 (24) 0.66 (7)  0.79 (2)  0.71 (3)  0.10 (7)
}
# fmt: on
_CONFIDENCE: Dict[Tuple[str, str], Dict[str, float]] = {
    key: dict(zip(_KINDS, row)) for key, row in _CONFIDENCE_ROWS.items()
}
# Short outputs: a count of n carries about this many tokens of absolute uncertainty (end and format
# tokens), so the confidence is scaled by n / (n + slack): 0.9 becomes 0.6 for a 1-token OpenAI answer.
_SLACK: Dict[str, float] = {"openai": 0.5, "open": 1.0, "anthropic": 2.0, "google": 1.0, "any": 1.0}

# Input-token confidence per family group and request kind, derived the same way (same definition, for
# input tokens). Kinds: "text" (messages only); "tools" (tool definitions or a structured-output
# schema, which providers wrap in prompts of their own: OpenAI's Responses API added ~200 tokens to a
# gpt-4o function-tool request, DeepSeek ~300); "media" (images/files counted as a constant: no
# recording); "server_tools" (results of provider-side tools return as input that no request shows,
# e.g. 10k tokens of web-search results: 0 = no claim).
#          measured p10 (n):  text: openai 1.00 (16), anthropic 0.95 (16), google 1.00 (10), open 1.00 (8),
#                                   heuristic 0.88 (25); tools: openai 0.19 (12, one miss of 12),
#                                   anthropic 0.77 (6), google 0.55 (10), open 0.14 (2), heuristic 0.18 (15)
_INPUT_CONFIDENCE: Dict[str, Dict[str, float]] = {
    "openai": {"text": 0.9, "tools": 0.5, "media": 0.2, "server_tools": 0.0},
    "anthropic": {"text": 0.8, "tools": 0.6, "media": 0.2, "server_tools": 0.0},
    "google": {"text": 0.85, "tools": 0.5, "media": 0.2, "server_tools": 0.0},
    "open": {"text": 0.7, "tools": 0.1, "media": 0.2, "server_tools": 0.0},
    "any": {"text": 0.6, "tools": 0.15, "media": 0.1, "server_tools": 0.0},
}
_INPUT_SLACK = 2.0

# Mostly non-ASCII output counted with an encoding that is not the model's own: cl100k counts German,
# Russian, CJK and Hindi 1.2-3.2x higher than o200k (docs/usage-estimation.md), and Claude's and
# Gemini's tokenizers part from both as much; the recordings are English, so this is a cap, not a fit.
_NON_ENGLISH_SHARE = 0.25
_NON_ENGLISH_CONFIDENCE = 0.3


def _group(family: str) -> str:
    if family in ("openai", "anthropic", "google"):
        return family
    return "open"


# ---------------------------------------------------------------------------------------- estimating


@dataclass(slots=True)
class UsageEstimate:
    """An estimate and what it rests on. ``usage.confidence`` is the output confidence."""

    usage: Usage
    input_confidence: Optional[float]
    family: str
    encoding: str  # the encoding actually used: o200k_base, cl100k_base or heuristic
    exact_encoding: bool
    kind: str  # output: text | tools | reasoning | server_tools | hidden_reasoning
    input_kind: Optional[str] = None  # input: text | tools | media | server_tools (None: no request)

    @property
    def band(self) -> Tuple[float, float]:
        return confidence_band(self.usage.confidence or 0.0)


def estimate_usage_detail(
    *,
    provider: str,
    model: Optional[str],
    request: Optional[Mapping[str, Any]],
    output_text: Union[str, Sequence[str]],
    reasoning_text: str = "",
    tool_arguments: Sequence[str] = (),
    tool_names: Sequence[str] = (),
    api: str = "openai.chat.completions",
    wait_s: Optional[float] = 5.0,
) -> UsageEstimate:
    """``estimate_usage`` with its working: family, encoding, content kind and input confidence."""
    family = model_family(provider, model)
    wanted, exact = encoding_for_model(provider, model)
    count, method, used = _resolve_counter(wanted, wait_s)
    enc_class = "heuristic" if used == "heuristic" else ("exact" if exact and used == wanted else "close")

    texts = [output_text] if isinstance(output_text, str) else list(output_text)
    scale = TEXT_SCALE.get(family, 1.0)
    text_tokens = sum(count(t) for t in texts if t)
    reasoning_visible = count(reasoning_text) if reasoning_text else 0
    args_tokens = sum(count(a) for a in tool_arguments if a)
    n_calls = max(len(tool_arguments), len(tool_names))
    names = list(tool_names) + [""] * (n_calls - len(tool_names))
    call_tokens = 0
    if n_calls:
        per_call = TOOL_CALL_OVERHEAD.get(family, DEFAULT_TOOL_CALL_OVERHEAD)
        call_tokens = sum(count(n) for n in names if n) + n_calls * per_call
        if n_calls > 1:
            call_tokens += PARALLEL_CALLS_OVERHEAD.get(family, 0)

    m = _bare_model(model)
    fixed = 0
    if family == "openai" and OPENAI_REASONING_MODEL.match(m):
        fixed = 4
    elif api == "openai.responses" and family == "openai":
        fixed = 1

    in_output = _reasoning_in_output(provider, api)
    reasoning_est = round(reasoning_visible * scale) if reasoning_visible else 0
    output = round(text_tokens * scale) + args_tokens + call_tokens + fixed
    if in_output:
        output += reasoning_est

    server = _server_tools(api, request)
    thinks = _reasoning_requested(family, model, request) or reasoning_visible > 0
    full_reasoning = _reasoning_fully_streamed(family, model)
    kinds = []
    if server:
        kinds.append("server_tools")
    if thinks and in_output and not full_reasoning:
        kinds.append("hidden_reasoning")
    if reasoning_visible and in_output:
        kinds.append("reasoning")
    if n_calls:
        kinds.append("tools")
    kinds = kinds or ["text"]
    group = "any" if enc_class == "heuristic" else _group(family)
    row = _CONFIDENCE.get((group, enc_class)) or _CONFIDENCE[(group, "close")]
    kind = min(kinds, key=lambda k: row[k])
    slack = _SLACK[group]
    confidence = row[kind] * output / (output + slack) if output > 0 else 0.0
    if enc_class != "exact" and non_ascii_share("".join(texts) + reasoning_text) > _NON_ENGLISH_SHARE:
        confidence = min(confidence, _NON_ENGLISH_CONFIDENCE)

    inp = None
    try:
        inp = _request_tokens(api, request, count, family, model)
    except Exception:  # an odd body shape: input stays unknown
        inp = None
    input_tokens = None if inp is None else inp.total
    input_confidence: Optional[float] = None
    in_kind: Optional[str] = None
    if inp is not None:
        # Gemini reports the tool-use prompt apart (toolUsePromptTokenCount); elsewhere server-side
        # tool results become input that no request shows.
        server_input = server and not api.startswith("google")
        in_kind = (
            "server_tools"
            if server_input
            else "media" if inp.media else "tools" if inp.tools or server else "text"
        )
        ic = _INPUT_CONFIDENCE[group][in_kind]
        input_confidence = (
            round(ic * input_tokens / (input_tokens + _INPUT_SLACK), 3) if input_tokens else 0.0
        )

    # Reasoning tokens are reported only where the visible reasoning is all of it.
    reasoning_tokens: Optional[int] = reasoning_est if (reasoning_visible and full_reasoning) else None
    total = None
    if input_tokens is not None:
        total = input_tokens + output + (0 if in_output or reasoning_tokens is None else reasoning_tokens)

    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output,
        total_tokens=total,
        reasoning_tokens=reasoning_tokens,
        source="estimated",
        confidence=round(confidence, 3),
        method=method,
    )
    return UsageEstimate(usage, input_confidence, family, used, enc_class == "exact", kind, in_kind)


# Same keywords as estimate_usage_detail on purpose (must stay): the public signature is spelled out for users
# and type checkers rather than hidden behind **kwargs.
def estimate_usage(
    *,
    provider: str,
    model: Optional[str],
    request: Optional[Mapping[str, Any]],
    output_text: Union[str, Sequence[str]],
    reasoning_text: str = "",
    tool_arguments: Sequence[str] = (),
    tool_names: Sequence[str] = (),
    api: str = "openai.chat.completions",
    wait_s: Optional[float] = 5.0,
) -> Usage:
    """Estimated usage of one call (``source="estimated"``, calibrated ``confidence``, ``method``).

    ``request`` is the request body in the provider's own shape (None when unknown: input is then None,
    not 0); ``output_text`` the assembled output text (one string per choice when n > 1); what arrived
    of an interrupted stream gives its output estimate. The first call loads the encoding (~0.2-0.5 s,
    local files only) unless ``warm_up()`` did; ``wait_s`` bounds waiting for another thread's load,
    after which this call falls back (cl100k, then the heuristic). Never raises on odd input shapes.
    """
    return estimate_usage_detail(
        provider=provider,
        model=model,
        request=request,
        output_text=output_text,
        reasoning_text=reasoning_text,
        tool_arguments=tool_arguments,
        tool_names=tool_names,
        api=api,
        wait_s=wait_s,
    ).usage


def warm_up(
    models: Iterable[Tuple[str, Optional[str]]] = (), background: bool = True
) -> Optional[threading.Thread]:
    """Load the encodings ahead of the first estimate, in a daemon thread unless ``background=False``:
    those the given ``(provider, model)`` pairs need plus the cl100k_base fallback (by default both
    o200k_base and cl100k_base). Call it at instrument time; returns the thread."""
    names = {encoding_for_model(p, m)[0] for p, m in models} or {O200K}
    return tokenizers.warm_up(sorted(names | {CL100K}), background=background)
