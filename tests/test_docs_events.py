"""Every Python example in docs/events.md runs as written (against the loopback devserver) and prints
what the guide says it shows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest

import steer

DOC = Path(__file__).resolve().parents[1] / "docs" / "events.md"
BLOCKS: List[str] = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)

# What each example must print (matched in order of the blocks), so a silently empty example fails.
EXPECTED = [
    r"^\.+ \d+ chunks, \d+ characters, finish=\['stop'\]$",  # progress indicator
    r"^received \d+ updates: \S",  # async callbacks feeding the caller's queue
    r"^anthropic\s+\S+\s+\d+ output tokens$(?s:.*)^openai\s+gpt-4o-mini\s+\d+ output tokens$(?s:.*)dropped=0",  # analytics
    r"first token after [\d.]+ ms, [\d.]+ chunks/s, [\d.]+ tokens/s \(usage reported\)",  # ttft and throughput
    r"attempt 1: RateLimitError is retryable(?s:.*)attempt 2: InternalServerError is retryable(?s:.*)answer: \S"
    r"(?s:.*)401: AuthenticationError retryable = False",  # retry
    r"^prompt \d+ completion \d+ as a dict: \{'input_tokens': \d+, 'output_tokens': \d+, 'total_tokens': \d+(, '\w+': \d+)*\}$"
    r"(?s:.*)^final completion tokens: [1-9]\d*$",  # usage read as a dict
]


def test_the_guide_has_the_examples_it_promises() -> None:
    assert len(BLOCKS) == len(EXPECTED)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = compile(BLOCKS[index], f"{DOC}:example{index + 1}", "exec")
    try:
        exec(code, {"__name__": "__main__"})
    finally:
        steer.uninstrument()
    out = capsys.readouterr().out
    assert re.search(EXPECTED[index], out, flags=re.M), out
