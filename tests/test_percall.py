"""Per-call costs kept off every call (issue 15): the base-URL parse once per client, and only the
asked-for providers' code imported by instrument()."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, List

from steer.wrapping.specs import parsed_per_base_url


def test_a_base_url_is_parsed_once_per_object() -> None:
    import httpx2

    parsed: List[Any] = []

    def parse(url: Any) -> str:
        parsed.append(url)
        return str(url)

    cached = parsed_per_base_url(parse)
    one, other = httpx2.URL("https://api.openai.com/v1/"), httpx2.URL("https://api.openai.com/v1/")
    assert [cached(one), cached(one), cached(other), cached(one)] == ["https://api.openai.com/v1/"] * 4
    assert [u is one for u in parsed] == [True, False]  # an equal but distinct object is its own key


def test_instrument_imports_only_the_providers_asked_for() -> None:
    code = ("import sys, steer; steer.instrument(providers=['openai']); "
            "print(sorted(m for m in sys.modules if m.startswith('steer.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "steer.wrapping.openai_targets" in out and "steer.providers.openai" in out
    # httpx's send hook serves every SDK group (HTTP attempts), so it is there; other SDKs' targets are not.
    for other in ("steer.wrapping.anthropic_targets", "steer.wrapping.google_targets"):
        assert other not in out, out
