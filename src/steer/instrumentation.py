"""Composition root: builds the pipeline from settings, applies and reverts the patches.

``instrument()`` is idempotent: patches are applied once; calling it again replaces the options (a
new Runtime) for calls that start afterwards. Calls in flight keep the Runtime they started with,
so ``instrument()``/``uninstrument()`` on one thread never disturbs a stream on another.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import wrapt

from steer.callbacks import Listeners
from steer.config import UNSET, Settings, load_settings
from steer.pipeline import Runtime
from steer.telemetry import background
from steer.wrapping.calls import async_wrapper, sync_wrapper
from steer.wrapping.registry import all_targets
from steer.wrapping.specs import Target

log = logging.getLogger("steer")


@dataclass
class _State:
    runtime: Optional[Runtime] = None
    # (owner class, attribute, the exact object found in the class __dict__) for exact restoration
    patches: Dict[Tuple[str, str, str], Tuple[Any, str, Any]] = field(default_factory=dict)
    status: Dict[str, str] = field(default_factory=dict)
    hooked: Set[Tuple[str, str, str]] = field(default_factory=set)  # targets with a post-import hook
    peers: Dict[str, List[str]] = field(default_factory=dict)  # other instrumentation -> targets it wraps too
    warned: Set[str] = field(default_factory=set)  # peers already warned about (once per process)


class InstrumentationStatus(Dict[str, str]):
    """Each known target -> "patched", "waiting for import", "sdk not installed" or why it could not be
    patched (a plain dict, as before), plus ``peers``: every other GenAI instrumentation found wrapping
    the same SDK methods -> those methods (docs/telemetry.md, "Living with other instrumentations")."""

    def __init__(self, targets: Dict[str, str], peers: Dict[str, List[str]]) -> None:
        super().__init__(targets)
        self.peers = peers

    @property
    def patched(self) -> List[str]:
        return [target for target, status in self.items() if status == "patched"]


_STATE = _State()
_LOCK = threading.RLock()


def current_runtime() -> Optional[Runtime]:
    return _STATE.runtime


def build_runtime(
    *,
    providers: Any = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    capture_content: Any = None,
    estimate_usage: Optional[bool] = True,
    on_start: Optional[Callable[..., Any]] = None,
    on_delta: Optional[Callable[..., Any]] = None,
    on_usage: Optional[Callable[..., Any]] = None,
    on_complete: Optional[Callable[..., Any]] = None,
    on_error: Optional[Callable[..., Any]] = None,
    event_processor: Any = None,
    content_max_chars: Optional[int] = None,
    redact: Optional[Callable[[str], str]] = None,
    chunk_gap_metric: Optional[str] = None,
    provider_name: Optional[str] = None,
    json_max_depth: Optional[int] = None,
    json_max_bytes: Optional[int] = None,
    stall_after: Any = UNSET,
    on_stall: Optional[Callable[..., Any]] = None,
    cost: Optional[bool] = None,
    estimates_in_usage_attributes: Optional[bool] = None,
    finish_in_background: Optional[bool] = None,
) -> Runtime:
    settings = load_settings(
        providers=providers, capture_content=capture_content, estimate_usage=estimate_usage,
        content_max_chars=content_max_chars, redact=redact, chunk_gap_metric=chunk_gap_metric,
        provider_name=provider_name, json_max_depth=json_max_depth, json_max_bytes=json_max_bytes,
        stall_after=stall_after, cost=cost, estimates_in_usage_attributes=estimates_in_usage_attributes,
        finish_in_background=finish_in_background,
    )
    from steer import otel_setup

    tracer_provider, meter_provider = otel_setup.resolve_providers(tracer_provider, meter_provider)
    if settings.emit_event:  # logs are set up only for the details event
        logger_provider = otel_setup.resolve_logger_provider(logger_provider)
    listeners = Listeners(
        {"on_start": on_start, "on_delta": on_delta, "on_usage": on_usage, "on_complete": on_complete, "on_error": on_error,
         "on_stall": on_stall},
        event_processor,
    )
    if settings.estimate_usage:
        from steer.processing.usage import warm_up

        warm_up()  # loads encodings off the hot path, in the background
    if settings.cost:
        from steer.processing import cost as _cost

        _cost.warm_up()  # genai-prices and its data, off every caller's path
    return Runtime(settings, tracer_provider, meter_provider, listeners, logger_provider)


def instrument(**options: Any) -> None:
    """Patch every installed provider SDK (see ``steer.instrument`` for the options)."""
    with _LOCK:
        _STATE.runtime = build_runtime(**options)
    _patch()


def _patch() -> None:
    with _LOCK:
        runtime = _STATE.runtime
        if runtime is None:
            return
        hook, apply_now = _plan(all_targets(runtime.settings.providers))
    # Outside the lock: registering a hook may run it at once, and patching imports the SDK module,
    # which waits for an import of it in progress on another thread — whose own post-import hooks
    # (the SDK modules import each other) take _LOCK. Waiting on an import while holding _LOCK is a
    # lock-order deadlock (tests/reliability/test_concurrent_instrument.py found it).
    for target in hook:
        wrapt.register_post_import_hook(lambda module, t=target: _on_import(t), target.module.split(":")[0])
    for target in apply_now:
        _apply(target, current_runtime)


def uninstrument() -> None:
    """Restore every patched attribute exactly, then record the calls that already ended; idempotent."""
    with _LOCK:
        for owner, attribute, original in _STATE.patches.values():
            setattr(owner, attribute, original)
        _STATE.patches.clear()
        _STATE.peers.clear()
        _STATE.runtime = None
    from steer.watchdog import WATCHDOG

    WATCHDOG.stop()  # streams still open lose live stall detection until the next stream opens
    background.flush(5.0)


def instrumentation_status() -> InstrumentationStatus:
    """For each known target: "patched", "waiting for import" (its SDK is not imported yet),
    "sdk not installed", or why it could not be patched ("seam moved: ..."); ``.peers``: the other
    instrumentations seen on the methods steer patched, looked up again now (one may have come after)."""
    with _LOCK:
        _STATE.peers.clear()  # what is on the methods now: a peer may have come, or gone, since
    _scan_peers(list(_STATE.patches))
    return InstrumentationStatus(dict(_STATE.status), {name: list(targets) for name, targets in _STATE.peers.items()})


def stand_aside_for(peer_uninstrument: Callable[[], None]) -> None:
    """Let another instrumentation remove its patches without removing steer's, whichever came first.

    steer restores exactly what it found, the peer restores what it found, and steer patches again
    with the same Runtime: if the peer had wrapped steer's wrapper, or steer the peer's, neither
    undoes the other by mistake.
    """
    with _LOCK:
        runtime = _STATE.runtime
        for owner, attribute, original in _STATE.patches.values():
            setattr(owner, attribute, original)
        _STATE.patches.clear()
        _STATE.peers.clear()
    try:
        peer_uninstrument()
    finally:
        with _LOCK:
            _STATE.runtime = runtime
        _patch()


def _scan_peers(keys: List[Tuple[str, str, str]]) -> None:
    """Look for other instrumentations on these patched methods and on the public methods of the same
    SDKs that peers wrap where steer hooks lower down; record them and warn once about each."""
    from steer.peers import WATCHED, peers_on

    packages = {key[0].split(".")[0] for key in keys}
    for key in [*keys, *(w for w in WATCHED if w[0].split(".")[0] in packages)]:
        package = key[0].split(".")[0]
        if package.startswith("httpx") or key[0] not in sys.modules:  # httpx instrumentations trace HTTP, not GenAI
            continue
        owner: Any = sys.modules[key[0]]
        for part in key[1].split("."):
            owner = getattr(owner, part, None)
        if owner is not None:
            _note_peers(key, peers_on(getattr(owner, "__dict__", {}).get(key[2]), package))


def _note_peers(key: Tuple[str, str, str], names: List[str]) -> None:
    target = ".".join(key)
    for name in names:
        targets = _STATE.peers.setdefault(name, [])
        if target not in targets:
            targets.append(target)
        if name not in _STATE.warned:
            _STATE.warned.add(name)
            log.warning(
                "steer: %s also instruments %s: each call is traced twice (two spans, metrics counted twice). "
                "Keep one: uninstrument or uninstall it, or leave steer out (docs/telemetry.md, "
                "'Living with other instrumentations').", name, target)


def _plan(targets: List[Target]) -> Tuple[List[Target], List[Target]]:
    """Which targets need a post-import hook, and which to patch now (their SDK is imported). Under _LOCK.

    instrument() never imports an SDK itself: importing anthropic and google-genai costs seconds,
    and an application that uses only one SDK must not pay for the others. wrapt's post-import hooks
    cannot be removed, so a hook that fires after uninstrument() (or for a provider turned off since)
    does nothing.
    """
    hook: List[Target] = []
    apply_now: List[Target] = []
    for target in targets:
        key = (target.module, target.owner, target.attribute)
        if key in _STATE.patches:
            continue
        if key not in _STATE.hooked:  # the hook runs at once if the module is already imported
            _STATE.hooked.add(key)
            _STATE.status.setdefault(".".join(key), "waiting for import")
            hook.append(target)
        elif target.module in sys.modules:
            apply_now.append(target)
    return hook, apply_now


def _on_import(target: Target) -> None:
    # Runs inside the application's import of the SDK module (any thread); never raises into it.
    runtime = _STATE.runtime
    if runtime is not None and target.enabled(runtime.settings.providers):
        try:
            _apply(target, current_runtime)
        except Exception as exc:  # an import hook must never break the application's import
            _STATE.status[".".join((target.module, target.owner, target.attribute))] = f"failed: {exc!r}"


def _resolve_owner(target: Target) -> Any:
    owner: Any = importlib.import_module(target.module)
    for part in target.owner.split("."):
        owner = getattr(owner, part)
    return owner


def _apply(target: Target, get_runtime: Callable[[], Optional[Runtime]]) -> None:
    key = (target.module, target.owner, target.attribute)
    name = ".".join(key)
    if key in _STATE.patches:
        return
    try:
        owner = _resolve_owner(target)  # may wait for another thread's import: never under _LOCK
    except ImportError:
        _STATE.status[name] = "sdk not installed"
        return
    except AttributeError as exc:
        _STATE.status[name] = f"seam moved: {exc}"
        log.warning("steer: cannot patch %s (%s); this SDK version moved it", name, exc)
        return
    with _LOCK:  # check-and-patch is atomic: two threads never wrap the same method twice
        if key in _STATE.patches or _STATE.runtime is None:  # done meanwhile, or uninstrumented since
            return
        original = owner.__dict__.get(target.attribute)
        if original is None:
            _STATE.status[name] = "seam moved: attribute missing"
            log.warning("steer: cannot patch %s: attribute missing in this SDK version", name)
            return
        factory = target.wrapper_factory or (async_wrapper if target.is_async else sync_wrapper)
        setattr(owner, target.attribute, wrapt.FunctionWrapper(original, factory(target.spec, get_runtime)))
        _STATE.patches[key] = (owner, target.attribute, original)
        _STATE.status[name] = "patched"
    _scan_peers([key])


def patched_targets() -> List[str]:
    return [".".join(k) for k in _STATE.patches]
