"""OpenAI SDK patch targets: Chat Completions (create, parse) and legacy Completions, sync and async.

The resource methods are patched on their classes, so every client (OpenAI, AsyncOpenAI,
AzureOpenAI, and OpenAI-compatible base URLs) is covered; the provider is read from each call's
client base URL. ``chat.completions.stream()`` calls ``create`` and is covered through it.

Its helper, ``ChatCompletionStream``, closes the HTTP response directly on ``close()`` and on
``with``-exit, bypassing the stream proxy (as ``ResponseStream`` does; see openai_responses_targets):
without a hook, a ``break`` out of ``with client.chat.completions.stream(...)`` left the span open and
``steer.client.streams.active`` up until the garbage collector found the proxy. ``close`` is wrapped
to end the Session as ``closed_early`` (a no-op once the stream drained).
"""

from __future__ import annotations

from typing import Any, List

from steer.call import CallInfo
from steer.config import Settings
from steer.providers import openai as provider
from steer.wrapping.openai_responses_targets import helper_close_async, helper_close_sync, openai_endpoint
from steer.wrapping.specs import ApiSpec, Target, sync_and_async


def _chat(instance: Any, args: tuple, kwargs: dict, settings: Settings) -> CallInfo:
    name, host, port = openai_endpoint(instance, settings)
    return provider.chat_call_info(kwargs, provider=name, address=host, port=port)


def _completion(instance: Any, args: tuple, kwargs: dict, settings: Settings) -> CallInfo:
    name, host, port = openai_endpoint(instance, settings)
    return provider.chat_call_info(kwargs, provider=name, address=host, port=port,
                                   operation="text_completion", api="openai.completions")


CHAT = ApiSpec("openai.chat.completions", _chat, provider.ChatDecoder)
COMPLETIONS = ApiSpec("openai.completions", _completion, provider.CompletionDecoder)

_CHAT_MODULE = "openai.resources.chat.completions.completions"
_COMPLETIONS_MODULE = "openai.resources.completions"
_CHAT_HELPER = "openai.lib.streaming.chat._completions"

TARGETS: List[Target] = [
    *sync_and_async("openai", _CHAT_MODULE, "Completions", "create", CHAT),
    # parse() posts directly (not through create): patched on its own, never streaming.
    *sync_and_async("openai", _CHAT_MODULE, "Completions", "parse", CHAT),
    *sync_and_async("openai", _COMPLETIONS_MODULE, "Completions", "create", COMPLETIONS),
    Target("openai", _CHAT_HELPER, "ChatCompletionStream", "close", CHAT, is_async=False, wrapper_factory=helper_close_sync),
    Target("openai", _CHAT_HELPER, "AsyncChatCompletionStream", "close", CHAT, is_async=True,
           wrapper_factory=helper_close_async),
]
