"""Which OpenTelemetry providers steer reports to.

Explicit providers win; otherwise the global ones (whatever the application configured).
"""

from __future__ import annotations

from typing import Any, Tuple


def resolve_providers(tracer_provider: Any = None, meter_provider: Any = None) -> Tuple[Any, Any]:
    return tracer_provider, meter_provider
