"""``steer.context``: conversation, user, session and custom attributes on every span, the named ones on
metrics, all of them in every event's metadata — through the real SDKs against the loopback devserver,
the raw httpx path and ``steer.wrap``; following asyncio tasks and copied contexts."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any, Dict, Iterator, List

import anthropic
import httpx
import openai
import pytest

import steer
from steer import attached
from steer.tools.devserver import DevServer

USER = [{"role": "user", "content": "Say something"}]


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer(chunk_delay=0) as srv:
        yield srv


def chat(srv: DevServer, client: Any = None) -> None:
    client = client or openai.OpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0)
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True,
                                            stream_options={"include_usage": True}):
        pass


async def achat(srv: DevServer) -> None:
    client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="x", max_retries=0)
    async for _ in await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True):
        pass
    await client.close()


def metric_points(telemetry: Any, name: str = "gen_ai.client.operation.duration") -> List[Dict[str, Any]]:
    return [dict(p.attributes) for p in telemetry.metrics().get(name, [])]


def test_span_metrics_and_events_carry_the_context(server: DevServer, instrumented: Any) -> None:
    events: List[Any] = []
    telemetry = instrumented(on_start=events.append, on_complete=events.append)
    with steer.context(conversation_id="conv-1", user_id="u-7", session_id="s-42",
                       attributes={"tenant": "acme", "tier": 2, "tags": ["a", "b"]}, metric_attributes=["tenant"]):
        chat(server)
    chat(server)  # outside the block: nothing attached
    inside, outside = telemetry.genai_spans()
    assert {k: inside.attributes[k] for k in ("gen_ai.conversation.id", "user.id", "session.id", "tenant", "tier")} == {
        "gen_ai.conversation.id": "conv-1", "user.id": "u-7", "session.id": "s-42", "tenant": "acme", "tier": 2}
    assert list(inside.attributes["tags"]) == ["a", "b"]
    assert not {"gen_ai.conversation.id", "user.id", "session.id", "tenant"} & set(outside.attributes)
    points = metric_points(telemetry)
    assert sorted(p.get("tenant", "-") for p in points) == ["-", "acme"]  # only the named key reaches metrics
    assert not any("user.id" in p or "session.id" in p or "tier" in p for p in points)
    start, complete = events[0], events[1]
    for event in (start, complete):
        assert event.metadata["session.id"] == "s-42" and event.metadata["user.id"] == "u-7"
        assert event.metadata["tenant"] == "acme" and event.metadata["trace_id"]  # the trace ids stay
    assert "session.id" not in events[2].metadata


def test_conversation_id_is_never_invented(server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()
    with steer.context(user_id="u-1"):
        chat(server)
    (span,) = telemetry.genai_spans()
    assert span.attributes["user.id"] == "u-1"
    assert "gen_ai.conversation.id" not in span.attributes and "session.id" not in span.attributes


def test_blocks_nest_inner_values_win_attributes_merge(server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()
    with steer.context(user_id="outer", session_id="s", attributes={"a": 1, "b": 1}, metric_attributes=["a"]):
        with steer.context(user_id="inner", attributes={"b": 2, "c": 3}, metric_attributes=["c"]):
            chat(server)
        chat(server)
    nested, after = telemetry.genai_spans()
    assert (nested.attributes["user.id"], nested.attributes["session.id"]) == ("inner", "s")
    assert (nested.attributes["a"], nested.attributes["b"], nested.attributes["c"]) == (1, 2, 3)
    assert (after.attributes["user.id"], after.attributes["b"]) == ("outer", 1) and "c" not in after.attributes
    points = metric_points(telemetry)
    assert sorted((p.get("a"), p.get("c", 0)) for p in points) == [(1, 0), (1, 3)]


def test_steers_own_names_win_over_custom_attributes(server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()
    with steer.context(attributes={"gen_ai.request.model": "spoofed"}, metric_attributes=["gen_ai.request.model"]):
        chat(server)
    (span,) = telemetry.genai_spans()
    assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert {p["gen_ai.request.model"] for p in metric_points(telemetry)} == {"gpt-4o-mini"}


async def test_async_decorator_and_concurrent_tasks_keep_their_own_values(server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()

    @steer.context(attributes={"job": "batch"})
    async def handle(user: str) -> None:
        with steer.context(user_id=user):
            await asyncio.gather(achat(server), asyncio.create_task(achat(server)))  # a task made inside follows

    await asyncio.gather(*(handle(f"u{i}") for i in range(3)))
    spans = telemetry.genai_spans()
    assert len(spans) == 6
    assert sorted(s.attributes["user.id"] for s in spans) == ["u0", "u0", "u1", "u1", "u2", "u2"]
    assert {s.attributes["job"] for s in spans} == {"batch"}


def test_sync_decorator(server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()

    @steer.context(session_id="decorated")
    def handle() -> str:
        chat(server)
        return "done"

    assert handle() == "done" and handle.__name__ == "handle"
    assert attached.current() is None  # left as it was found
    (span,) = telemetry.genai_spans()
    assert span.attributes["session.id"] == "decorated"


async def test_threads_that_copy_the_context(server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()
    with steer.context(session_id="copied"):
        await asyncio.to_thread(chat, server)
        ctx = contextvars.copy_context()
        worker = threading.Thread(target=ctx.run, args=(chat, server))
        worker.start()
        worker.join()
        bare = threading.Thread(target=chat, args=(server,))  # a plain thread starts from an empty context
        bare.start()
        bare.join()
    sessions = [s.attributes.get("session.id") for s in telemetry.genai_spans()]
    assert sessions == ["copied", "copied", None]


def test_raw_httpx_and_anthropic_calls(server: DevServer, instrumented: Any) -> None:
    telemetry = instrumented()
    with steer.context(session_id="raw", metric_attributes=["session.id"]):
        with httpx.Client() as client:
            body = {"model": "gpt-4o-mini", "messages": USER, "stream": True}
            with client.stream("POST", server.openai_base_url + "/chat/completions", json=body) as response:
                for _ in response.iter_lines():
                    pass
        messages = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="x", max_retries=0)
        messages.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=USER)
    spans = telemetry.genai_spans()
    assert [s.attributes["gen_ai.provider.name"] for s in spans] == ["openai", "anthropic"]
    assert all(s.attributes["session.id"] == "raw" for s in spans)
    assert {p.get("session.id") for p in metric_points(telemetry)} == {"raw"}


def test_wrapped_client(server: DevServer, telemetry: Any) -> None:
    client = steer.wrap(openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0),
                        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    with steer.context(user_id="wrapped", conversation_id="c"):
        chat(server, client)
    (span,) = telemetry.genai_spans()
    assert (span.attributes["user.id"], span.attributes["gen_ai.conversation.id"]) == ("wrapped", "c")


def test_metric_attribute_values_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attached, "MAX_METRIC_VALUES", 3)
    monkeypatch.setattr(attached, "_seen", {})
    seen = []
    for i in range(5):
        with steer.context(user_id=f"user-{i}", metric_attributes=["user.id"]):
            current = attached.current()
            assert current is not None and current.values["user.id"] == f"user-{i}"  # spans keep the real value
            seen.append(current.metric_attributes["user.id"])
    assert seen == ["user-0", "user-1", "user-2", "_OTHER", "_OTHER"]
    with steer.context(user_id="user-1", metric_attributes=["user.id"]):  # a value already seen keeps its series
        assert attached.current().metric_attributes["user.id"] == "user-1"  # type: ignore[union-attr]


def test_values_become_attribute_values() -> None:
    with steer.context(user_id=7, attributes={"obj": object, "none": None, "mixed": [1, "a"], "f": 1.5}):
        values = attached.current().values  # type: ignore[union-attr]
    assert values["user.id"] == "7" and values["obj"] == str(object) and "none" not in values
    assert values["mixed"] == ["1", "a"] and values["f"] == 1.5
    with pytest.raises(TypeError):
        steer.context(attributes={"": 1})
