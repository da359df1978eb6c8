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
