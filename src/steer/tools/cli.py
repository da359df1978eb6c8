"""The `steer` command: `steer demo` and `steer replay FILE [--json]`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    import steer

    parser = argparse.ArgumentParser(prog="steer", description="Observability for streamed LLM calls.")
    parser.add_argument("--version", action="version", version=f"steer {steer.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run real SDK clients against a loopback fake provider, show traces and metrics")
    demo.add_argument("--otlp", metavar="ENDPOINT", help="also export OTLP (http/protobuf) to this endpoint "
                      "(default: $OTEL_EXPORTER_OTLP_ENDPOINT when set)")
    demo.add_argument("--phoenix", action="store_true",
                      help="start a private Arize Phoenix and send it the traces (install it once with `make phoenix`)")
    demo.add_argument("--rounds", type=int, default=1, help="how many times to run the set of calls")
    demo.add_argument("--fast", action="store_true", help="no simulated latency (for tests and load)")

    rep = sub.add_parser("replay", help="serve one recording to the real SDK under steer and summarise")
    rep.add_argument("file", help="a recording in the shared/fixtures/streams format")
    rep.add_argument("--json", action="store_true", help="print exactly one JSON object")
    rep.add_argument("--async", dest="is_async", action="store_true", help="use the SDK's async client")
    rep.add_argument("--capture-content", action="store_true", help="capture prompts and outputs on the span")

    args = parser.parse_args(argv)
    try:
        if args.command == "replay":
            return _replay(args)
        from steer.tools.demo import run_demo

        return run_demo(otlp=args.otlp, phoenix=args.phoenix, rounds=args.rounds, fast=args.fast)
    except KeyboardInterrupt:  # Ctrl-C: everything was stopped on the way out; no traceback
        print(file=sys.stderr)
        return 130


def _replay(args: argparse.Namespace) -> int:
    from steer.telemetry.exportable import repaired, text_ok
    from steer.tools.replay import run_replay

    try:
        capture = run_replay(args.file, is_async=args.is_async, capture_content=args.capture_content or None)
    except (OSError, ValueError) as exc:
        print(f"steer replay: {exc}", file=sys.stderr)
        return 2
    summary = capture.summary()
    if args.json:
        out = json.dumps(summary, ensure_ascii=False, default=str)
        # A lone surrogate from the wire (text, arguments) has no UTF-8 form: JSON's own escape carries it.
        print(out if text_ok(out) else json.dumps(summary, default=str))
        return 0
    out = _replay_text(summary, capture.metric_lines())
    print(out if text_ok(out) else repaired(out))
    return 0


def _replay_text(s: Dict[str, Any], metrics: List[str]) -> str:
    """The human form of a replay: what was said, how it streamed, what it cost, how it ended."""
    from steer.tools.metrics_text import with_unit

    attrs = s["span"]["attributes"]
    usage = s["usage"]
    if usage["source"] == "none":
        tokens = "none (no usage reported, nothing to estimate)"
    else:
        tokens = f"{usage['input_tokens']} in, {usage['output_tokens']} out ({usage['source']}"
        tokens += f", confidence {usage['confidence']:.2f})" if usage["source"] == "estimated" else ")"
    text = s["text"] if len(s["text"]) < 400 else s["text"][:400] + "…"
    lines = [
        f"{s['provider']} · {s['api']} · span {s['span']['name']} ({s['span']['status']})",
        f"text:   {text or '(none)'}",
        f"TTFC:   {with_unit(attrs.get('gen_ai.response.time_to_first_chunk'), 's')}",
        f"chunks: {s['chunks']}",
        f"usage:  {tokens}",
        f"end:    {attrs.get('steer.stream.end', '-')}"
        + (f" (finish: {', '.join(s['finish_reasons'])})" if s["finish_reasons"] else ""),
    ]
    for call in s["tool_calls"]:
        lines.append(f"tool call: {call['name']}({json.dumps(call['arguments'], ensure_ascii=False)})")
    if s.get("error"):
        err = s["error"]
        lines.append(f"error:  {err['type']}: {err['message']}" + (" (retryable)" if err["retryable"] else ""))
    lines.append("events: " + ", ".join(f"{n} {name.replace('Stream', '').replace('Event', '').lower()}"
                                        for name, n in s["events"].items()))
    lines.append("metrics:")
    lines += [f"  {line}" for line in metrics]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
