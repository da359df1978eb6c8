"""Fuzzing (hypothesis): the SSE decoder, the raw-body framers, every provider decoder (through the
real SDKs and through raw httpx) and the JSON tracker, on random bodies and on recorded bodies
mutated the ways real streams break. Nothing escapes steer's seam — the caller sees what it would
see without steer, every call still ends exactly one span — and memory stays bounded.

Sizes: CI runs ``FUZZ_EXAMPLES`` examples per test; ``-m heavy`` runs ``HEAVY_EXAMPLES``. Each test
prints how many cases it ran (``pytest -s``); docs/reliability.md records the totals.
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Any, Callable, Dict, List, Tuple

import anthropic
import httpx
import httpx2
import openai
import pytest
from google import genai
from google.genai import types as genai_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import steer
from recordings import request_kwargs
from steer.processing.json_stream import JsonStreamTracker, parse_arguments
from steer.providers.httpx_sse import MAX_FRAME_CHARS, JsonArrayFrames, SSEFrames, WholeJson
from steer.tools.replay.transport import BASE_URLS
from steer.sse import SSEDecoder

from .checks import HEAVY, active_streams, internal_errors, otlp_complaints, seam_errors
from .mutations import RECORDINGS, SSE_RECORDINGS, any_recording, byte_mutations, mutated_body, pieces

# Strategies over whole recordings make hypothesis warn that their repr is large: expected here.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

FUZZ_EXAMPLES = 150
HEAVY_EXAMPLES = 3000
SIZES = [FUZZ_EXAMPLES, pytest.param(HEAVY_EXAMPLES, marks=HEAVY)]
SIZE_IDS = ["ci", "full"]


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None, derandomize=n == FUZZ_EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


def report(name: str, cases: int, **extra: Any) -> None:
    print(f"\nfuzz {name}: {cases} cases {extra if extra else ''}")


def any_body() -> st.SearchStrategy[bytes]:
    random = st.binary(max_size=2048)
    recorded = any_recording.flatmap(mutated_body)
    raw_recorded = any_recording.flatmap(lambda r: byte_mutations(r["response"]["body"].encode()))
    return st.one_of(random, recorded, raw_recorded)


# -- 1. the SSE decoder -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES, ids=SIZE_IDS)
def test_sse_decoder(n: int) -> None:
    """Never raises; the events do not depend on where the body was cut; with a cap, what it holds
    stays under the cap plus one piece."""
    count = [0]

    @fuzz_settings(n)
    @given(body=any_body(), data=st.data(), cap=st.sampled_from([None, 64, 1024]))
    def check(body: bytes, data: Any, cap: Any) -> None:
        count[0] += 1
        parts = data.draw(pieces(body))
        whole = SSEDecoder(max_event_chars=cap)
        expected = whole.feed(body) + whole.flush()
        decoder, got = SSEDecoder(max_event_chars=cap), []
        for part in parts:
            got += decoder.feed(part)
            if cap is not None:  # what it holds between feeds never exceeds the cap
                assert sum(map(len, decoder._partial)) + sum(map(len, decoder._data)) <= cap
        got += decoder.flush()
        if cap is None:
            assert got == expected
        else:  # a capped decoder never hands out an event longer than the cap plus one piece
            assert all(len(e.data) <= cap + max(map(len, parts)) for e in got)

    check()
    report("sse_decoder", count[0])


# -- 2. the raw-body framers (raw httpx path) -----------------------------------------------------------
@pytest.mark.parametrize("n", SIZES, ids=SIZE_IDS)
def test_framers(n: int) -> None:
    """SSE, JSON-array and whole-JSON framers: never raise, same frames however the bytes are cut
    (a UTF-8 character split between reads stays whole)."""
    count = [0]

    def frames_of(framer: Any, parts: List[bytes]) -> List[Tuple[str, Any]]:
        out = []
        for part in parts:
            out += framer.feed(part)
        out += framer.flush()
        return [(name, json.dumps(v._d if hasattr(v, "_d") else v, sort_keys=True, default=repr)) for name, v in out]

    @fuzz_settings(n)
    @given(body=any_body(), data=st.data(), kind=st.sampled_from([SSEFrames, JsonArrayFrames, WholeJson]))
    def check(body: bytes, data: Any, kind: Any) -> None:
        count[0] += 1
        parts = data.draw(pieces(body))
        one, many = kind(), kind()
        assert frames_of(many, parts) == frames_of(one, [body])
        assert many.bad == one.bad

    check()
    report("framers", count[0])


# -- 3. every provider decoder through raw httpx (the whole seam: tee -> framer -> decoder -> Session) --
RAW_PATHS = {"openai.chat.completions": "/v1/chat/completions", "openai.completions": "/v1/completions",
             "openai.responses": "/v1/responses", "anthropic.messages": "/v1/messages"}


def raw_url(recording: Dict[str, Any]) -> str:
    base = BASE_URLS.get(recording["provider"], BASE_URLS["openai"]).split("/", 3)
    if recording["api"].startswith("google"):
        return "/".join(base[:3]) + recording["request"]["path"]
    return "/".join(base[:3]) + RAW_PATHS[recording["api"]]


@pytest.mark.parametrize("n", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("hx", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_raw_path(n: int, hx: Any, instrumented: Any) -> None:
    """The application reads exactly the bytes served; each call ends one span; nothing raises."""
    telemetry = instrumented()
    count = [0]

    @fuzz_settings(n)
    @given(recording=any_recording, data=st.data())
    def check(recording: Dict[str, Any], data: Any) -> None:
        count[0] += 1
        before = _state(telemetry)  # per-example deltas: a failure is pinned on the example that caused it
        body = data.draw(mutated_body(recording))
        parts = data.draw(pieces(body))

        def handler(request: Any) -> Any:
            return hx.Response(200, headers={"content-type": recording["response"]["content_type"] or "text/event-stream"},
                               stream=_Body(hx, parts), request=request)

        with hx.Client(transport=hx.MockTransport(handler)) as client:
            request_body = dict(recording["request"]["body"] or {})
            if not recording["api"].startswith("google"):
                request_body["stream"] = True
            with client.stream("POST", raw_url(recording), json=request_body) as response:
                read = b"".join(response.iter_bytes())
        assert read == body
        assert _state(telemetry) == (before[0] + 1, before[1], before[2])  # one more span; none active; seam fine

    check()
    assert seam_errors(telemetry) == {}
    assert otlp_complaints(telemetry) == []  # whatever the wire carried, it exports
    report(f"raw_path[{hx.__name__}]", count[0], chunks_a_decoder_rejected=internal_errors(telemetry))


def _state(telemetry: Any) -> Tuple[int, int, int]:
    """(spans ended, streams active, internal errors outside the decoders)."""
    return len(telemetry.genai_spans()), active_streams(telemetry), sum(seam_errors(telemetry).values())


def _Body(hx: Any, parts: List[bytes]) -> Any:
    class Body(hx.SyncByteStream):
        def __iter__(self) -> Any:
            yield from parts

    return Body()


# -- 4. every provider decoder through its real SDK: bare vs observed -----------------------------------
class Serve:
    """One httpx2 transport whose body is set per example (the SDK clients are built once)."""

    def __init__(self) -> None:
        self.parts: List[bytes] = []
        self.ctype = "text/event-stream"

    def handler(self, request: Any) -> Any:
        class Body(httpx2.SyncByteStream):
            def __iter__(inner) -> Any:  # noqa: N805
                yield from self.parts

        return httpx2.Response(200, headers={"content-type": self.ctype}, stream=Body(), request=request)

    def client(self) -> Any:
        return httpx2.Client(transport=httpx2.MockTransport(self.handler))


def sdk_clients(serve: Serve) -> Dict[str, Any]:
    http = serve.client()
    return {
        "openai": openai.OpenAI(api_key="x", http_client=http, max_retries=0),
        "anthropic": anthropic.Anthropic(api_key="x", http_client=http, max_retries=0),
        "google": genai.Client(api_key="x", http_options=genai_types.HttpOptions(httpx_client=http)),
    }


def sdk_call(clients: Dict[str, Any], recording: Dict[str, Any]) -> Any:
    api = recording["api"]
    if api.startswith("google"):
        return clients["google"].models.generate_content_stream(model=recording["model"] or "gemini", contents="hi")
    if api == "anthropic.messages":
        resource = clients["anthropic"].messages
        kwargs = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    else:
        c = clients["openai"]
        resource = {"openai.chat.completions": c.chat.completions, "openai.completions": c.completions,
                    "openai.responses": c.responses}[api]
        kwargs = request_kwargs(recording, resource.__class__.create)  # __class__: also through a proxy
        kwargs.setdefault("model", "m")
        if api == "openai.chat.completions":
            kwargs.setdefault("messages", [{"role": "user", "content": "hi"}])
        elif api == "openai.completions":
            kwargs.setdefault("prompt", "hi")
    kwargs["stream"] = True
    return resource.create(**kwargs)


def read_all(make: Callable[[], Any]) -> Tuple[List[str], Any]:
    items: List[str] = []
    try:
        for item in make():
            items.append(repr(item))
    except Exception as exc:  # what the caller sees, compared bare vs observed
        return items, (type(exc), str(exc))
    return items, None


@pytest.mark.parametrize("n", SIZES, ids=SIZE_IDS)
def test_sdk_path(n: int, telemetry: Any) -> None:
    """Mutated recorded streams through each real SDK, bare and under ``steer.wrap``: the caller sees
    the same items and the same exception; every call ends exactly one span."""
    serve = Serve()
    bare = sdk_clients(serve)
    observed = {k: steer.wrap(v, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
                for k, v in bare.items()}
    count = [0]

    @fuzz_settings(n)
    @given(recording=st.sampled_from(SSE_RECORDINGS), data=st.data())
    def check(recording: Dict[str, Any], data: Any) -> None:
        count[0] += 1
        before = _state(telemetry)
        serve.parts = data.draw(pieces(data.draw(mutated_body(recording))))
        serve.ctype = recording["response"]["content_type"] or "text/event-stream"
        expected = read_all(lambda: sdk_call(bare, recording))
        assert read_all(lambda: sdk_call(observed, recording)) == expected
        assert _state(telemetry) == (before[0] + 1, before[1], before[2])

    check()
    assert seam_errors(telemetry) == {}
    assert otlp_complaints(telemetry) == []
    report("sdk_path", count[0], chunks_a_decoder_rejected=internal_errors(telemetry))


# -- 5. the JSON tracker --------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=40,
)


@pytest.mark.parametrize("n", SIZES, ids=SIZE_IDS)
def test_json_tracker(n: int) -> None:
    """A JSON document cut anywhere is tracked to the same value and the same objects; a mutated or
    truncated one never raises (repair or a flag, never an exception)."""
    count = [0]

    @fuzz_settings(n)
    @given(doc=st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=6),
                         st.lists(json_values, max_size=6)),
           data=st.data(), indent=st.sampled_from([None, 2]), ascii_only=st.booleans())
    def check(doc: Any, data: Any, indent: Any, ascii_only: bool) -> None:
        count[0] += 1
        text = json.dumps(doc, indent=indent, ensure_ascii=ascii_only)
        cuts = sorted(set(data.draw(st.lists(st.integers(0, len(text)), max_size=24))))
        bounds = [0, *cuts, len(text)]
        tracker = JsonStreamTracker()
        for a, b in zip(bounds, bounds[1:]):
            tracker.feed(text[a:b])
        result = tracker.finish()
        assert result.valid and result.value == doc
        assert result.objects == ([doc] if isinstance(doc, dict) else [e for e in doc if isinstance(e, dict)])
        broken = data.draw(byte_mutations(text.encode())).decode("utf-8", "replace")
        mutated = JsonStreamTracker()
        for k in range(0, len(broken), 7):
            mutated.feed(broken[k:k + 7])
            mutated.partial()
        mutated.finish(truncated=data.draw(st.booleans()))
        parse_arguments(broken)

    check()
    report("json_tracker", count[0])


# -- 6. hostile input: bounded memory --------------------------------------------------------------------
MB = 1024 * 1024


def peak_mb(feed: Callable[[Any], Any], parts: Any) -> float:
    tracemalloc.start()
    try:
        for part in parts:
            feed(part)
        return tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", ["endless_line", "data_without_blank_line", "never_closing_element", "deep_array",
                                  "many_elements"])
def test_framers_memory_is_bounded(case: str) -> None:
    """32 MB of hostile body through a framer capped at 1 MB holds about 1 MB, never the body."""
    piece = b"x" * (64 * 1024)
    n = 32 * MB // len(piece)
    framers = {
        "endless_line": (SSEFrames(MB), [b"data: "] + [piece] * n),
        "data_without_blank_line": (SSEFrames(MB), [b"data: " + piece + b"\n"] * n),
        "never_closing_element": (JsonArrayFrames(MB), [b'[{"a": "'] + [piece] * n),
        "deep_array": (JsonArrayFrames(MB), [b"[" * len(piece)] * n),
        "many_elements": (JsonArrayFrames(MB), [b"["] + [b'{"a": "' + piece[:1000] + b'"},'] * n),
    }
    framer, parts = framers[case]
    assert peak_mb(framer.feed, parts) < 4, case
    framer.flush()
    assert MAX_FRAME_CHARS <= 64 * MB  # the production cap is finite too


@pytest.mark.parametrize("case", ["deep_nesting", "huge_string", "deep_objects"])
def test_hostile_json_is_bounded(case: str) -> None:
    """The JSON tracker stops at its depth and size bounds: an error flag, no growth, no exception."""
    piece = 64 * 1024
    inputs = {
        "deep_nesting": ["[" * piece] * 256,  # 16 M levels
        "huge_string": ['{"a": "'] + ["y" * piece] * 512,  # 32 MB string
        "deep_objects": ['{"a":' * (piece // 5)] * 64,
    }
    tracker = JsonStreamTracker(max_depth=64, max_bytes=4 * MB)
    assert peak_mb(tracker.feed, inputs[case]) < 8
    result = tracker.finish()
    assert result.error in ("json.depth_exceeded", "json.size_exceeded") and not result.valid
    assert parse_arguments("[" * 100_000) == ("[" * 100_000, False)
    assert parse_arguments('{"a":' * 100_000)[1] is False
