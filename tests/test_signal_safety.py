"""A Ctrl-C that lands while steer sets its context leaves nothing behind (issue 19).

A signal handler's exception (``KeyboardInterrupt``) is raised between two bytecodes of whatever
runs, so it can land right after ``ContextVar.set`` returns and before its token is stored: inside
``opentelemetry.context.attach`` (steer's span made current) or after ``IN_CALL.set``. Had that
happened before the ``try`` that takes them off, steer's span would stay current in the thread
for good, and every later span there would be its child. A real SIGINT hits that window only by
chance, so it is made certain here: ``attach`` (or ``IN_CALL.set``) does its work, then raises
``KeyboardInterrupt``, once. The caller must get the ``KeyboardInterrupt``; its own span and an
unset ``IN_CALL`` must be current again; steer's span ends once, ``cancelled``. Real SDKs, real
sockets, the devserver; the call wrappers (openai, anthropic) and the generator proxies
(google-genai, whose request goes out on the first step), sync and async.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Iterator, List

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

from reliability.surfaces import SURFACES, close_client
from steer.tools.devserver import DevServer
from steer.wrapping import calls, generator_proxies
from test_cancellation import assert_cancelled

API = ["openai.chat", "anthropic.messages", "gemini.generate_content_stream"]


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer(chunk_delay=0, chunks=4) as srv:
        yield srv


class Interrupted:
    """Counts down to the one call that is interrupted after doing its work."""

    def __init__(self) -> None:
        self.fired = False

    def after(self, value: Any) -> Any:
        if not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return value


class InterruptedVar:
    """``IN_CALL`` whose first ``set`` sets the flag, then is interrupted before handing the token back."""

    def __init__(self, var: contextvars.ContextVar, shot: Interrupted) -> None:
        self.var, self.shot = var, shot

    def get(self) -> Any:
        return self.var.get()

    def set(self, value: Any) -> Any:
        return self.shot.after(self.var.set(value))

    def reset(self, token: Any) -> None:
        self.var.reset(token)


def interrupt(where: str, monkeypatch: Any) -> Interrupted:
    shot = Interrupted()
    if where == "attach":
        real = otel_context.attach
        monkeypatch.setattr(otel_context, "attach", lambda ctx: shot.after(real(ctx)))
    else:
        var = InterruptedVar(calls.IN_CALL, shot)
        monkeypatch.setattr(calls, "IN_CALL", var)
        monkeypatch.setattr(generator_proxies, "IN_CALL", var)
    return shot


@pytest.mark.parametrize("where", ["attach", "in_call_flag"])
@pytest.mark.parametrize("api", API)
def test_interrupt_while_setting_context_sync(api: str, where: str, server: DevServer, instrumented: Any,
                                              monkeypatch: Any) -> None:
    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)
    real_in_call = calls.IN_CALL
    with telemetry.tracer_provider.get_tracer("caller").start_as_current_span("caller") as caller:
        shot = interrupt(where, monkeypatch)
        client = None
        with pytest.raises(KeyboardInterrupt):
            client, opened = SURFACES[api].call(server, {}, False, 30)  # openai, anthropic: the call is made here
            for _ in opened:  # google-genai: the request goes out on the first step
                pass
        monkeypatch.undo()
        assert shot.fired
        assert trace.get_current_span() is caller, "steer's span was left current"
        assert real_in_call.get() is None, "steer's in-call flag was left set"
    assert_cancelled(telemetry, ended)
    assert telemetry.genai_spans()[0].parent.span_id == caller.get_span_context().span_id
    if client is not None:
        client.close()


@pytest.mark.parametrize("where", ["attach", "in_call_flag"])
@pytest.mark.parametrize("api", API)
def test_interrupt_while_setting_context_async(api: str, where: str, server: DevServer, instrumented: Any,
                                               monkeypatch: Any) -> None:
    ended: List[Any] = []
    telemetry = instrumented(on_complete=ended.append, on_error=ended.append)
    real_in_call = calls.IN_CALL

    async def caller_task() -> None:
        with telemetry.tracer_provider.get_tracer("caller").start_as_current_span("caller") as caller:
            shot = interrupt(where, monkeypatch)
            client, opened = SURFACES[api].call(server, {}, True, 30)
            with pytest.raises(KeyboardInterrupt):  # raised inside this task: it stays an ordinary exception here
                async for _ in await opened:
                    pass
            monkeypatch.undo()
            assert shot.fired
            assert trace.get_current_span() is caller, "steer's span was left current"
            assert real_in_call.get() is None, "steer's in-call flag was left set"
        await close_client(client, True)

    asyncio.run(caller_task())
    assert_cancelled(telemetry, ended)


@pytest.mark.parametrize("form", ["with", "decorator", "async_decorator"])
def test_interrupt_while_entering_steer_context(form: str, monkeypatch: Any) -> None:
    """``steer.context`` sets its own ContextVar the same way: an interrupted set is undone."""
    import steer
    from steer import attached

    real = attached.CURRENT
    shot = Interrupted()
    monkeypatch.setattr(attached, "CURRENT", InterruptedVar(real, shot))
    block = steer.context(user_id="u-1")

    async def in_a_task() -> Any:
        with pytest.raises(KeyboardInterrupt):
            await block(asyncio.sleep)(0)
        return real.get()

    if form == "async_decorator":
        assert asyncio.run(in_a_task()) is None, "steer.context's values were left attached"
    else:
        with pytest.raises(KeyboardInterrupt):
            if form == "with":
                with block:
                    pass
            else:
                block(lambda: None)()
        assert real.get() is None, "steer.context's values were left attached"
    assert shot.fired
    monkeypatch.undo()
    with steer.context(user_id="u-2"):  # and it still works
        assert real.get().values == {"user.id": "u-2"}
