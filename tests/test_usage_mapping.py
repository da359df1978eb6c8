"""``Usage`` keeps its typed fields and also reads as a read-only mapping of its token counts, with the
OpenAI-style aliases the seed events guide uses (``usage.get('prompt_tokens')``, ``dict(event.usage)``),
on every event that carries usage, through the real SDKs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Dict, List

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

import steer
from steer.tools.devserver import DevServer
from steer.events import StreamCompleteEvent, StreamUsageEvent, Usage

USER = [{"role": "user", "content": "hi"}]
_KEEP: List[Any] = []


def test_keys_are_the_known_counts_and_aliases_read_them() -> None:
    usage = Usage(input_tokens=12, output_tokens=30, total_tokens=42, reasoning_tokens=0, source="reported", confidence=1.0)
    assert isinstance(usage, Mapping)
    # Only counts that are known are listed, each once, in a fixed order; 0 is a known count.
    assert list(usage) == ["input_tokens", "output_tokens", "total_tokens", "reasoning_tokens"]
    assert dict(usage) == {"input_tokens": 12, "output_tokens": 30, "total_tokens": 42, "reasoning_tokens": 0}
    assert len(usage) == 4
    assert usage["prompt_tokens"] == usage.get("prompt_tokens") == 12
    assert usage["completion_tokens"] == usage.get("completion_tokens", 0) == 30
    assert usage["total_tokens"] == 42
    assert "prompt_tokens" in usage and "completion_tokens" in usage
    # Unknown counts and the non-count fields are not keys.
    assert usage.get("cache_read_input_tokens") is None and "cache_read_input_tokens" not in usage
    for key in ("source", "confidence", "method", "is_estimated", "nonsense"):
        assert key not in usage
        with pytest.raises(KeyError):
            usage[key]
    assert Usage(source="none").get("completion_tokens", 0) == 0
    assert dict(Usage(source="none")) == {}


def test_it_is_read_only_as_a_mapping() -> None:
    usage = Usage(input_tokens=1, output_tokens=2)
    with pytest.raises(TypeError):
        usage["input_tokens"] = 5  # type: ignore[index]
    with pytest.raises(TypeError):
        del usage["input_tokens"]  # type: ignore[attr-defined]
    for name in ("update", "pop", "popitem", "setdefault", "clear"):
        assert not hasattr(usage, name)
    with pytest.raises(AttributeError):
        usage.update({"input_tokens": 5})  # type: ignore[attr-defined]
    assert usage.input_tokens == 1


def test_attribute_access_is_unchanged() -> None:
    usage = Usage(input_tokens=3, output_tokens=4, source="estimated", confidence=0.8, method="heuristic:chars")
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (3, 4, None)
    assert usage.is_estimated and usage.source == "estimated" and usage.confidence == 0.8
    assert usage == Usage(input_tokens=3, output_tokens=4, source="estimated", confidence=0.8, method="heuristic:chars")
    assert usage != Usage(input_tokens=3, output_tokens=4)
    assert repr(usage).startswith("Usage(input_tokens=3, output_tokens=4, total_tokens=None")
    assert bool(Usage()) is True  # a Usage is an object that is there, also when it counts nothing
    with pytest.raises(AttributeError):
        usage.unknown_field = 1  # type: ignore[attr-defined]  # still slotted
    with pytest.raises(TypeError):
        hash(usage)  # as before: a mutable dataclass


# -- through the real SDKs: every event that carries usage -------------------------------------------------
def _calls(srv: DevServer, is_async: bool) -> List[Any]:
    """(provider, make the call and read it all) for the three SDKs, streamed and not."""
    if is_async:
        oa = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0)
        an = anthropic.AsyncAnthropic(base_url=srv.anthropic_base_url, api_key="x", max_retries=0)
    else:
        oa = openai.OpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0)
        an = anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key="x", max_retries=0)
    gm = genai.Client(api_key="x", http_options=genai_types.HttpOptions(base_url=srv.gemini_base_url))
    models = gm.aio.models if is_async else gm.models
    _KEEP.append(gm)  # a genai.Client closes its HTTP client when collected
    return [
        ("openai", lambda: oa.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True,
                                                      stream_options={"include_usage": True})),
        ("openai", lambda: oa.chat.completions.create(model="gpt-4o-mini", messages=USER)),
        ("anthropic", lambda: an.messages.create(model="claude-test", max_tokens=50, messages=USER, stream=True)),
        ("anthropic", lambda: an.messages.create(model="claude-test", max_tokens=50, messages=USER)),
        ("gcp.gemini", lambda: models.generate_content_stream(model="gemini-2.0-flash", contents="hi")),
        ("gcp.gemini", lambda: models.generate_content(model="gemini-2.0-flash", contents="hi")),
    ]


async def _drain(result: Any) -> None:
    result = await result
    if hasattr(result, "__aiter__"):
        async for _ in result:
            pass


def _check(provider: str, events: List[Any]) -> None:
    usage_event = next(e for e in events if isinstance(e, StreamUsageEvent))
    complete = next(e for e in events if isinstance(e, StreamCompleteEvent))
    assert usage_event.provider == provider
    for usage in (usage_event.usage, complete.final_usage):
        assert usage is not None and usage.source == "reported"
        as_dict: Dict[str, int] = dict(usage)
        assert as_dict["input_tokens"] == usage.get("prompt_tokens") == usage.input_tokens > 0
        assert as_dict["output_tokens"] == usage.get("completion_tokens", 0) == usage.output_tokens > 0
        assert "prompt_tokens" not in as_dict  # each count listed once
        assert all(type(v) is int for v in as_dict.values())
    assert complete.final_usage.get("completion_tokens", 0) == usage_event.usage["completion_tokens"]
    events.clear()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_usage_events_read_as_the_guide_reads_them(is_async: bool, instrumented: Any) -> None:
    events: List[Any] = []
    instrumented(on_usage=events.append, on_complete=events.append)
    with DevServer(chunk_delay=0) as srv:
        if is_async:
            async def main() -> None:  # one loop for every call: the async clients' pools belong to it
                for provider, call in _calls(srv, True):
                    await _drain(call())
                    _check(provider, events)

            asyncio.run(main())
        else:
            for provider, call in _calls(srv, False):
                result = call()
                for _ in result if hasattr(result, "__next__") or hasattr(result, "response") else ():
                    pass
                _check(provider, events)
