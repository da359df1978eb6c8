"""Instruction counts of issue 17's additions (steer.context, cost, live stall detection), under callgrind.

    .venv/bin/python bench/attach_costs.py [--n 2000]

Each region runs one operation ``n`` times inside ``_operator.call`` (callgrind counts only there; see
bench/instructions.py) after an uncounted warm-up; a region doing nothing gives the loop's own cost,
subtracted. Figures are per operation:

* ``context.get (none)``: what every call pays, no ``steer.context`` around it (one ContextVar.get);
* ``context.get + merges``: inside a block with 3 values + 2 attributes, 1 metric attribute: the get and
  the dict merges a Session does (metric attributes, span attributes, events' metadata);
* ``watchdog add+discard``: what a streaming call pays for live stall detection (per chunk: nothing);
* ``watchdog look``: the watchdog thread's look at one open stream (off every caller's thread);
* ``price (known model)`` / ``price (unknown model)``: pricing one call with genai-prices (end-of-call
  work), the unknown model answered from steer's cache of misses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instructions import callgrind_regions  # noqa: E402

CHILD = r"""
import operator, time
import steer
from steer.attached import CURRENT
from steer.processing import cost
from steer.watchdog import Watchdog
from time import perf_counter_ns

N = {n}
base = {{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "server.address": "api.openai.com", "server.port": 443}}
usage = steer.Usage(input_tokens=1200, output_tokens=300, cache_read_input_tokens=400, source="reported")
when = time.time_ns()


class Stream:  # what the watchdog needs of a Session
    stall_after_ns = 30 * 10**9
    t_last = 0
    t0 = perf_counter_ns()

    def watch(self, now):
        last = self.t_last or self.t0
        if now - last <= self.stall_after_ns:
            return


def nothing():
    for _ in range(N):
        pass


def get_none():
    get = CURRENT.get
    for _ in range(N):
        get()


def get_and_merge():
    get = CURRENT.get
    for _ in range(N):
        a = get()
        if a is not None:
            m = {{**a.metric_attributes, **base}}
            s = dict(a.values)
            s.update(base)
            md = {{**a.values, "trace_id": "x", "span_id": "y"}}


dog = Watchdog()
dog._thread = object()  # counted without a thread: only the set operations
stream = Stream()


def add_discard():
    for _ in range(N):
        dog.add(stream)
        dog.discard(stream)


def look():
    now = perf_counter_ns()
    for _ in range(N):
        stream.watch(now)


def price_known():
    for _ in range(N // 20):
        cost.price("openai", "gpt-4o", usage, when)


def price_unknown():
    for _ in range(N):
        cost.price("openai", "acme-finetune-7", usage, when)


for fn in (nothing, get_none, add_discard, look, price_known, price_unknown):
    fn()  # warm-up, uncounted (loads genai-prices, fills its lookup caches)
operator.call(nothing)
operator.call(get_none)
with steer.context(user_id="u-7", session_id="s-42", conversation_id="c-1", attributes={{"tenant": "acme", "tier": 2}},
                   metric_attributes=["tenant"]):
    get_and_merge()
    operator.call(get_and_merge)
operator.call(add_discard)
operator.call(look)
operator.call(price_known)
operator.call(price_unknown)
"""

NAMES = ["loop", "context.get (none)", "context.get + merges", "watchdog add+discard", "watchdog look",
         "price (known model)", "price (unknown model)"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    _, counts = callgrind_regions(CHILD.format(n=args.n), len(NAMES))
    loop = counts[0]["Ir"] / args.n
    rows = {}
    for name, row in zip(NAMES[1:], counts[1:]):
        n = args.n // 20 if name == "price (known model)" else args.n
        rows[name] = round(row["Ir"] / n - loop)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
