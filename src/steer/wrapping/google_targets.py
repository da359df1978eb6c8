"""google-genai patch targets: ``Models`` / ``AsyncModels`` ``generate_content_stream`` and
``generate_content``.

The public methods are patched (not ``_generate_content_stream`` or the API client's
``request_streamed``): one span per user call, covering the SDK's automatic function calling and
continuation hops, and ``chats`` (``send_message[_stream]``) through ``generate_content[_stream]``.
The streaming methods return generators, so they get the generator call wrappers; the provider
(Gemini API or Vertex AI) and the server come from each call's API client.
"""

from __future__ import annotations

from typing import Any, List

from steer.call import CallInfo
from steer.config import Settings
from steer.providers import google_genai as provider
from steer.wrapping.generator_proxies import async_generator_wrapper, generator_wrapper
from steer.wrapping.specs import ApiSpec, Target, sync_and_async


def _base_url(api_client: Any, kwargs: dict) -> Any:
    # A per-request HttpOptions(base_url=...) in the config wins over the client's.
    config = kwargs.get("config")
    options = config.get("http_options") if isinstance(config, dict) else getattr(config, "http_options", None)
    url = options.get("base_url") if isinstance(options, dict) else getattr(options, "base_url", None)
    if url:
        return url
    client_options = getattr(api_client, "_http_options", None)
    return getattr(client_options, "base_url", None)


def _call(instance: Any, kwargs: dict, settings: Settings, streaming: bool, api: str) -> CallInfo:
    api_client = getattr(instance, "_api_client", None)
    name = settings.provider_name_override or provider.provider_name(bool(getattr(api_client, "vertexai", False)))
    host, port = provider.server_from_url(_base_url(api_client, kwargs))
    return provider.call_info(kwargs, provider=name, address=host, port=port, streaming=streaming, api=api)


def _stream(instance: Any, args: tuple, kwargs: dict, settings: Settings) -> CallInfo:
    return _call(instance, kwargs, settings, True, STREAM_API)


def _unary(instance: Any, args: tuple, kwargs: dict, settings: Settings) -> CallInfo:
    return _call(instance, kwargs, settings, False, UNARY_API)


STREAM_API = "google.generate_content_stream"
UNARY_API = "google.generate_content"
STREAM = ApiSpec(STREAM_API, _stream, provider.GenerateContentDecoder)
UNARY = ApiSpec(UNARY_API, _unary, provider.GenerateContentDecoder)

_MODULE = "google.genai.models"

TARGETS: List[Target] = [
    Target("google_genai", _MODULE, "Models", "generate_content_stream", STREAM, is_async=False,
           wrapper_factory=generator_wrapper),
    Target("google_genai", _MODULE, "AsyncModels", "generate_content_stream", STREAM, is_async=True,
           wrapper_factory=async_generator_wrapper),
    *sync_and_async("google_genai", _MODULE, "Models", "generate_content", UNARY),
]
