"""What the application attaches to the calls it makes: ``steer.context(...)``.

    with steer.context(session_id="s-42", user_id="u-7", attributes={"tenant": "acme"}, metric_attributes=["tenant"]):
        client.chat.completions.create(...)

The values live in one ContextVar, so they follow the code that runs inside the block: asyncio tasks
created there, ``contextvars.copy_context().run`` and ``asyncio.to_thread`` (a plain thread or a
``ThreadPoolExecutor`` starts from an empty context, as for every ContextVar). Blocks nest: inner
values win, attributes merge, metric attribute names add up.

Everything a call needs is computed here, once per ``with`` (or per decorated call): a Session reads
the ContextVar once and merges ready-made dicts, so attaching costs a call one ``ContextVar.get``.

Metrics get only the keys named in ``metric_attributes`` (each distinct value keys a time series).
A key's values are bounded: the first ``MAX_METRIC_VALUES`` distinct values of a key keep their own
series; later new values are reported as ``_OTHER`` (the span and the events still carry the real
value). So naming ``user.id`` in ``metric_attributes`` cannot blow up a metrics backend.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import threading
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple

CONVERSATION_ID = "gen_ai.conversation.id"  # semconv; Phoenix files it as the session when session.id is absent
USER_ID = "user.id"  # semconv (and OpenInference): Phoenix's user
SESSION_ID = "session.id"  # semconv (and OpenInference): Phoenix's Sessions view groups traces by it
OTHER_VALUE = "_OTHER"
MAX_METRIC_VALUES = 100  # distinct values per metric attribute key, process-wide
MAX_METRIC_VALUE_CHARS = 256


class Attached:
    """The merged values of the enclosing ``steer.context`` blocks, ready for a Session to use."""

    __slots__ = ("values", "metric_names", "metric_attributes")

    def __init__(self, values: Dict[str, Any], metric_names: Tuple[str, ...]) -> None:
        self.values = values  # span attribute name -> value (also the events' metadata)
        self.metric_names = metric_names
        self.metric_attributes = {name: _bounded_metric_value(name, values[name]) for name in metric_names if name in values}


CURRENT: contextvars.ContextVar[Optional[Attached]] = contextvars.ContextVar("steer_context", default=None)


def current() -> Optional[Attached]:
    return CURRENT.get()


class context:
    """``with steer.context(...)`` or ``@steer.context(...)`` (sync and async functions).

    ``conversation_id`` → ``gen_ai.conversation.id`` (only when given), ``user_id`` → ``user.id``,
    ``session_id`` → ``session.id``, ``attributes`` → custom span attributes (names as given);
    ``metric_attributes``: which of those names (custom ones or the three above) metrics carry too.
    Values are OpenTelemetry attribute values (str, bool, int, float, or a list of one of them);
    ``None`` is left out, anything else becomes its ``str()``.
    """

    def __init__(self, conversation_id: Optional[str] = None, user_id: Optional[str] = None,
                 session_id: Optional[str] = None, attributes: Optional[Mapping[str, Any]] = None,
                 metric_attributes: Iterable[str] = ()) -> None:
        values: Dict[str, Any] = {}
        for key, value in (attributes or {}).items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"steer.context: attribute names must be non-empty strings, not {key!r}")
            if value is not None:
                values[key] = _attribute_value(value)
        for key, value in ((CONVERSATION_ID, conversation_id), (USER_ID, user_id), (SESSION_ID, session_id)):
            if value is not None:
                values[key] = str(value)
        if isinstance(metric_attributes, str):
            metric_attributes = (metric_attributes,)
        self._values = values
        self._metric_names = tuple(dict.fromkeys(metric_attributes))
        self._tokens: List[contextvars.Token] = []

    def _merged(self) -> Attached:
        outer = CURRENT.get()
        if outer is None:
            return Attached(dict(self._values), self._metric_names)
        names = tuple(dict.fromkeys(outer.metric_names + self._metric_names))
        return Attached({**outer.values, **self._values}, names)

    # A Ctrl-C (a signal's exception) can land after ``CURRENT.set`` returns and before its token is
    # kept: each entry keeps the value it replaced, and puts that back when the token is lost.
    def __enter__(self) -> "context":
        outer = CURRENT.get()
        try:
            self._tokens.append(CURRENT.set(self._merged()))
        except BaseException:
            CURRENT.set(outer)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        CURRENT.reset(self._tokens.pop())

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # Each call of the decorated function enters the block on its own (its own token), so one
        # decorated coroutine function may run in many tasks at once.
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                outer, token = CURRENT.get(), None
                try:
                    token = CURRENT.set(self._merged())
                    return await fn(*args, **kwargs)
                finally:
                    leave(CURRENT, token, outer)

            return run_async

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            outer, token = CURRENT.get(), None
            try:
                token = CURRENT.set(self._merged())
                return fn(*args, **kwargs)
            finally:
                leave(CURRENT, token, outer)

        return run


def leave(var: contextvars.ContextVar, token: Optional[contextvars.Token], replaced: Any) -> None:
    """Undo ``var.set`` by its token; without one (a signal's exception landed between the ``set`` and the
    token being kept) put back ``replaced``, the value it had. steer.context and the call flag use it."""
    if token is not None:
        var.reset(token)
    else:
        var.set(replaced)


def _attribute_value(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        items = [v if isinstance(v, (str, bool, int, float)) else str(v) for v in value if v is not None]
        return items if len({type(v) for v in items}) <= 1 else [str(v) for v in items]  # OTLP arrays are homogeneous
    return str(value)


_seen: Dict[str, Set[Any]] = {}
_seen_lock = threading.Lock()


def _bounded_metric_value(name: str, value: Any) -> Any:
    """The value itself while the key has had fewer than MAX_METRIC_VALUES distinct values, else _OTHER."""
    if isinstance(value, list):
        value = ",".join(map(str, value))
    if isinstance(value, str):
        value = value[:MAX_METRIC_VALUE_CHARS]
    seen = _seen.get(name)
    if seen is not None and value in seen:
        return value
    with _seen_lock:
        seen = _seen.setdefault(name, set())
        if value in seen or len(seen) < MAX_METRIC_VALUES:
            seen.add(value)
            return value
    return OTHER_VALUE


def _after_fork_in_child() -> None:
    global _seen_lock
    _seen_lock = threading.Lock()  # another thread may have held it at fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
