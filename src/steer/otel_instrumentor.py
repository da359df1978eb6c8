"""Zero-code instrumentation: ``opentelemetry-instrument python app.py`` picks steer up.

The ``opentelemetry_instrumentor`` entry point ``steer`` (pyproject.toml) names this class. The
``opentelemetry-instrument`` launcher configures the SDK first (when a distro such as
``opentelemetry-distro`` is installed), then calls ``SteerInstrumentor().instrument()``; without a
distro, steer's own defaults (``steer.otel_setup``) build the SDK from the same ``OTEL_*`` variables.
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=steer`` turns it off like any other instrumentation.

In code, ``SteerInstrumentor().instrument(tracer_provider=..., meter_provider=..., **steer_options)``
is the same as ``steer.instrument(...)``, for applications that manage instrumentors uniformly.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Collection

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]


class SteerInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OpenTelemetry instrumentor for every provider SDK steer knows (openai, anthropic, google-genai, httpx)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        # steer patches whichever provider SDKs are installed and skips the rest, so it depends on none
        # of them: naming one here would make the launcher skip steer when that one is missing.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        import steer

        steer.instrument(**kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        import steer

        steer.uninstrument()


def post_instrument() -> None:
    """``opentelemetry_post_instrument`` entry point: runs once, after the launcher has loaded every
    installed instrumentor, in whatever order it found them.

    ``opentelemetry-bootstrap`` installs opentelemetry-instrumentation-openai-v2 for any application
    that uses openai, so with steer installed the launcher loads both on the same methods: two
    ``chat`` spans per call and every metric twice. Whoever installed steer asked for it; openai-v2
    came with the bootstrap default. So when steer is on for openai, openai-v2 is asked to stand
    down through its own public ``uninstrument()`` (docs/design-decisions.md, "One GenAI span when
    opentelemetry-instrument loads steer and openai-v2"). To keep openai-v2 instead:
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=steer``. Other instrumentations are reported, not removed.
    """
    from steer import instrumentation

    runtime = instrumentation.current_runtime()
    if runtime is None:  # steer disabled (or failed to start): the other instrumentations keep their place
        return
    openai_v2 = sys.modules.get("opentelemetry.instrumentation.openai_v2")
    if openai_v2 is not None and "openai" in runtime.settings.providers:
        peer = openai_v2.OpenAIInstrumentor()  # BaseInstrumentor is a singleton: the launcher's instance
        if peer.is_instrumented_by_opentelemetry:
            instrumentation.stand_aside_for(peer.uninstrument)
            logging.getLogger("steer").info(
                "steer: opentelemetry-instrumentation-openai-v2 stood down so each OpenAI call is traced once, by steer "
                "(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=steer keeps openai-v2 instead)")
    instrumentation.instrumentation_status()  # warns once about any other instrumentation on the same methods
