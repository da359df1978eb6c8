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
    # previous_response_id (span attributes of the newest conventions only); output_modality
    # ("text" when the request leaves the model no other output: the newest token counters' modality).
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
class Retry:
    """One HTTP attempt that failed and that the SDK then retried."""

    attempt: int  # 1 = the call's first request
    error_type: str  # the HTTP status ("500") or the exception's class name ("ConnectTimeout")
    status_code: Optional[int]  # None when no response came (a timeout, a refused connection)
    duration_s: float  # from sending the attempt to its response headers (its whole body when not streamed) or error
    backoff_s: float  # from that failure to the next attempt being sent (the SDK's wait)
    failed_at_ns: int  # wall clock (ns since the epoch) when the attempt failed


class Attempts:
    """The HTTP attempts of one call, as the httpx hook sees them sent (the SDKs retry inside the call).

    Kept off the hot path: ``sent`` and ``answered`` run once per HTTP request. A failed attempt becomes a
    ``Retry`` only when another attempt follows it in the same call; the last one is the call's own end.
    """

    __slots__ = ("wall_offset_ns", "sent_ns", "failed", "retries")

    def __init__(self, wall_offset_ns: int) -> None:
        self.wall_offset_ns = wall_offset_ns  # wall clock minus perf_counter, as the Session measured at t0
        self.sent_ns = 0  # when the latest attempt was sent
        self.failed: Optional[Tuple[str, Optional[int], int]] = None  # the latest attempt, if it failed
        self.retries: List[Retry] = []

    def sent(self, now_ns: int) -> None:
        failed = self.failed
        if failed is not None:
            error_type, status, end_ns = failed
            self.retries.append(Retry(len(self.retries) + 1, error_type, status, (end_ns - self.sent_ns) / 1e9,
                                      (now_ns - end_ns) / 1e9, end_ns + self.wall_offset_ns))
            self.failed = None
        self.sent_ns = now_ns

    def answered(self, now_ns: int, status_code: Optional[int], error: Optional[BaseException] = None) -> None:
        if error is not None:
            self.failed = (type(error).__name__, None, now_ns)
        elif status_code is not None and status_code >= 400:
            self.failed = (str(status_code), status_code, now_ns)


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
    attempts: Optional[int] = None  # HTTP attempts: 1 + the SDK's retries (None: steer did not see the sends)
    retries: List[Retry] = field(default_factory=list)
    last_attempt_ttfc_s: Optional[float] = None  # time to first chunk from the last attempt's send (retried calls)
