"""`python -m steer.tools.devserver --port 8787`: run the fake provider until interrupted."""

from __future__ import annotations

import argparse
import threading

from .faults import FAULTS
from .server import DevServer


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steer.tools.devserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument("--ttft", type=float, default=None, help="seconds before the first chunk")
    parser.add_argument("--tokens-per-second", type=float, default=None)
    parser.add_argument("--chunk-delay", type=float, default=None, help="seconds between chunks (0: never sleep)")
    parser.add_argument("--chunks", type=int, default=12, help="words in a text answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault", default=None, help="default fault: " + ", ".join(FAULTS))
    parser.add_argument("--recording", default=None, help="serve this recording to every request")
    args = parser.parse_args(argv)
    server = DevServer(host=args.host, port=args.port, ttft=args.ttft, tokens_per_second=args.tokens_per_second,
                       chunk_delay=args.chunk_delay, chunks=args.chunks, seed=args.seed, fault=args.fault,
                       recording=args.recording)
    with server:
        print(f"steer devserver listening on {server.base_url}")
        print(f"  OpenAI     base_url={server.openai_base_url}")
        print(f"  Anthropic  base_url={server.anthropic_base_url}")
        print(f"  Gemini     http_options.base_url={server.gemini_base_url}")
        print("  per-request fault header: x-steer-fault: <" + "|".join(FAULTS) + ">", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
