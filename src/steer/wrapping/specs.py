"""Patch targets as data: which SDK method, which API it speaks, how to read the call's request.

An ``ApiSpec`` says how to describe a call (``call_info``) and how to decode what comes back
(``decoder``); a ``Target`` says where it is patched. Each provider has its own targets module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from steer.call import CallInfo
from steer.config import Settings
from steer.providers.base import Decoder


@dataclass(frozen=True)
class ApiSpec:
    api: str
    call_info: Callable[[Any, tuple, dict, Settings], CallInfo]
    decoder: Callable[[], Decoder]


@dataclass(frozen=True)
class Target:
    provider_group: str  # the instrument(providers=...) name that turns it on: "openai", "anthropic", ...
    module: str  # where the owner class lives
    owner: str  # class name (dotted for nested)
    attribute: str  # the method patched on the class
    spec: Optional[ApiSpec]  # None where the API is decided per request (raw httpx)
    is_async: bool
    # Builds the wrapt wrapper from (spec, get_runtime); None: the standard sync/async call wrapper.
    wrapper_factory: Optional[Callable[..., Any]] = None
    # Other provider groups that need this patch too (httpx's send: it also sees each SDK's HTTP attempts).
    also_for: Tuple[str, ...] = ()

    def enabled(self, providers: Tuple[str, ...]) -> bool:
        return self.provider_group in providers or any(group in providers for group in self.also_for)


def sync_and_async(provider_group: str, module: str, owner: str, attribute: str, spec: ApiSpec) -> List[Target]:
    """The target on ``owner`` and on its async twin ``Async<owner>`` (the SDKs' own naming)."""
    return [Target(provider_group, module, owner, attribute, spec, is_async=False),
            Target(provider_group, module, "Async" + owner, attribute, spec, is_async=True)]


def client_base_url(instance: Any) -> Any:
    """A Stainless SDK resource's client base URL (``resource._client.base_url``)."""
    client = getattr(instance, "_client", None)
    return getattr(client, "base_url", None)


def parsed_per_base_url(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``parse(base_url)``, computed once per base-URL object rather than on every call.

    A client keeps one ``base_url`` object (Stainless SDKs replace it, never mutate it), so the
    object's identity is the key; the entry holds the object, so its id cannot be reused while cached.
    """
    cache: Dict[int, Tuple[Any, Any]] = {}

    def parsed(base_url: Any) -> Any:
        hit = cache.get(id(base_url))
        if hit is not None and hit[0] is base_url:
            return hit[1]
        value = parse(base_url)
        if len(cache) >= _MAX_BASE_URLS:
            cache.clear()
        cache[id(base_url)] = (base_url, value)
        return value

    return parsed


_MAX_BASE_URLS = 256
