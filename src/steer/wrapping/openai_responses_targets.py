"""OpenAI SDK patch targets for the Responses API: ``responses.create`` (streaming or not),
``responses.parse``, and the ``responses.stream()`` helper — sync and async.

How ``responses.stream()`` reaches the wire: it builds a ``ResponseStreamManager`` around
``partial(resource.create, stream=True, ...)``; entering the manager calls that ``create``, so the
patched ``create`` opens the one Session (t0 is taken when the request really goes out) and returns
the observed stream, which the SDK's ``ResponseStream`` then iterates. Every wire event is therefore
counted once, by the proxy under the helper, never by the helper's re-emitted events.

One seam is needed on top: ``ResponseStream.close()`` (called by ``with``-exit, by the manager's exit
and by the user) closes the HTTP response directly, bypassing the stream proxy. Without a hook, a
``break`` out of ``with client.responses.stream(...)`` would only end the span when the garbage
collector finds the proxy ("abandoned"). So ``close`` is wrapped to end the Session as
``closed_early`` (a no-op after the stream drained). If an SDK upgrade moves ``_raw_stream``, the
lifecycle tests fail loudly ("abandoned" instead of "closed_early").
"""

from __future__ import annotations

from typing import Any, Callable, List

from steer.call import CallInfo
from steer.config import Settings
from steer.providers import openai as openai_urls
from steer.providers import openai_responses as provider
from steer.wrapping.ends import closing_end
from steer.wrapping.proxies import AsyncStreamProxy, SyncStreamProxy
from steer.wrapping.specs import ApiSpec, Target, client_base_url, parsed_per_base_url, sync_and_async

_provider_from_url = parsed_per_base_url(openai_urls.provider_from_url)


def openai_endpoint(instance: Any, settings: Settings):
    """(gen_ai.provider.name, host, port) of an openai client (chat, completions and Responses alike)."""
    name, host, port = _provider_from_url(client_base_url(instance))
    return settings.provider_name_override or name, host, port


def _create(instance: Any, args: tuple, kwargs: dict, settings: Settings) -> CallInfo:
    name, host, port = openai_endpoint(instance, settings)
    return provider.responses_call_info(kwargs, provider=name, address=host, port=port)


def _parse(instance: Any, args: tuple, kwargs: dict, settings: Settings) -> CallInfo:
    # parse() posts a non-streaming request whatever its `stream` argument says.
    name, host, port = openai_endpoint(instance, settings)
    return provider.responses_call_info(kwargs, provider=name, address=host, port=port, streaming=False)


RESPONSES = ApiSpec("openai.responses", _create, provider.ResponsesDecoder)
RESPONSES_PARSE = ApiSpec("openai.responses", _parse, provider.ResponsesDecoder)


def _end_observed(helper: Any) -> None:
    raw = getattr(helper, "_raw_stream", None)
    if isinstance(raw, (SyncStreamProxy, AsyncStreamProxy)):
        raw._self_session.finish(closing_end())


def helper_close_sync(spec: ApiSpec, get_runtime: Callable[[], Any]) -> Callable[..., Any]:
    """Wraps a streaming helper's ``close`` (Responses and Chat Completions helpers alike): the helper
    closes the HTTP response itself, so the observed raw stream under it is ended here."""
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        try:
            return wrapped(*args, **kwargs)
        finally:
            try:
                _end_observed(instance)
            except Exception:  # pragma: no cover - steer's own failure never reaches the caller
                pass

    return wrapper


def helper_close_async(spec: ApiSpec, get_runtime: Callable[[], Any]) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        try:
            return await wrapped(*args, **kwargs)
        finally:
            try:
                _end_observed(instance)
            except Exception:  # pragma: no cover
                pass

    return wrapper


_MODULE = "openai.resources.responses.responses"
_HELPER = "openai.lib.streaming.responses._responses"

TARGETS: List[Target] = [
    *sync_and_async("openai", _MODULE, "Responses", "create", RESPONSES),
    # parse() posts directly (not through create): patched on its own.
    *sync_and_async("openai", _MODULE, "Responses", "parse", RESPONSES_PARSE),
    Target("openai", _HELPER, "ResponseStream", "close", RESPONSES, is_async=False, wrapper_factory=helper_close_sync),
    Target("openai", _HELPER, "AsyncResponseStream", "close", RESPONSES, is_async=True, wrapper_factory=helper_close_async),
]
