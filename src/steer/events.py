"""The typed event model: the contract between steer's stages and its users.

Every instrumented call, whatever the provider, produces the same sequence:

    StreamStartEvent, StreamDeltaEvent*, StreamUsageEvent?, (StreamCompleteEvent | StreamErrorEvent)

Events are plain slotted dataclasses: cheap to build, easy to filter, safe to hand to user code.
Delta events are only built when somebody listens (callbacks or an EventProcessor), so a stream that
nobody subscribes to costs no per-chunk allocation here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional

DeltaKind = Literal["text", "tool_call", "reasoning", "refusal"]
UsageSource = Literal["reported", "estimated", "none"]
StreamEnd = Literal["complete", "closed_early", "abandoned", "cancelled", "error"]


# The token counts a Usage lists when read as a mapping, in this order (see Usage).
USAGE_KEYS = ("input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
              "cache_creation_input_tokens", "reasoning_tokens")
# OpenAI-style names that read the same counts (looked up, never listed: each count is listed once).
USAGE_ALIASES = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens"}


@dataclass(slots=True)
class Usage(Mapping):  # type: ignore[type-arg]
    """Token usage of one call, normalised across providers.

    ``input_tokens`` includes cached input, as the semantic conventions ask; the cache and reasoning
    counts are broken out when the provider reports them.

    Also a read-only mapping of the token counts (``usage["input_tokens"]``, ``usage.get(
    "completion_tokens", 0)``, ``dict(usage)``): its keys are the ``USAGE_KEYS`` whose count is known
    (not None), and the OpenAI-style ``prompt_tokens`` / ``completion_tokens`` read ``input_tokens`` /
    ``output_tokens`` without being listed. ``source``, ``confidence`` and ``method`` stay attributes.
    A Usage is always true, whatever it counts (as before it was a mapping).
    """

    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    total_tokens: Optional[int] = None
    cache_read_input_tokens: Optional[int] = None
    cache_creation_input_tokens: Optional[int] = None
    reasoning_tokens: Optional[int] = None
    source: UsageSource = "none"
    confidence: Optional[float] = None  # 1.0 when reported; the estimate's calibrated confidence otherwise
    input_confidence: Optional[float] = None  # the input estimate's own confidence (same definition)
    method: Optional[str] = None  # how an estimate was made: "tiktoken:o200k_base", "heuristic:chars", ...

    @property
    def is_estimated(self) -> bool:
        return self.source == "estimated"

    # -- read-only mapping of the known token counts ---------------------------------------------------
    def __getitem__(self, key: str) -> int:
        name = USAGE_ALIASES.get(key, key)
        value = getattr(self, name) if name in USAGE_KEYS else None
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return (name for name in USAGE_KEYS if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for name in USAGE_KEYS if getattr(self, name) is not None)

    def __bool__(self) -> bool:
        return True


@dataclass(slots=True)
class ToolCall:
    """One client tool/function call, joined from its fragments and parsed once."""

    id: Optional[str]
    name: Optional[str]
    arguments: Any  # the parsed JSON value; the raw string where it does not parse
    raw_arguments: str = ""
    choice_index: int = 0
    valid_json: bool = True

    def as_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(slots=True)
class StreamEvent:
    provider: str
    model: Optional[str]
    request_id: str
    stream_id: str
    timestamp: float  # wall clock, seconds since the epoch
    metadata: Dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StreamStartEvent(StreamEvent):
    operation: str = "chat"
    streaming: bool = True
    server_address: Optional[str] = None


@dataclass(slots=True)
class StreamDeltaEvent(StreamEvent):
    delta: str = ""
    chunk_index: int = 0
    is_json: bool = False
    kind: DeltaKind = "text"
    choice_index: int = 0
    tool_call_id: Optional[str] = None
    tool_name: Optional[str] = None
    tool_call_index: Optional[int] = None

    def get_text(self) -> str:
        """The output text this delta adds ("" for tool-call and reasoning deltas)."""
        return self.delta if self.kind == "text" else ""


@dataclass(slots=True)
class StreamUsageEvent(StreamEvent):
    usage: Usage = field(default_factory=Usage)
    is_estimated: bool = False
    confidence: Optional[float] = None


@dataclass(slots=True)
class StreamCompleteEvent(StreamEvent):
    total_chunks: int = 0
    duration_ms: float = 0.0
    ttft_ms: Optional[float] = None
    final_usage: Optional[Usage] = None
    text: str = ""  # the first choice's output text, as the provider's SDK assembles it
    choice_texts: List[str] = field(default_factory=list)  # every choice's text, by choice index (n > 1)
    reasoning: str = ""
    tool_calls: List[ToolCall] = field(default_factory=list)
    finish_reasons: List[str] = field(default_factory=list)
    json_objects: List[Any] = field(default_factory=list)
    end: StreamEnd = "complete"
    response_id: Optional[str] = None
    response_model: Optional[str] = None
    cost_usd: Optional[float] = None  # from genai-prices' data, when the model is priced there
    cost_source: Optional[UsageSource] = None  # "reported" or "estimated": the token counts it priced

    def get_text(self) -> str:
        return self.text


@dataclass(slots=True)
class StreamErrorEvent(StreamEvent):
    error: Optional[BaseException] = None
    error_type: str = "_OTHER"
    is_retryable: bool = False
    message: str = ""
    total_chunks: int = 0
    duration_ms: float = 0.0
    # Everything received before the failure, assembled as in StreamCompleteEvent (nothing is lost
    # when a stream fails half-way: the caller was handed these chunks).
    ttft_ms: Optional[float] = None
    final_usage: Optional[Usage] = None
    text: str = ""
    choice_texts: List[str] = field(default_factory=list)
    reasoning: str = ""
    tool_calls: List[ToolCall] = field(default_factory=list)
    finish_reasons: List[str] = field(default_factory=list)
    end: StreamEnd = "error"
    response_id: Optional[str] = None
    response_model: Optional[str] = None

    def get_text(self) -> str:
        return self.text


@dataclass(slots=True)
class StreamStallEvent(StreamEvent):
    """A stream has received nothing for longer than ``stall_after``: sent once per silence, when steer's
    watchdog notices it, while the stream is still open (from the watchdog's thread)."""

    silent_ms: float = 0.0  # the silence so far (from the last chunk, or from the request when none came yet)
    stall_after_ms: float = 0.0  # the threshold it passed
    total_chunks: int = 0  # chunks received before the silence
    stall_count: int = 1  # this is the stream's n-th stall


EVENT_TYPES = {
    cls.__name__: cls
    for cls in (StreamStartEvent, StreamDeltaEvent, StreamUsageEvent, StreamStallEvent, StreamCompleteEvent, StreamErrorEvent)
}


def event_to_dict(event: StreamEvent) -> Dict[str, Any]:
    """A JSON-safe dict of an event (exceptions become their repr)."""
    out: Dict[str, Any] = {"type": type(event).__name__}
    for name in _field_names(type(event)):
        value = getattr(event, name)
        if isinstance(value, BaseException):
            value = repr(value)
        elif isinstance(value, (Usage, ToolCall)):
            value = {n: getattr(value, n) for n in _field_names(type(value))}
        elif isinstance(value, list):
            value = [v.as_dict() if isinstance(v, ToolCall) else v for v in value]
        out[name] = value
    return json.loads(json.dumps(out, default=repr))


def _field_names(cls: type) -> List[str]:
    return list(cls.__dataclass_fields__)  # type: ignore[attr-defined]
