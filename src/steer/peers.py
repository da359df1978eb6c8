"""Other GenAI instrumentations on the SDK methods steer patches, recognised by their wrappers.

OpenTelemetry's own instrumentations (openai-v2, google-genai), OpenLLMetry
(``opentelemetry-instrumentation-openai`` / ``-anthropic`` from traceloop), OpenInference and OpenLIT
all patch the same public SDK methods as steer, with ``wrapt.wrap_function_wrapper``: the class
attribute becomes a chain of wrapt proxies around the SDK function. Each layer's wrapper function
(or wrapper object) was defined in the instrumentation's own package, so its ``__module__`` names
who put it there. A layer whose module is neither steer's nor the SDK's is another instrumentation:
with two of them, every call is traced twice.
"""

from __future__ import annotations

import functools
from typing import Any, List

import wrapt

# wrapt 2 splits the proxy classes: FunctionWrapper derives from BaseObjectProxy, not ObjectProxy.
_PROXY = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)

# Module prefix -> the distribution a user would uninstall or disable. The first match wins, so the
# more specific prefixes come first (openai_v2 before openai).
_KNOWN = (
    ("opentelemetry.instrumentation.openai_v2", "opentelemetry-instrumentation-openai-v2"),
    ("opentelemetry.instrumentation.google_genai", "opentelemetry-instrumentation-google-genai"),
    ("opentelemetry.instrumentation.openai", "opentelemetry-instrumentation-openai (OpenLLMetry)"),
    ("opentelemetry.instrumentation.anthropic", "opentelemetry-instrumentation-anthropic"),
    ("opentelemetry.instrumentation.google_generativeai", "opentelemetry-instrumentation-google-generativeai (OpenLLMetry)"),
    ("openinference.instrumentation.openai", "openinference-instrumentation-openai (OpenInference)"),
    ("openinference.instrumentation.anthropic", "openinference-instrumentation-anthropic (OpenInference)"),
    ("openinference.instrumentation.google_genai", "openinference-instrumentation-google-genai (OpenInference)"),
    ("openlit", "openlit (OpenLIT)"),
)


# Public methods the peers wrap where steer hooks lower down (Anthropic: steer patches the client's
# request method), looked at as well: (module, owner, attribute).
# OpenInference wraps the openai clients' request method, below the resource methods steer patches.
WATCHED = (
    *(("anthropic.resources.messages.messages", owner, attribute)
      for owner in ("Messages", "AsyncMessages") for attribute in ("create", "stream")),
    ("openai", "OpenAI", "request"),
    ("openai", "AsyncOpenAI", "request"),
)


def peer_name(module: str) -> str:
    for prefix, name in _KNOWN:
        if module == prefix or module.startswith(prefix + "."):
            return name
    return module.split(".")[0] if not module.startswith(("opentelemetry.", "openinference.")) else ".".join(module.split(".")[:3])


def _origin(layer: Any) -> str:
    """The module that defined what a wrapt layer calls (a function, a partial, a callable object)."""
    wrapper = getattr(layer, "_self_wrapper", None)
    while isinstance(wrapper, functools.partial):
        wrapper = wrapper.func
    module = getattr(wrapper if wrapper is not None else type(layer), "__module__", None)
    return module if isinstance(module, str) else ""


def peers_on(attribute: Any, sdk_package: str) -> List[str]:
    """The other instrumentations whose wrappers are in the chain of ``attribute`` (outermost first)."""
    found: List[str] = []
    layer = attribute
    for _ in range(32):  # a chain longer than this is not a chain of instrumentations
        if isinstance(layer, _PROXY):
            module = _origin(layer)
            layer = layer.__wrapped__
        elif callable(layer) and not isinstance(layer, type):
            # A plain replacement function (no wrapt): foreign unless the SDK itself defined it.
            module = getattr(layer, "__module__", None) or ""
            layer = None
        else:
            break
        if module and not _ours(module, sdk_package):
            name = peer_name(module)
            if name not in found:
                found.append(name)
        if layer is None:
            break
    return found


def _ours(module: str, sdk_package: str) -> bool:
    top = module.split(".")[0]
    return top in ("steer", sdk_package, "functools", "typing_extensions") or module == sdk_package
