"""Only values OTLP can carry leave steer: strings that are valid UTF-8, integers within int64.

A value from the wire can be neither: JSON's ``"\\ud800"`` escape decodes to a lone surrogate, which no
UTF-8 encoder accepts; a count of ``1e30`` is an integer wider than 64 bits. Handed to the OpenTelemetry
SDK as an attribute, either one makes the OTLP exporter log an error and drop it on every export, for
the life of the process where it keys a cumulative metric series. So, once per call, where the
telemetry layer turns the call's Outcome into attributes and points:

- identifiers (``gen_ai.response.id``, ``gen_ai.response.model``, provider extras such as
  ``openai.response.service_tier``) that are not exportable are left out;
- text meant for people (the error message, finish reasons) is repaired: each lone surrogate becomes
  U+FFFD, so the rest of the text and the number of finish reasons survive;
- an ``error.type`` that is not exportable becomes ``_OTHER``;
and each is counted (``steer.decode.errors`` on the span and as a metric, by ``steer.decode.reason``).
Token counts are checked where usage is normalised (``providers.base.Assembly.token_count``).
``bounded`` in spans.py keeps any other attribute that is not exportable out as a last net.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from steer.call import Outcome
from steer.telemetry import semconv as sc

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def text_ok(text: str) -> bool:
    """Valid UTF-8 once encoded (no lone surrogates). ASCII, the common case, is checked in C."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def repaired(text: str) -> str:
    """The text with each lone surrogate replaced by U+FFFD."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def value_ok(value: Any) -> bool:
    """An attribute value the OTLP encoders accept (bool, float and other types pass: the SDK's own
    attribute rules deal with them, without exporter errors)."""
    kind = type(value)
    if kind is str:
        return text_ok(value)
    if kind is int:
        return INT64_MIN <= value <= INT64_MAX
    if kind is list or kind is tuple:
        return all(value_ok(v) for v in value)
    return True


def check_outcome(outcome: Outcome) -> None:
    """Make the wire values of one call's Outcome exportable, counting each one changed or left out."""
    invalid: Dict[str, int] = {}
    if outcome.response_id is not None and not text_ok(outcome.response_id):
        outcome.response_id = _left_out(invalid, sc.DECODE_REASON_INVALID_UTF8)
    if outcome.response_model is not None and not text_ok(outcome.response_model):
        outcome.response_model = _left_out(invalid, sc.DECODE_REASON_INVALID_UTF8)
    reasons = outcome.finish_reasons
    for i, reason in enumerate(reasons):
        if not text_ok(reason):
            reasons[i] = repaired(reason)
            _left_out(invalid, sc.DECODE_REASON_INVALID_UTF8)
    if outcome.error_type is not None and not text_ok(outcome.error_type):
        outcome.error_type = sc.ERROR_TYPE_OTHER
        _left_out(invalid, sc.DECODE_REASON_INVALID_UTF8)
    if outcome.error_message is not None and not text_ok(outcome.error_message):
        outcome.error_message = repaired(outcome.error_message)
        _left_out(invalid, sc.DECODE_REASON_INVALID_UTF8)
    extra = outcome.extra
    for key, value in list(extra.items()):
        if type(value) in (str, int) and not value_ok(value):
            del extra[key]
            _left_out(invalid, sc.DECODE_REASON_INVALID_UTF8 if type(value) is str else sc.DECODE_REASON_OUT_OF_RANGE)
    if invalid:
        merged = outcome.invalid_values = dict(outcome.invalid_values or {})
        for reason, n in invalid.items():
            merged[reason] = merged.get(reason, 0) + n
            outcome.decode_errors += n


def _left_out(invalid: Dict[str, int], reason: str) -> Optional[str]:
    invalid[reason] = invalid.get(reason, 0) + 1
    return None
