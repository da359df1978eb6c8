"""What every provider module shares: the per-call Assembly its decoder writes into, and the
normalisation tables (finish reasons) that make providers look alike.

Decoders are sans-IO: ``decode(chunk, assembly)`` reads one SDK chunk (or one parsed wire JSON value,
seen through ``AttrView``) and records what it adds. They never do I/O and never know telemetry
names, so the sync and async shells, the SDK path and the raw-bytes path all share them.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple
from urllib.parse import urlsplit

from steer.events import ToolCall, Usage

# Provider finish/stop reasons -> the OpenAI-style vocabulary semconv examples use.
FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "STOP": "stop",
    "completed": "stop",
    "length": "length",
    "max_tokens": "length",
    "MAX_TOKENS": "length",
    "max_output_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "refusal": "content_filter",
    "pause_turn": "pause",
    "MALFORMED_FUNCTION_CALL": "error",
    "error": "error",
}


def normalise_finish_reason(raw: Any) -> Optional[str]:
    if raw is None:
        return None
    raw = getattr(raw, "value", raw)  # SDK enums (google-genai FinishReason)
    text = str(raw)
    return FINISH_REASONS.get(text, text.lower())


class AttrView:
    """Attribute access over parsed wire JSON, so one decoder serves SDK objects and raw dicts.

    Missing keys read as None, like absent optional fields on SDK models; camelCase wire keys are
    found from snake_case names (Gemini's REST JSON vs google-genai's models).
    """

    __slots__ = ("_d",)

    def __init__(self, data: Dict[str, Any]) -> None:
        self._d = data

    @property
    def __pydantic_extra__(self) -> Dict[str, Any]:
        # Decoders read provider extensions (x_groq, reasoning_content, ...) from an SDK model's
        # extras; for raw JSON every key is such a field.
        return self._d

    def __getattr__(self, name: str) -> Any:
        d = self._d
        value = d.get(name)
        if value is None and "_" in name:
            head, *rest = name.split("_")
            value = d.get(head + "".join(p.title() for p in rest))
        return view(value)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.__getattr__(name)
        return default if value is None else value


def view(value: Any) -> Any:
    if type(value) is dict:
        return AttrView(value)
    if type(value) is list:
        return [view(v) for v in value]
    return value


def field_of(obj: Any, name: str) -> Any:
    """Read a field from an SDK model, an AttrView or a dict; None when absent."""
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def given(value: Any) -> bool:
    """A request argument the caller actually passed: not None, not the SDKs' NOT_GIVEN / Omit
    sentinels (falsy singletons of their own classes)."""
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit")


def output_type(json_output: bool, modalities: Any = None) -> str:
    """``gen_ai.output.type``: what the request asks the model to produce. ``json`` for JSON mode or
    structured output; ``image`` / ``speech`` when the requested output modalities include images or
    audio (OpenAI ``modalities``, Gemini ``response_modalities``); ``text`` otherwise (every inference
    API's default)."""
    if json_output:
        return "json"
    names = modality_names(modalities)
    if "image" in names:
        return "image"
    if "audio" in names:
        return "speech"
    return "text"


def modality_names(modalities: Any) -> set:
    """The requested output modalities as lower-case names (strings or the SDKs' enums); empty when none
    were given."""
    if not (given(modalities) and isinstance(modalities, (list, tuple))):
        return set()
    return {str(getattr(m, "value", m)).lower() for m in modalities}


# Why a wire value was left out (the steer.decode.reason values; telemetry adds its own).
INVALID_TOKEN_COUNT = "invalid_token_count"
# OTLP carries integers as int64: a count beyond it is not a count any server really had.
INT64_MAX = 2**63 - 1

FOLD = 4  # pieces a Pieces holds before joining them into one string


class Pieces:
    """Text that arrives in small pieces (deltas), kept as few objects: the same text, joined at the end.

    Every ``FOLD`` pieces the recent ones are joined into one string and let go, instead of keeping
    every delta string of the stream alive until its end. Timed in one process next to one list of
    every piece (``bench/inprocess.py --variant bench/variants/unfolded_text.py``): ~0.3 µs less per
    OpenAI chunk (0.15-0.4 in five runs); not keeping the text at all would save ~0.35 more. The likely
    reason: each kept ~50-byte string pins a small-object block the SDK would otherwise reuse for the
    next chunk, so the allocator keeps handing out fresh memory. Memory kept per chunk: 76 -> 29 bytes.
    """

    __slots__ = ("folded", "recent", "addressable")

    def __init__(self, first: Optional[str] = None, addressable: bool = False) -> None:
        self.folded: List[str] = []
        self.recent: List[str] = [first] if first is not None else []
        # Never folded: every piece stays one entry of ``recent`` (the Responses decoder compares and
        # replaces snapshots by position). ``add_text`` calls ``fold`` once, at the FOLD-th piece.
        self.addressable = addressable

    def add(self, s: str) -> None:
        recent = self.recent
        recent.append(s)
        if len(recent) == FOLD:
            self.fold()

    def fold(self) -> None:
        if self.addressable:
            return
        self.folded.append(_join(self.recent))
        self.recent.clear()

    def text(self) -> str:
        return "".join(self.folded) + _join(self.recent)


class _ToolBuilder:
    __slots__ = ("id", "name", "parts", "whole", "order")

    def __init__(self, order: int) -> None:
        self.id: Optional[str] = None
        self.name: Optional[str] = None
        self.parts = Pieces()
        self.whole: Any = None  # arguments that arrived complete (Gemini)
        self.order = order


Delta = Tuple[str, str, int, Optional[str], Optional[str], Optional[int]]  # kind, text, choice, id, name, idx


class Assembly:
    """Everything one call's output adds up to, written by the provider decoder as chunks arrive.

    Cheap per call: appends to lists; joins and parses happen once, at the end. When somebody
    listens for delta events, ``deltas`` is a list and each write also records a small tuple.
    """

    __slots__ = (
        "text", "reasoning", "refusal", "tools", "finish", "usage", "response_id", "response_model",
        "error", "deltas", "text_sink", "chars", "max_chars", "truncated", "duplicates_dropped",
        "extra", "decode_errors", "invalid", "_tool_order",
    )

    def __init__(self, max_chars: int = 4 * 1024 * 1024, want_deltas: bool = False) -> None:
        self.text: Dict[int, Pieces] = {}
        self.reasoning: Dict[int, Pieces] = {}
        self.refusal: Dict[int, Pieces] = {}
        self.tools: Dict[Tuple[int, Any], _ToolBuilder] = {}
        self.finish: Dict[int, str] = {}
        self.usage: Optional[Usage] = None  # reported usage, merged as it arrives
        self.response_id: Optional[str] = None
        self.response_model: Optional[str] = None
        self.error: Optional[Dict[str, Any]] = None  # an error the provider sent inside the stream
        self.deltas: Optional[List[Delta]] = [] if want_deltas else None
        self.text_sink: Optional[Callable[[str], None]] = None  # JSON tracker for choice 0
        self.chars = 0
        self.max_chars = max_chars
        self.truncated = False
        self.duplicates_dropped = 0
        self.extra: Dict[str, Any] = {}
        self.decode_errors = 0  # chunks that could not be decoded, and wire values left out (invalid)
        self.invalid: Optional[Dict[str, int]] = None  # wire values left out, by reason (made on first use)
        self._tool_order = 0

    # -- writes (hot path) ----------------------------------------------------------------------------
    def add_text(self, choice: int, s: str) -> None:
        # The one write almost every chunk makes: ``_keep`` and ``Pieces.add`` are inlined, the
        # pieces found with one subscript (Python calls and a dict.get less per chunk; bench/README.md).
        if not s:
            return
        chars = self.chars = self.chars + len(s)
        if chars <= self.max_chars:
            try:
                pieces = self.text[choice]
            except KeyError:
                pieces = self.text[choice] = Pieces()
            recent = pieces.recent
            recent.append(s)
            if len(recent) == FOLD:
                pieces.fold()
        else:
            self.truncated = True
        if choice == 0 and self.text_sink is not None:
            self.text_sink(s)
        if self.deltas is not None:
            self.deltas.append(("text", s, choice, None, None, None))

    def add_reasoning(self, choice: int, s: str) -> None:
        if not s:
            return
        if self._keep(s):
            pieces_of(self.reasoning, choice).add(s)
        if self.deltas is not None:
            self.deltas.append(("reasoning", s, choice, None, None, None))

    # add_reasoning's steps on purpose (must stay): per-chunk, kept inline rather than a call per chunk.
    def add_refusal(self, choice: int, s: str) -> None:
        if not s:
            return
        if self._keep(s):
            pieces_of(self.refusal, choice).add(s)
        if self.deltas is not None:
            self.deltas.append(("refusal", s, choice, None, None, None))

    def tool_fragment(
        self, choice: int, key: Any, call_id: Optional[str], name: Optional[str], fragment: Optional[str]
    ) -> None:
        """A piece of a streamed tool call; ``key`` identifies the call within its choice."""
        builder = self.tools.get((choice, key))
        if builder is None:
            builder = self.tools[(choice, key)] = _ToolBuilder(self._tool_order)
            self._tool_order += 1
        # Ids and names join like the SDKs' own accumulators do, except that a value re-sent
        # verbatim (some OpenAI-compatible servers repeat them on every fragment) is kept once.
        if call_id and call_id != builder.id:
            builder.id = call_id if builder.id is None else builder.id + call_id
        if name and name != builder.name:
            builder.name = name if builder.name is None else builder.name + name
        if fragment:
            if self._keep(fragment):
                builder.parts.add(fragment)
            if self.deltas is not None:
                self.deltas.append(("tool_call", fragment, choice, builder.id, builder.name, key if isinstance(key, int) else None))

    def tool_whole(self, choice: int, key: Any, call_id: Optional[str], name: Optional[str], arguments: Any) -> None:
        """A tool call that arrived complete (Gemini function calls)."""
        self.tool_fragment(choice, key, call_id, name, None)
        self.tools[(choice, key)].whole = arguments if arguments is not None else {}

    def set_tool_arguments(self, choice: int, key: Any, full: str) -> bool:
        """A provider re-sent a tool call's full arguments; keep one copy. True if it was a duplicate."""
        builder = self.tools.get((choice, key))
        if builder is None:
            self.tool_fragment(choice, key, None, None, full)
            return False
        if builder.parts.text() == full:
            self.duplicates_dropped += 1
            return True
        builder.parts = Pieces(full)  # the snapshot wins over fragments that went missing
        return False

    def set_finish(self, choice: int, raw: Any) -> None:
        reason = normalise_finish_reason(raw)
        if reason is not None:
            self.finish[choice] = reason

    def invalid_value(self, reason: str) -> None:
        """A value from the wire that steer leaves out (it cannot be exported as it came): counted."""
        self.decode_errors += 1
        invalid = self.invalid
        if invalid is None:
            invalid = self.invalid = {}
        invalid[reason] = invalid.get(reason, 0) + 1

    def token_count(self, value: Any) -> Optional[int]:
        """A token count as the wire gave it, if it is one: a non-negative whole number within int64
        (``12``, ``12.0``). Anything else — negative, fractional, a string, a bool, ``1e30`` — is left
        out and counted; ``None`` (not reported) is just absent."""
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value <= INT64_MAX:
                return int(value)
        elif isinstance(value, float) and value.is_integer() and 0 <= value <= INT64_MAX:
            return int(value)
        self.invalid_value(INVALID_TOKEN_COUNT)
        return None

    def _keep(self, s: str) -> bool:
        self.chars += len(s)
        if self.chars <= self.max_chars:
            return True
        self.truncated = True
        return False

    # -- reads (end of call) --------------------------------------------------------------------------
    def joined_text(self, choice: int = 0) -> str:
        pieces = self.text.get(choice)
        return pieces.text() if pieces is not None else ""

    def all_text(self) -> str:
        return "".join(self.text[c].text() for c in sorted(self.text, key=choice_order))

    def joined_reasoning(self) -> str:
        return "".join(self.reasoning[c].text() for c in sorted(self.reasoning, key=choice_order))

    def finish_reasons(self) -> List[str]:
        return [self.finish[c] for c in sorted(self.finish, key=choice_order)]

    def raw_tool_calls(self) -> List[Tuple[int, Optional[str], Optional[str], Any, str]]:
        """(choice, id, name, whole-or-None, joined raw arguments) in arrival order."""
        ordered = sorted(self.tools.items(), key=lambda kv: kv[1].order)
        return [(choice, _text_or_none(b.id), _text_or_none(b.name), b.whole, b.parts.text()) for (choice, _), b in ordered]


def choice_order(choice: Any) -> Tuple[int, Any]:
    """Sort key for choice indexes: integers in order, then whatever a malformed chunk put in a choice's
    ``index`` (a string, a float). Decoders keep the wire's index as it came (no per-chunk type check);
    ordering the choices at the end of the call must not fail on a mix."""
    return (0, choice) if type(choice) is int else (1, repr(choice))


def pieces_of(by_choice: Dict[int, Pieces], choice: int, addressable: bool = False) -> Pieces:
    """A choice's pieces in one of the Assembly's stores (text, reasoning, refusal), made on first use."""
    pieces = by_choice.get(choice)
    if pieces is None:
        pieces = by_choice[choice] = Pieces(addressable=addressable)
    return pieces


def _join(parts: Any) -> str:
    """Join text pieces at the end of a call. A server can put a number or a list where text belongs;
    such pieces are dropped here, once, so the per-chunk writes above pay no type check."""
    try:
        return "".join(parts)
    except TypeError:
        return "".join(p for p in parts if type(p) is str)


def _text_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def function_tool(name: Any, description: Any = None, parameters: Any = None) -> Dict[str, Any]:
    """One client function in ``gen_ai.tool.definitions`` (the conventions' FunctionToolDefinition)."""
    return {"type": "function", "name": name if isinstance(name, str) else str(name),
            "description": description if isinstance(description, str) else None, "parameters": parameters}


def other_tool(kind: Any, name: Any = None) -> Dict[str, Any]:
    """A tool that is not a client function (a provider's server tool: web search, code execution...)."""
    kind = str(kind or "unknown")
    return {"type": kind, "name": name if isinstance(name, str) and name else kind}


def message_parts(content: Any, block_part: Callable[[Mapping[str, Any]], Dict[str, Any]]) -> List[Dict[str, Any]]:
    """A message's content as GenAI parts: a string is one text part, each mapping of a list of blocks
    becomes ``block_part(block)`` (anything else in the list is skipped)."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    return [block_part(block) for block in content or () if isinstance(block, Mapping)]


def text_only(parts: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """System instructions hold text parts only (gen-ai-system-instructions.json)."""
    return [p for p in parts if p.get("type") == "text"]


class Decoder(Protocol):
    """One per call. ``decode`` is called for every chunk the SDK yields; ``finish`` once at the end."""

    def decode(self, chunk: Any, asm: Assembly) -> None: ...

    def finish(self, asm: Assembly) -> None: ...


def make_usage(
    asm: Assembly,
    input_tokens: Any = None,
    output_tokens: Any = None,
    total_tokens: Any = None,
    cache_read: Any = None,
    cache_creation: Any = None,
    reasoning: Any = None,
) -> Usage:
    """Reported usage from the provider's counts, each one checked (``Assembly.token_count``)."""
    count = asm.token_count
    return Usage(
        input_tokens=count(input_tokens),
        output_tokens=count(output_tokens),
        total_tokens=count(total_tokens),
        cache_read_input_tokens=count(cache_read),
        cache_creation_input_tokens=count(cache_creation),
        reasoning_tokens=count(reasoning),
        source="reported",
        confidence=1.0,
    )


def server_of(base_url: Any) -> Tuple[Optional[str], Optional[int]]:
    """(server.address, server.port) from a client's base URL (a URL object or a string); the port
    defaults to the scheme's. (None, None) when the URL does not parse."""
    try:
        parts = urlsplit(str(base_url))
        host = (parts.hostname or "").lower() or None
        port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
    except (ValueError, TypeError):
        return None, None
    return host, port


__all__ = ["Assembly", "AttrView", "Decoder", "ToolCall", "field_of", "make_usage", "normalise_finish_reason", "view"]
