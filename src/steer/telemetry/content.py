"""Captured content as it leaves the process: JSON in the conventions' message shapes, redacted by the
user's hook, then cut to ``content_max_chars`` *inside* the messages so the value always parses.

Truncation shortens the longest strings first, down to one common length — a text or reasoning part's
``content``, a tool call's ``arguments``, a tool result's ``response``, a tool definition's ``parameters``
(an object there becomes its JSON text, cut) — and ends each cut string with ``TRUNCATED``. Only when
that is not enough does it drop whole input messages, oldest first. Output messages (one per choice, like
the finish reasons) are dropped, last first, only when their structure alone is past the cap (hundreds
of choices, or a hostile server's huge finish reasons).

What leaves is exportable (telemetry/exportable.py): a lone surrogate anywhere in the content (streamed
text, tool arguments, reasoning, an id, a prompt) becomes U+FFFD, which no OTLP encoder refuses; a NaN or
infinite number (tool arguments parsed from the wire) becomes its name as a string, JSON having no such
number. ``structured`` gives the event's structured form: integers OTLP's int64 cannot carry become their
decimal text.
"""

from __future__ import annotations

import json
from typing import Any, Callable, List, Optional, Tuple

from steer.telemetry.exportable import INT64_MAX, INT64_MIN, repaired, text_ok

TRUNCATED = "…[truncated]"
WITHHELD = "[steer: redaction hook failed; content withheld]"
# Fields whose value is content that may be cut (the rest of a message is structure: role, type, id...).
_CUTTABLE = ("content", "arguments", "response")
_ROUNDS = 4  # cutting rounds before dropping messages (a round falls short only by JSON escapes)


def dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:  # NaN or ±Infinity somewhere (no JSON number): named as strings instead
        loose = json.dumps(value, ensure_ascii=False, default=str)
        return json.dumps(json.loads(loose, parse_constant=str), ensure_ascii=False)


def structured(text: str) -> Any:
    """The JSON text of a content attribute as values the OTLP log encoder takes (the details event):
    an integer past int64 stays exact as its decimal text."""
    return json.loads(text, parse_int=_int64_or_text)


def _int64_or_text(digits: str) -> Any:
    value = int(digits)
    return value if INT64_MIN <= value <= INT64_MAX else digits


def prepare(value: Any, cap: int, redact: Optional[Callable[[str], str]], droppable: bool) -> Tuple[Any, str]:
    """``(structure, JSON text)`` of one content attribute, exportable (no lone surrogate: U+FFFD);
    ``structure`` is None when it is not JSON any more (a redaction hook that returned something else:
    then the text is cut as plain text).

    ``droppable``: whole messages may go, oldest first, when cutting strings is not enough (input
    messages, system instructions, tool definitions); never for output messages.
    """
    text = dumps(value)
    if not text_ok(text):  # repaired before anything else sees it, the redaction hook included
        text = repaired(text)
        value = json.loads(text)
    if redact is not None:
        try:
            text = str(redact(text))
        except Exception:
            return None, WITHHELD  # never leak unredacted content
        if not text_ok(text):  # the redaction hook's own output (cutting code points makes no new surrogate)
            text = repaired(text)
        if len(text) <= cap:
            return _parsed(text), text
        value = _parsed(text)
        if value is None:
            return None, text[:cap] + TRUNCATED
    elif len(text) <= cap:
        return value, text
    else:
        value = json.loads(text)  # a private copy to cut (the caller's messages stay whole)
    return _fit(value, cap, droppable)


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _fit(value: Any, cap: int, droppable: bool) -> Tuple[Any, str]:
    text = dumps(value)
    for _ in range(_ROUNDS):  # escapes make a string longer in JSON than in memory: re-measure, cut again
        over = len(text) - cap
        if over <= 0:
            return value, text
        if not _cut_longest(_cuttable(value), over):
            break
        text = dumps(value)
    if len(text) > cap and isinstance(value, list):
        value = _drop_items(value, cap, oldest_first=droppable)
        text = dumps(value)
    return value, text


def _cut_longest(slots: List[Tuple[Any, Any, int]], over: int) -> bool:
    """Cut the longest values down to one length ``level`` (each cut one ending with the marker), the
    highest level that removes ``over`` characters: the short ones stay whole. False: nothing to cut."""
    lengths = sorted((length for _, _, length in slots), reverse=True)
    floor = len(TRUNCATED)
    if not lengths or lengths[0] <= floor:
        return False
    level, prefix = floor, 0
    for i, length in enumerate(lengths):  # cutting the i+1 longest to ``next`` removes prefix - (i+1)*next
        prefix += length
        nxt = max(lengths[i + 1] if i + 1 < len(lengths) else floor, floor)
        if prefix - (i + 1) * nxt >= over:
            level = max(floor, (prefix - over) // (i + 1))
            break
    for holder, key, length in slots:
        if length > level:
            field = holder[key] if isinstance(holder[key], str) else dumps(holder[key])
            kept = field[:-len(TRUNCATED)] if field.endswith(TRUNCATED) else field  # cut again: one marker
            holder[key] = kept[:level - len(TRUNCATED)] + TRUNCATED
    return True


def _drop_items(items: List[Any], cap: int, oldest_first: bool) -> List[Any]:
    """Whole items dropped until the list fits: the oldest input messages; for output messages (kept
    one per choice otherwise) only when their structure alone is past the cap, the last ones."""
    sizes = [len(dumps(item)) + 2 for item in items]  # ", " between items
    total = sum(sizes) + 2
    kept = list(items)
    order = range(len(items)) if oldest_first else range(len(items) - 1, -1, -1)
    for i in order:
        if total <= cap:
            break
        total -= sizes[i]
        kept[i] = _DROPPED
    return [item for item in kept if item is not _DROPPED]


_DROPPED = object()


def _cuttable(value: Any) -> List[Tuple[Any, Any, int]]:
    """(container, key, serialised length) of each content value that can still be cut."""
    out: List[Tuple[Any, Any, int]] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            for key in _CUTTABLE:
                field = node.get(key)
                if field is None or (isinstance(field, str) and field.endswith(TRUNCATED) and len(field) <= len(TRUNCATED)):
                    continue
                if isinstance(field, str):
                    out.append((node, key, len(field)))
                elif key != "content" or not isinstance(field, list):
                    out.append((node, key, len(dumps(field))))
            for key in ("parts", "content"):  # nested parts (a message's parts; a tool result's content list)
                nested = node.get(key)
                if isinstance(nested, list):
                    visit(nested)
            if "parameters" in node and node.get("parameters") is not None:  # tool definitions' schemas
                out.append((node, "parameters", len(dumps(node["parameters"]))))

    visit(value)
    return out
