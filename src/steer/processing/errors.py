"""One classification of provider failures, shared by the span's ``error.type`` and
``StreamErrorEvent.is_retryable``.

Works by duck typing (status codes, class names, provider error codes) so it needs no SDK import:
openai, anthropic and google-genai exceptions, httpx/httpx2 transport errors, and errors a provider
sends inside an HTTP 200 stream all go through the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})

# Provider error codes/types sent in a body or an in-stream error event.
RETRYABLE_CODES = frozenset({
    "overloaded_error", "rate_limit_error", "rate_limit_exceeded", "api_error", "server_error",
    "timeout", "internal_error", "service_unavailable", "resource_exhausted", "unavailable",
    "RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "insufficient_quota_retry",
})
FATAL_CODES = frozenset({
    "authentication_error", "permission_error", "invalid_request_error", "not_found_error",
    "invalid_api_key", "model_not_found", "tool_use_failed", "context_length_exceeded",
    "PERMISSION_DENIED", "INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED", "FAILED_PRECONDITION",
    "insufficient_quota", "billing_error",
})

# Exception class names (any SDK) that mean a transient transport problem.
RETRYABLE_NAMES = frozenset({
    "APITimeoutError", "APIConnectionError", "Timeout", "TimeoutException", "ReadTimeout", "ConnectTimeout",
    "WriteTimeout", "PoolTimeout", "ConnectError", "ReadError", "WriteError", "RemoteProtocolError",
    "ConnectionResetError", "ConnectionError", "BrokenPipeError", "TimeoutError", "ServerError",
    "InternalServerError", "RateLimitError", "OverloadedError", "ServiceUnavailableError",
    "DeadlineExceededError", "IncompleteRead", "ChunkedEncodingError",
})


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    error_type: str  # low-cardinality: an exception's class name or a provider error code
    retryable: bool
    message: str
    status: Optional[int] = None


def _status_of(exc: BaseException) -> Optional[int]:
    for attr in ("status_code", "code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _body_code(exc: BaseException) -> Optional[str]:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping):
            for key in ("type", "code", "status"):
                value = err.get(key)
                if isinstance(value, str) and value:
                    return value
    return None


def classify_exception(exc: BaseException) -> ErrorInfo:
    name = type(exc).__name__
    status = _status_of(exc)
    code = _body_code(exc)
    message = str(exc)[:512]
    if code in FATAL_CODES:
        retryable = False
    elif code in RETRYABLE_CODES:
        retryable = True
    elif status is not None:
        retryable = status in RETRYABLE_STATUS
    else:
        retryable = name in RETRYABLE_NAMES or isinstance(exc, (TimeoutError, ConnectionError))
    return ErrorInfo(error_type=name, retryable=retryable, message=message, status=status)


def classify_stream_error(error: Mapping[str, Any]) -> ErrorInfo:
    """An error the provider sent inside the stream (``{"type": ..., "message": ...}`` shapes)."""
    code = None
    for key in ("type", "code", "status"):
        value = error.get(key)
        if isinstance(value, str) and value and value != "error":
            code = value
            break
    status = error.get("status_code") if isinstance(error.get("status_code"), int) else None
    if code in FATAL_CODES:
        retryable = False
    elif code in RETRYABLE_CODES:
        retryable = True
    else:
        retryable = status in RETRYABLE_STATUS if status else False
    return ErrorInfo(
        error_type=code or "provider_error",
        retryable=retryable,
        message=str(error.get("message", ""))[:512],
        status=status,
    )
