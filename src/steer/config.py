"""Settings, read once: explicit arguments > STEER_* / OTEL_* environment > defaults.

The result is frozen: the hot path reads plain attributes and never touches the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional, Tuple

ALL_PROVIDERS: Tuple[str, ...] = ("openai", "anthropic", "google_genai", "httpx")

_TRUTHY = {"1", "true", "yes", "on"}
_FALSY = {"0", "false", "no", "off"}

# Content capture modes, as the OpenTelemetry Python GenAI instrumentations (opentelemetry-util-genai)
# name them in OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT. Where content may go:
CONTENT_MODES = {
    "NO_CONTENT": (False, False),  # (on the span, on the gen_ai.client.inference.operation.details event)
    "SPAN_ONLY": (True, False),
    "EVENT_ONLY": (False, True),
    "SPAN_AND_EVENT": (True, True),
}

Redactor = Callable[[str], str]
UNSET: Any = object()  # "not given": the environment or the default decides
DEFAULT_STALL_AFTER = 30.0  # seconds; see docs/telemetry.md "Streams that hang" for why


@dataclass(frozen=True)
class Settings:
    providers: Tuple[str, ...] = ALL_PROVIDERS
    capture_content: bool = False  # content is gathered at all: it goes on the span or on an emitted event
    content_mode: str = "NO_CONTENT"  # a CONTENT_MODES key
    content_on_span: bool = False  # gen_ai.input/output.messages & co. on the span
    content_on_event: bool = False  # ... and on the event, when the event is emitted
    emit_event: bool = False  # emit gen_ai.client.inference.operation.details
    content_max_chars: int = 16_384  # cap for each gen_ai.*.messages attribute
    redact: Optional[Redactor] = None  # applied to captured content before it leaves the process
    estimate_usage: bool = True
    # "per_stream": one time_per_output_chunk point per stream (the mean gap after the first chunk);
    # "per_chunk": one point per gap, as semconv words it. See docs/telemetry.md for the cost.
    chunk_gap_metric: str = "per_stream"
    json_max_depth: int = 64
    json_max_bytes: int = 8 * 1024 * 1024
    text_max_chars: int = 4 * 1024 * 1024  # assembled output kept per call (events, estimation)
    provider_name_override: Optional[str] = None
    # Live stall detection: a stream silent for longer than this (seconds) is reported while open;
    # None or 0 turns it off. Why 30 s: docs/telemetry.md "Streams that hang".
    stall_after: Optional[float] = DEFAULT_STALL_AFTER
    # "v1.41" (default) or "latest": OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental switches
    # every GenAI name and rule to the newest conventions (docs/telemetry.md). Read once, here.
    semconv: str = "v1.41"
    cost: bool = True  # price each call with genai-prices' bundled data (when installed)
    # Off by default: also put estimated token counts in gen_ai.usage.* (steer.usage.source=estimated
    # still says so), for trace UIs that read tokens and cost from there only.
    estimates_in_usage_attributes: bool = False
    # End-of-call work (usage estimate, attributes, metric points, span end) on steer's one background
    # thread, so the caller's loop ends as soon as the SDK's; False: on the caller's thread, as it ends.
    finish_in_background: bool = True
    callbacks: Mapping[str, Any] = field(default_factory=dict)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in _TRUTHY


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


def semconv_from_env() -> str:
    """OTEL_SEMCONV_STABILITY_OPT_IN read as OpenTelemetry Python reads it: a comma-separated list,
    each entry stripped, matched exactly (opentelemetry.instrumentation._semconv)."""
    opt_in = [entry.strip() for entry in os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")]
    return "latest" if "gen_ai_latest_experimental" in opt_in else "v1.41"
def content_mode(value: Any) -> str:
    """A CONTENT_MODES key from ``capture_content=`` (a bool or a mode name) or the environment's
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT (a mode name, or legacy true/false; any case).
    Legacy "on" means SPAN_ONLY (what steer and the earlier instrumentations did); unknown values
    mean NO_CONTENT with a warning, as opentelemetry-util-genai reads them."""
    if value is None or value is False:
        return "NO_CONTENT"
    if value is True:
        return "SPAN_ONLY"
    text = str(value).strip()
    mode = text.upper()
    if mode in CONTENT_MODES:
        return mode
    if text.lower() in _TRUTHY:
        return "SPAN_ONLY"
    if text and text.lower() not in _FALSY:
        import logging

        logging.getLogger("steer").warning(
            "steer: %r is not a content capture mode (one of %s, or true/false); capturing no content",
            text, ", ".join(CONTENT_MODES))
    return "NO_CONTENT"


def _emit_event(mode: str, raw: Optional[str]) -> bool:
    """OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT: true/false (any case) decides; unset or anything else
    follows the mode (EVENT_ONLY and SPAN_AND_EVENT emit), as opentelemetry-util-genai reads it."""
    value = (raw or "").strip().lower()
    if value in ("true", "false"):
        return value == "true"
    return CONTENT_MODES[mode][1]


def load_settings(
    *,
    providers: Optional[Any] = None,
    capture_content: Optional[Any] = None,
    estimate_usage: Optional[bool] = None,
    content_max_chars: Optional[int] = None,
    redact: Optional[Redactor] = None,
    chunk_gap_metric: Optional[str] = None,
    provider_name: Optional[str] = None,
    json_max_depth: Optional[int] = None,
    json_max_bytes: Optional[int] = None,
    stall_after: Any = UNSET,
    cost: Optional[bool] = None,
    estimates_in_usage_attributes: Optional[bool] = None,
    finish_in_background: Optional[bool] = None,
) -> Settings:
    if isinstance(providers, str):
        providers = (providers,)
    env_providers = os.environ.get("STEER_PROVIDERS", "").strip()
    chosen = tuple(providers) if providers is not None else (
        tuple(p.strip() for p in env_providers.split(",") if p.strip()) if env_providers else ALL_PROVIDERS
    )
    unknown = [p for p in chosen if p not in ALL_PROVIDERS]
    if unknown:
        raise ValueError(f"steer: unknown provider(s) {unknown}; choose from {list(ALL_PROVIDERS)}")
    semconv = semconv_from_env()
    # The newest conventions record time_per_output_chunk once per chunk after the first: that is their
    # default here; v1.41 keeps steer's cheaper per-stream mean unless asked.
    gap_mode = chunk_gap_metric or os.environ.get("STEER_CHUNK_GAP_METRIC") or (
        "per_chunk" if semconv == "latest" else "per_stream")
    if gap_mode not in ("per_stream", "per_chunk"):
        raise ValueError("steer: chunk_gap_metric must be 'per_stream' or 'per_chunk'")
    mode = content_mode(capture_content if capture_content is not None
                        else os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"))
    on_span, on_event = CONTENT_MODES[mode]
    emit = _emit_event(mode, os.environ.get("OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"))
    return Settings(
        providers=chosen,
        capture_content=on_span or (on_event and emit),
        content_mode=mode,
        content_on_span=on_span,
        content_on_event=on_event,
        emit_event=emit,
        content_max_chars=content_max_chars or _env_int("STEER_CONTENT_MAX_CHARS", 16_384),
        redact=redact,
        estimate_usage=estimate_usage if estimate_usage is not None else _env_bool("STEER_ESTIMATE_USAGE", True),
        chunk_gap_metric=gap_mode,
        semconv=semconv,
        provider_name_override=provider_name or os.environ.get("STEER_PROVIDER_NAME") or None,
        json_max_depth=json_max_depth or _env_int("STEER_JSON_MAX_DEPTH", 64),
        json_max_bytes=json_max_bytes or _env_int("STEER_JSON_MAX_BYTES", 8 * 1024 * 1024),
        stall_after=_stall_after(stall_after),
        cost=cost if cost is not None else _env_bool("STEER_COST", True),
        estimates_in_usage_attributes=(
            estimates_in_usage_attributes if estimates_in_usage_attributes is not None
            else _env_bool("STEER_ESTIMATES_IN_USAGE_ATTRIBUTES", False)
        ),
        finish_in_background=(
            finish_in_background if finish_in_background is not None else _env_bool("STEER_FINISH_IN_BACKGROUND", True)
        ),
    )


def _stall_after(given: Any) -> Optional[float]:
    """The argument, else STEER_STALL_AFTER (seconds), else DEFAULT_STALL_AFTER; None, 0 or "off": off."""
    if given is UNSET:
        raw = os.environ.get("STEER_STALL_AFTER", "").strip().lower()
        if raw in ("off", "none", "false"):
            return None
        try:
            given = float(raw) if raw else DEFAULT_STALL_AFTER
        except ValueError:
            raise ValueError(f"steer: STEER_STALL_AFTER must be seconds or 'off', not {raw!r}") from None
    if given is None or given <= 0:
        return None
    return float(given)
