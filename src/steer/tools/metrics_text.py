"""Metrics as a person reads them (``steer demo``, ``steer replay``): each metric's value with its unit;
a histogram as its count, median, 95th percentile and maximum.

The percentiles are read off the histogram's bucket counts (linear within a bucket, clamped to the
recorded min and max): what a backend computes from the same export, not exact sample quantiles.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple


SPLIT_BY = "gen_ai.token.type"  # input and output tokens are two quantities: never one distribution


def metric_lines(metrics_data: Any) -> List[str]:
    """One line per metric of an SDK reader's ``get_metrics_data()`` (per token type for token
    metrics), its series merged, sorted by name."""
    merged: Dict[Tuple[str, str], Tuple[str, List[Any]]] = {}
    for rm in metrics_data.resource_metrics if metrics_data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    split = (point.attributes or {}).get(SPLIT_BY)
                    label = f"{metric.name}{{{SPLIT_BY}={split}}}" if split else metric.name
                    merged.setdefault((metric.name, label), (metric.unit or "", []))[1].append(point)
    return [f"{label}: {describe(unit, points)}" for (_, label), (unit, points) in sorted(merged.items())]


def describe(unit: str, points: Sequence[Any]) -> str:
    series = f" ({len(points)} series)" if len(points) > 1 else ""
    if points and hasattr(points[0], "bucket_counts"):
        count = sum(p.count for p in points)
        if not count:
            return f"no points{series}"
        low, high = min(p.min for p in points), max(p.max for p in points)
        if count == 1:
            return f"{with_unit(high, unit)} (one point){series}"
        p50, p95 = (_percentile(points, q, low, high) for q in (0.5, 0.95))
        return (f"n={count} · p50 {with_unit(p50, unit)} · p95 {with_unit(p95, unit)} · "
                f"max {with_unit(high, unit)}{series}")
    return f"{with_unit(sum(p.value for p in points), unit)}{series}"


def with_unit(value: Optional[float], unit: str) -> str:
    """``0.412, "s"`` -> ``412 ms``; ``5, "{chunk}"`` -> ``5 chunks``; ``0.83, "1"`` -> ``0.83``."""
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1e3:.1f} ms" if abs(value) < 1 else f"{value:.2f} s"
    number = f"{value:.3g}" if isinstance(value, float) and not float(value).is_integer() else f"{value:,.0f}"
    if unit.startswith("{") and unit.endswith("}"):
        noun = unit[1:-1]
        return f"{number} {noun if value == 1 else noun + 's'}"
    return number if unit in ("", "1") else f"{number} {unit}"


def _percentile(points: Sequence[Any], q: float, low: float, high: float) -> float:
    bounds = list(points[0].explicit_bounds)
    counts = [sum(p.bucket_counts[i] for p in points) for i in range(len(bounds) + 1)]
    rank = q * sum(counts)
    seen = 0.0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            lower = bounds[i - 1] if i > 0 else low
            upper = bounds[i] if i < len(bounds) else high
            lower, upper = max(lower, low), min(upper, high)
            return lower + (upper - lower) * (rank - seen) / n
        seen += n
    return high
