"""``steer.wrap()``: observe one client or one stream with its own options, patching nothing global.

A wrapped client is a chain of wrapt proxies. Each attribute read on it is answered from the real
SDK object, except that:
- a method that the registry lists as a patch target for the object's class (matched along the MRO:
  ``Completions.create``, Anthropic's ``SyncAPIClient.request``, google-genai's ``Models.*``) comes back
  wrapped in the same call wrapper ``instrument()`` installs, bound to this wrap's private Runtime;
- other public methods are bound to the proxy, so SDK helpers that call ``self.create(...)`` (the
  ``.stream()`` helpers) or ``self.request(...)`` (``post``) go through the observed method;
- sub-resources come back proxied. A Stainless resource (openai, anthropic) that hangs off the
  wrapped object is rebuilt on the proxy (``type(resource)(proxy)``), because it captures its client's
  bound ``post``/``get`` when built; ``with_raw_response`` / ``with_streaming_response`` views likewise.
Nothing is set on SDK objects or classes: proxy state lives in ``_self_*`` attributes (wrapt's rule).
If ``instrument()`` is also active, the wrap's call wrapper runs first and marks the call, so the
global one stays silent: one span per call, with the wrap's options.

A wrapped stream (``openai``/``anthropic`` ``Stream``/``AsyncStream`` already returned by the SDK) is
observed from the moment it is wrapped: its Session's t0 is the wrap time, so time to first chunk
counts from ``wrap()``, not from the request.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import Any, Callable, Dict, Optional, Tuple

import wrapt

from steer.pipeline import Runtime, Session
from steer.wrapping.calls import async_wrapper, sync_wrapper
from steer.wrapping.proxies import AsyncStreamProxy, SyncStreamProxy
from steer.wrapping.registry import all_targets
from steer.wrapping.specs import Target

_RAW_VIEWS = ("with_raw_response", "with_streaming_response")
_CLONERS = ("with_options", "copy")  # return a new client: keep observing it
_STREAM_SDKS = ("openai", "anthropic")  # Stainless SDKs: their Stream/AsyncStream can be wrapped
# Request path -> wire protocol, for wrapping a stream (the path is on the stream's request options).
_PATH_APIS = (("/chat/completions", "openai.chat.completions"), ("/responses", "openai.responses"),
              ("/messages", "anthropic.messages"), ("/completions", "openai.completions"))
# Chunk type -> wire protocol: the fallback when a stream carries no request options.
_CHUNK_APIS = {"ChatCompletionChunk": "openai.chat.completions", "Completion": "openai.completions",
               "RawMessageStreamEvent": "anthropic.messages", "ResponseStreamEvent": "openai.responses"}


def wrap(obj: Any, runtime: Runtime) -> Any:
    if isinstance(obj, (SyncStreamProxy, AsyncStreamProxy)):
        raise ValueError("steer.wrap: this stream is already observed by steer")
    if _is_sdk_stream(obj):
        return _wrap_stream(obj, runtime)
    routes = Routes(runtime, type(obj).__module__.partition(".")[0])
    if not routes.by_owner:
        raise TypeError(f"steer.wrap: no steer support for {type(obj).__module__}.{type(obj).__qualname__}")
    return ObservedObject(obj, routes)


class Routes:
    """Which methods of which SDK classes a wrap observes, resolved once from the registry."""

    def __init__(self, runtime: Runtime, package: str) -> None:
        self.runtime = runtime
        self.by_owner: Dict[type, Dict[str, Target]] = {}
        self._per_class: Dict[type, Dict[str, Target]] = {}
        self._wrappers: Dict[int, Callable[..., Any]] = {}
        for target in all_targets():
            if target.module.partition(".")[0] != package:
                continue
            owner = _owner_class(target)
            if owner is not None:
                self.by_owner.setdefault(owner, {})[target.attribute] = target

    def targets(self, cls: type) -> Dict[str, Target]:
        found = self._per_class.get(cls)
        if found is None:
            found = {}
            for base in reversed(cls.__mro__):  # the most derived class wins
                found.update(self.by_owner.get(base, {}))
            self._per_class[cls] = found
        return found

    def wrapper(self, target: Target) -> Callable[..., Any]:
        fn = self._wrappers.get(id(target))
        if fn is None:
            factory = target.wrapper_factory or (async_wrapper if target.is_async else sync_wrapper)
            runtime = self.runtime
            fn = self._wrappers[id(target)] = factory(target.spec, lambda: runtime)
        return fn


class ObservedObject(wrapt.ObjectProxy):
    """A client or resource of a wrapped client (see the module docstring for what it changes)."""

    def __init__(self, wrapped: Any, routes: Routes) -> None:
        super().__init__(wrapped)
        self._self_routes = routes
        self._self_cache: Dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        wrapped = self.__wrapped__
        if name.startswith("_"):
            return getattr(wrapped, name)
        cache = self._self_cache
        if name in cache:
            return cache[name]
        routes = self._self_routes
        target = routes.targets(type(wrapped)).get(name)
        if target is not None:
            method = cache[name] = wrapt.FunctionWrapper(getattr(wrapped, name), routes.wrapper(target))
            return method
        static = inspect.getattr_static(type(wrapped), name, None)
        if inspect.isfunction(static):
            bound = types.MethodType(static, self)
            return _observing_result(bound, routes) if name in _CLONERS else bound
        value = getattr(wrapped, name)
        if name in _RAW_VIEWS:
            value = cache[name] = _rebuilt(value, self)
        elif _is_resource(value):
            if getattr(value, "_client", None) is wrapped:
                value = _rebuilt(value, self)
            value = cache[name] = ObservedObject(value, routes)
        return value


def _observing_result(method: Callable[..., Any], routes: Routes) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        return ObservedObject(result, routes) if _is_resource(result) else result

    return call


def _rebuilt(value: Any, proxy: Any) -> Any:
    """The same Stainless resource (or raw-response view), built on the proxy instead of the raw client."""
    try:
        return type(value)(proxy)
    except Exception:  # an unexpected constructor: keep the SDK's own object (calls still observed where routed)
        return value


def _is_resource(value: Any) -> bool:
    # Stainless resources and clients keep `_client`; google-genai modules and clients `_api_client`.
    if isinstance(value, type):
        return False
    attrs = getattr(value, "__dict__", None)
    return isinstance(attrs, dict) and ("_client" in attrs or "_api_client" in attrs)


def _owner_class(target: Target) -> Optional[type]:
    try:
        owner: Any = importlib.import_module(target.module)
        for part in target.owner.split("."):
            owner = getattr(owner, part)
    except (ImportError, AttributeError):
        return None
    return owner if isinstance(owner, type) else None  # module-level function targets need global patching


# -- one stream ----------------------------------------------------------------------------------------
def _is_sdk_stream(obj: Any) -> bool:
    for package in _STREAM_SDKS:
        sdk = sys.modules.get(package)  # an SDK not imported yet cannot have made this object
        classes = tuple(c for c in (getattr(sdk, "Stream", None), getattr(sdk, "AsyncStream", None)) if isinstance(c, type))
        if classes and isinstance(obj, classes):
            return True
    return False


def _stream_api(stream: Any) -> Optional[str]:
    url = getattr(getattr(stream, "_options", None), "url", None)
    if isinstance(url, str):
        path = url.partition("?")[0].rstrip("/")
        for suffix, api in _PATH_APIS:
            if path.endswith(suffix):
                return api
    cast = getattr(stream, "_cast_to", None)
    name = getattr(cast, "__name__", None) or str(cast)
    return next((api for chunk, api in _CHUNK_APIS.items() if chunk in name), None)


def _stream_target(api: str, is_async: bool) -> Optional[Target]:
    for target in all_targets():
        if target.spec is not None and target.spec.api == api and target.is_async == is_async and target.attribute in ("create", "request"):
            return target
    return None


def _call_args(target: Target, stream: Any) -> Tuple[Any, tuple, dict]:
    """The (instance, args, kwargs) the target's call_info would have seen for the request."""
    options = getattr(stream, "_options", None)
    if target.attribute == "request":  # a client-level seam: request(cast_to, options, stream=...)
        return stream._client, (stream._cast_to, options), {"stream": True}
    body = getattr(options, "json_data", None)
    kwargs = dict(body) if isinstance(body, dict) else {}
    kwargs["stream"] = True
    return stream, (), kwargs  # a resource-level seam: the stream carries the client (`_client`)


def _wrap_stream(stream: Any, runtime: Runtime) -> Any:
    is_async = hasattr(stream, "__anext__")
    api = _stream_api(stream)
    target = _stream_target(api, is_async) if api else None
    if target is None:
        raise TypeError(f"steer.wrap: cannot tell which API this stream speaks ({api or 'unknown'}) or it is not supported")
    try:
        instance, args, kwargs = _call_args(target, stream)
        session = Session(runtime, target.spec.call_info(instance, args, kwargs, runtime.settings), target.spec.decoder())
    except Exception as exc:  # steer's own failure: hand the stream back unobserved
        runtime.internal_error(f"wrap_stream:{api}", exc)
        return stream
    return (AsyncStreamProxy if is_async else SyncStreamProxy)(stream, session)
