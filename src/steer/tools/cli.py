"""The `steer` command: `steer demo` and `steer replay FILE [--json]`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="steer", description="Observability for streamed LLM calls.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run real SDK clients against a loopback fake provider, show traces and metrics")
    demo.add_argument("--otlp", metavar="ENDPOINT", help="also export OTLP (http/protobuf) to this endpoint "
                      "(default: $OTEL_EXPORTER_OTLP_ENDPOINT when set)")
    demo.add_argument("--phoenix", action="store_true", help="start a local Arize Phoenix (when installed) and export to it")
    demo.add_argument("--rounds", type=int, default=1, help="how many times to run the set of calls")
    demo.add_argument("--fast", action="store_true", help="no simulated latency (for tests and load)")

    rep = sub.add_parser("replay", help="serve one recording to the real SDK under steer and summarise")
    rep.add_argument("file", help="a recording in the shared/fixtures/streams format")
    rep.add_argument("--json", action="store_true", help="print exactly one JSON object")
    rep.add_argument("--async", dest="is_async", action="store_true", help="use the SDK's async client")
    rep.add_argument("--capture-content", action="store_true", help="capture prompts and outputs on the span")

    args = parser.parse_args(argv)
    if args.command == "replay":
        return _replay(args)
    from steer.tools.demo import run_demo

    return run_demo(otlp=args.otlp, phoenix=args.phoenix, rounds=args.rounds, fast=args.fast)


def _replay(args: argparse.Namespace) -> int:
    from steer.tools.replay import replay

    try:
        summary = replay(args.file, is_async=args.is_async, capture_content=args.capture_content or None)
    except (OSError, ValueError) as exc:
        print(f"steer replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, default=str))
        return 0
    print(_replay_text(summary))
    return 0


def _replay_text(s: dict) -> str:
    usage = s["usage"]
    lines = [
        f"{s['provider']} · {s['api']} · span {s['span']['name']!r} ({s['span']['status']})",
        f"chunks {s['chunks']} · finish {', '.join(s['finish_reasons']) or '-'} · "
        f"usage in={usage['input_tokens']} out={usage['output_tokens']} ({usage['source']}"
        + (f", confidence {usage['confidence']:.2f})" if usage.get("confidence") is not None and usage["source"] == "estimated" else ")"),
        f"events {s['events']}",
        f"metrics {', '.join(s['metrics'])}",
    ]
    if s.get("error"):
        lines.append(f"error {s['error']['type']} (retryable={s['error']['retryable']}): {s['error']['message']}")
    for call in s["tool_calls"]:
        lines.append(f"tool call {call['name']}({json.dumps(call['arguments'])})")
    if s["text"]:
        text = s["text"] if len(s["text"]) < 400 else s["text"][:400] + "…"
        lines.append("text: " + text)
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
