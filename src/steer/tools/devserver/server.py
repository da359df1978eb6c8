"""`DevServer`: the loopback fake provider, running an asyncio server in a thread.

The server owns its own event loop in a daemon thread so it works the same from
synchronous tests, from async tests (whose loop it must never block or share)
and from the `steer demo` command.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union
from urllib.parse import urlsplit

from . import faults
from .http11 import BadRequest, Request, perform, read_request
from .plan import Delivery, Knobs, json_delivery
from .replay import Replay, load_recording
from .routes import ENDPOINTS, route


class RecordedRequest(NamedTuple):
    method: str
    path: str  # the request target, query included
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


class DevServer:
    """A fake OpenAI / Anthropic / Gemini HTTP server on 127.0.0.1.

    >>> with DevServer(chunk_delay=0) as srv:
    ...     client = openai.OpenAI(base_url=srv.openai_base_url, api_key="x")

    Knobs: `ttft` (seconds to the first chunk), `tokens_per_second` or
    `chunk_delay` (pause between chunks; `chunk_delay=0` never sleeps),
    `chunks` (words in a text answer), `seed` (which words), `fault` (default
    fault, see `faults.FAULTS`), `recording` (serve this recording to every
    request), `replay_chunk_bytes`. A request header `x-steer-fault: <name>`
    (or `none`) overrides the fault; `x-steer-ttft`, `x-steer-chunk-delay`,
    `x-steer-chunks`, `x-steer-seed` override the knobs for that request;
    `x-steer-retry-after-ms` adds that header to HTTP error answers.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ttft: Optional[float] = None,
        tokens_per_second: Optional[float] = None,
        chunk_delay: Optional[float] = None,
        chunks: int = 12,
        seed: int = 0,
        fault: Optional[str] = None,
        recording: Union[str, Path, dict[str, Any], None] = None,
        replay_chunk_bytes: int = 64,
    ) -> None:
        self.host, self.port = host, port
        self.knobs = Knobs.build(ttft=ttft, tokens_per_second=tokens_per_second, chunk_delay=chunk_delay,
                                 chunks=chunks, seed=seed, replay_chunk_bytes=replay_chunk_bytes)
        self.fault = faults.check(fault)
        self.recording = load_recording(recording) if recording is not None else None
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._salt = itertools.count(1)
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopping: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connections = 0
        self._failed: dict[str, int] = {}  # http_NNN_then_ok: failures served in the current run

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> "DevServer":
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                        name="steer-devserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            self._thread = None
            raise RuntimeError(f"steer devserver did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        try:
            loop.call_soon_threadsafe(stopping.set)
        except RuntimeError:  # loop already closed
            pass
        thread.join(10)
        self._thread = None

    def __enter__(self) -> "DevServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _main(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        try:
            # A deep accept backlog: 1,000 clients connecting at once must not
            # overflow it (an overflow costs a 1 s SYN retransmit each).
            server = await asyncio.start_server(self._connection, self.host, self.port, backlog=4096)
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(self._tasks):  # stalled and endless responses end here
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- addresses ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url  # the SDK appends /v1/messages itself

    @property
    def gemini_base_url(self) -> str:
        return self.base_url  # google-genai appends /{api_version}/models/...

    # -- request log -----------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def connection_count(self) -> int:
        """TCP connections accepted so far (shows whether clients reuse them)."""
        return self._connections

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- serving ---------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections += 1
        clean = False
        try:
            while True:
                try:
                    request = await read_request(reader, writer)
                except BadRequest as exc:
                    await perform(_plain_error(exc.status, str(exc)), False, reader, writer)
                    break
                if request is None:
                    clean = True
                    break
                if not await perform(self._dispatch(request), request.keep_alive, reader, writer):
                    break
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request or mid-stream
        except asyncio.CancelledError:
            # Server shutdown. Swallowed on purpose: this task is the top of the
            # connection, and asyncio (3.11) logs a cancelled connection callback.
            pass
        finally:
            self._tasks.discard(task)
            if clean:
                writer.close()
            else:
                writer.transport.abort()

    def _dispatch(self, request: Request) -> Delivery:
        try:
            body = json.loads(request.body) if request.body else None
        except ValueError:
            body = None
        with self._lock:
            self._requests.append(RecordedRequest(request.method, request.target, dict(request.headers), body))
        try:
            knobs = self.knobs.with_headers(request.headers)
            fault = faults.check(request.headers["x-steer-fault"]) if "x-steer-fault" in request.headers \
                else self.fault
        except ValueError as exc:
            return _plain_error(400, str(exc))
        fault = self._flaky(fault)
        salt = next(self._salt)
        if self.recording is not None:
            return faults.deliver(Replay(self.recording, knobs, salt), fault, knobs)
        if request.method == "GET" and urlsplit(request.target).path in ("/", "/health"):
            return json_delivery(200, {"status": "ok", "endpoints": list(ENDPOINTS), "faults": list(faults.FAULTS)})
        wire = route(request.method, request.target, body if isinstance(body, dict) else {}, knobs, salt)
        if wire is None:
            return _plain_error(404, f"steer devserver: no route for {request.method} {request.target}")
        return faults.deliver(wire, fault, knobs)


    def _flaky(self, fault: Optional[str]) -> Optional[str]:
        """``http_NNN[xK]_then_ok``: the fault this request gets (``http_NNN``, or none once K failed)."""
        plan = faults.then_ok(fault)
        if plan is None:
            return fault
        status, failures = plan
        with self._lock:
            served = self._failed.get(fault, 0)  # type: ignore[arg-type]
            if served < failures:
                self._failed[fault] = served + 1  # type: ignore[index]
                return f"http_{status}"
            self._failed.pop(fault, None)  # type: ignore[arg-type]
        return None


def _plain_error(status: int, message: str) -> Delivery:
    # Shaped like an OpenAI error, the most widely understood one.
    return json_delivery(status, {"error": {"message": message, "type": "invalid_request_error",
                                            "param": None, "code": None}})
