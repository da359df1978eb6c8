"""The recorded provider streams in ../shared/fixtures/streams, and transports that serve them.

A recording is served to the REAL SDK over an httpx (or httpx2) transport: the body arrives in
pieces, one SSE event per read (a fixed size for JSON bodies), like a server flushing per token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "streams"


def load(path: Any) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = FIXTURES / path
    data = json.loads(path.read_text())
    data["_path"] = str(path)
    data["_name"] = f"{path.parent.name}/{path.name}"
    return data


def all_recordings(api: Optional[str] = None) -> List[Dict[str, Any]]:
    found = [load(p) for p in sorted(FIXTURES.glob("*/*.json"))]
    return [r for r in found if api is None or r["api"] == api]


def ids(recordings: List[Dict[str, Any]]) -> List[str]:
    return [r["_name"] for r in recordings]


def body_pieces(recording: Dict[str, Any]) -> List[bytes]:
    """The body split where a server would flush: after each SSE event (blank line), or in 512-byte reads."""
    body: str = recording["response"]["body"]
    raw = body.encode()
    ctype = (recording["response"].get("content_type") or "").lower()
    if "json" in ctype and "event-stream" not in ctype:
        return [raw[i:i + 512] for i in range(0, len(raw), 512)] or [b""]
    pieces, start = [], 0
    for sep in (b"\r\n\r\n", b"\n\n"):
        if sep in raw:
            break
    else:
        return [raw]
    while True:
        end = raw.find(sep, start)
        if end < 0:
            if start < len(raw):
                pieces.append(raw[start:])
            return pieces
        pieces.append(raw[start:end + len(sep)])
        start = end + len(sep)


def content_type(recording: Dict[str, Any]) -> str:
    ctype = recording["response"].get("content_type")
    if ctype:
        return ctype
    body = recording["response"]["body"].lstrip()
    return "application/json" if body.startswith(("{", "[")) else "text/event-stream"


def _response(httpx_mod: Any, recording: Dict[str, Any], request: Any, is_async: bool) -> Any:
    pieces = body_pieces(recording)
    headers = {"content-type": content_type(recording), "x-request-id": "req_recorded"}
    if is_async:
        class _ABody(httpx_mod.AsyncByteStream):
            async def __aiter__(self) -> Any:
                for p in pieces:
                    yield p

        stream: Any = _ABody()
    else:
        class _Body(httpx_mod.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                yield from pieces

        stream = _Body()
    return httpx_mod.Response(recording["response"]["status"], headers=headers, stream=stream, request=request)


class Served:
    """Serves one recording for every request and remembers the requests it saw."""

    def __init__(self, recording: Dict[str, Any], httpx_mod: Any = None) -> None:
        import httpx

        self.recording = recording
        self.httpx = httpx_mod or httpx
        self.requests: List[Any] = []

    def _handle(self, request: Any) -> Any:
        self.requests.append(request)
        return _response(self.httpx, self.recording, request, is_async=False)

    async def _ahandle(self, request: Any) -> Any:
        self.requests.append(request)
        return _response(self.httpx, self.recording, request, is_async=True)

    def client(self) -> Any:
        return self.httpx.Client(transport=self.httpx.MockTransport(self._handle))

    def async_client(self) -> Any:
        return self.httpx.AsyncClient(transport=self.httpx.MockTransport(self._ahandle))


def request_kwargs(recording: Dict[str, Any], method: Any = None) -> Dict[str, Any]:
    """The recorded request body as keyword arguments of the SDK ``method``: parameters the method
    does not name (provider extensions such as OpenRouter's ``reasoning``) go in ``extra_body``."""
    import inspect

    body = dict(recording["request"]["body"] or {})
    if method is None:
        return body
    names = set(inspect.signature(method).parameters)
    known = {k: v for k, v in body.items() if k in names}
    extra = {k: v for k, v in body.items() if k not in names}
    if extra:
        known["extra_body"] = extra
    return known
