"""The recorded provider streams in ../shared/fixtures/streams, and transports that serve them to
the REAL SDKs (steer's own RecordingTransport: one SSE event per read, like a server flushing per
token)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from steer.tools.replay import transport as replay_transport

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


# Serving is the library's own (steer replay uses it too): one SSE event per read.
body_pieces = replay_transport.body_pieces
content_type = replay_transport.content_type


Served = replay_transport.RecordingTransport  # serves one recording to every request, keeps the requests


def request_kwargs(recording: Dict[str, Any], method: Any = None) -> Dict[str, Any]:
    """The recorded request body as keyword arguments of the SDK ``method``: parameters the method
    does not name (provider extensions such as OpenRouter's ``reasoning``) go in ``extra_body``."""
    body = dict(recording["request"]["body"] or {})
    return body if method is None else replay_transport.sdk_kwargs(method, body)
