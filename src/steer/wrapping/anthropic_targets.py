"""Anthropic SDK patch targets: every Messages call, through the client's one ``request`` method.

Why ``request`` and not the resource methods (the OpenAI targets patch ``Completions.create``):
``messages.stream()`` does not call ``create``. It builds a ``functools.partial`` of the client's
``post`` and sends it only when its manager is entered (``__enter__`` / ``__aenter__``), then wraps
the raw ``Stream`` in a ``MessageStream`` whose ``text_stream``, ``until_done`` and
``get_final_message`` iterate that raw stream from inside the helper. Every path — ``create``
(streamed or not), ``stream()``, ``parse()``, ``beta.messages.*``, ``with_raw_response``,
``with_streaming_response`` — meets in ``SyncAPIClient.request`` / ``AsyncAPIClient.request`` with
``options.url == "/v1/messages"``, at the moment the request is really sent (t0 is right, also for the
helper). What it returns there is the raw ``Stream``, so the helper is handed steer's proxy and iterates
it: each wire event is counted once, whichever helper drains it, and the helper classes are untouched
(the async helper stays an async context manager). The price is a semi-private seam; ``tests/
test_anthropic.py`` checks its signature and that every target is patched, so an SDK that moves it fails
loudly there rather than silently losing spans.

One span per call. The SDK (2.x) starts its own CLIENT span for every call unless
``open_telemetry=False`` / ``ANTHROPIC_OPEN_TELEMETRY=false``. steer takes over: while steer has a
Session open for a Messages call, the SDK's ``start_api_call_span`` hands back a non-recording view of
steer's span instead of starting one. The SDK then records nothing and ends nothing (it skips
non-recording spans), but still injects trace headers per its own ``propagation`` option — now for
steer's span — so downstream services keep their parent. Calls steer does not instrument (count_tokens,
batches, models, ...) keep the SDK's span. See docs/providers/anthropic.md.
"""

from __future__ import annotations

from typing import Any, Callable, List

from steer.call import CallInfo
from steer.config import Settings
from steer.providers import anthropic as provider
from steer.wrapping.calls import IN_CALL, async_wrapper, sync_wrapper
from steer.wrapping.specs import ApiSpec, Target, parsed_per_base_url

_MESSAGES_PATH = "/v1/messages"


def _options(args: tuple, kwargs: dict) -> Any:
    return args[1] if len(args) > 1 else kwargs.get("options")


def is_messages_call(args: tuple, kwargs: dict) -> bool:
    """``request(cast_to, options, *, stream, stream_cls)`` for ``POST /v1/messages`` (beta adds a query)."""
    options = _options(args, kwargs)
    url = getattr(options, "url", None)
    method = getattr(options, "method", None)
    return (isinstance(url, str) and url.partition("?")[0] == _MESSAGES_PATH
            and isinstance(method, str) and method.lower() == "post")


_endpoint = parsed_per_base_url(provider.endpoint)


def _call_info(instance: Any, args: tuple, kwargs: dict, settings: Settings) -> CallInfo:
    options = _options(args, kwargs)
    body = provider.clean_body(options.json_data, getattr(options, "extra_json", None))
    stream = kwargs.get("stream", args[2] if len(args) > 2 else False)
    # Bedrock and Vertex clients name themselves (aws.bedrock, gcp.vertex_ai) on the class.
    name = getattr(type(instance), "_gen_ai_provider_name", None)
    address, port = _endpoint(getattr(instance, "base_url", None))
    return provider.messages_call_info(
        body, streaming=bool(stream),
        provider=settings.provider_name_override or (name if isinstance(name, str) and name else provider.PROVIDER),
        address=address, port=port,
    )


MESSAGES = ApiSpec(provider.API, _call_info, provider.MessagesDecoder)


def _messages_only(base: Callable[..., Any]) -> Callable[..., Any]:
    """A wrapper factory that opens a Session only for Messages calls; every other request passes by.

    A plain function for both kinds: for the async client it returns the coroutine either way.
    """

    def factory(spec: ApiSpec, get_runtime: Callable[[], Any]) -> Callable[..., Any]:
        observed = base(spec, get_runtime)

        def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
            if not is_messages_call(args, kwargs):
                return wrapped(*args, **kwargs)
            return observed(wrapped, instance, args, kwargs)

        return wrapper

    return factory


def _sdk_span_taken_over(spec: ApiSpec, get_runtime: Callable[[], Any]) -> Callable[..., Any]:
    """Wraps the SDK's ``start_api_call_span``: inside a call steer observes, no second span."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        if not IN_CALL.get() or get_runtime() is None:
            return wrapped(*args, **kwargs)
        try:
            from opentelemetry import trace

            # steer's span is current around the request (calls._enter): hand the SDK a non-recording
            # view of it, so it propagates steer's context and records nothing of its own.
            context = trace.get_current_span().get_span_context()
            return trace.NonRecordingSpan(context) if context.is_valid else None
        except Exception:
            return None  # the SDK's documented "no span" answer: the call goes on without one

    return wrapper


def _no_call_info(instance: Any, args: tuple, kwargs: dict, settings: Settings) -> CallInfo:
    raise TypeError("the SDK-span switch opens no Session")  # never called: its wrapper ignores the spec


_SDK_TRACING = ApiSpec("anthropic.sdk_tracing", _no_call_info, provider.MessagesDecoder)

_BASE = "anthropic._base_client"

TARGETS: List[Target] = [
    Target("anthropic", _BASE, "SyncAPIClient", "request", MESSAGES, is_async=False,
           wrapper_factory=_messages_only(sync_wrapper)),
    Target("anthropic", _BASE, "AsyncAPIClient", "request", MESSAGES, is_async=True,
           wrapper_factory=_messages_only(async_wrapper)),
    # A module-level function: the owner is the module itself, reached as an attribute of the package.
    Target("anthropic", "anthropic", "_base_client", "start_api_call_span", _SDK_TRACING, is_async=False,
           wrapper_factory=_sdk_span_taken_over),
]
