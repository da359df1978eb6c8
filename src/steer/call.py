"""What is known about one call before it starts (CallInfo) and after it ends (Outcome).

Both are neutral data: provider modules fill CallInfo without knowing telemetry names, and the
telemetry layer turns Outcome into span attributes and metric points without knowing providers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from steer.events import StreamEnd, ToolCall, Usage


@dataclass(slots=True)
class CallInfo:
    provider: str  # gen_ai.provider.name value, e.g. "openai", "x_ai", "gcp.gemini"
    api: str  # wire protocol, e.g. "openai.chat.completions" (the recordings' `api` names)
    operation: str  # "chat", "text_completion", "generate_content", "embeddings"
    request_model: Optional[str]
    streaming: bool
    server_address: Optional[str] = None
    server_port: Optional[int] = None
    # Neutral request parameters: max_tokens, temperature, top_p, top_k, frequency_penalty,
    # presence_penalty, stop_sequences, seed, choice_count, output_type; reasoning_level and
    # previous_response_id (span attributes of the newest conventions only).
    params: Dict[str, Any] = field(default_factory=dict)
    request: Optional[Dict[str, Any]] = None  # the request body as the SDK was given it
    json_output: bool = False  # the request asked for JSON output (response_format & co.)
    extra: Dict[str, Any] = field(default_factory=dict)  # provider-specific span extras (neutral keys)


@dataclass(slots=True)
class JsonSummary:
    objects: int = 0
    duplicates_dropped: int = 0
    valid: Optional[bool] = None
    repaired: bool = False
    error: Optional[str] = None


@dataclass(slots=True)
class Outcome:
    end: StreamEnd
    duration_s: float
    chunks: int = 0
    ttfc_s: Optional[float] = None
    max_gap_s: Optional[float] = None
    mean_gap_s: Optional[float] = None
    gaps_ns: Optional[List[int]] = None  # only in per_chunk gap mode
    response_id: Optional[str] = None
    response_model: Optional[str] = None
    finish_reasons: List[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    tool_calls: List[ToolCall] = field(default_factory=list)
    json: Optional[JsonSummary] = None
    error: Optional[BaseException] = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    decode_errors: int = 0  # chunks that could not be decoded + wire values left out (invalid_values)
    invalid_values: Optional[Dict[str, int]] = None  # wire values left out or repaired, by reason
    output_messages: Optional[List[Dict[str, Any]]] = None  # only when content capture is on
    extra: Dict[str, Any] = field(default_factory=dict)
    stalls: Optional[List[Tuple[int, float, bool]]] = None  # live-detected stalls: (wall start ns, gap s, resumed)
    cost: Any = None  # processing.cost.Cost, when the call was priced
    unpriced: Optional[str] = None  # why it was not (processing.cost.UNKNOWN_MODEL, ...), when cost is on
