"""Just enough HTTP/1.1 over asyncio streams: read a request, perform a Delivery.

Hand-rolled rather than `http.server` because the faults need control below
the HTTP layer: a half-written chunk before closing, an RST instead of a FIN, a
response that never finishes — and 1,000 concurrent streams want one event
loop, not a thread each. Streams use chunked transfer encoding so connections
stay reusable (keep-alive), exactly as provider APIs behind HTTP/1.1 do.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
import zlib
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Optional

from .plan import Delivery

MAX_HEAD = 64 * 1024


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Optional[Request]:
    """The next request on the connection, or None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest(400, "incomplete request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise BadRequest(400, "malformed request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("expect", "").lower() == "100-continue":
        # The client waits for this before sending the body.
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise BadRequest(400, "bad content-length") from None
        body = await reader.readexactly(length) if length > 0 else b""
    encoding = headers.get("content-encoding", "").lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
    except (OSError, zlib.error):
        raise BadRequest(400, "undecodable request body") from None
    return Request(method.upper(), target, version.strip(), headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest(400, "bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded" if status == 529 else "Unknown"


def _head(d: Delivery, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {d.status} {_reason(d.status)}", f"date: {formatdate(usegmt=True)}",
             f"content-type: {d.content_type}"]
    if d.chunked:
        lines += ["transfer-encoding: chunked", "cache-control: no-cache"]
    else:
        lines.append(f"content-length: {d.content_length}")
    lines.append("connection: " + ("keep-alive" if keep_alive else "close"))
    lines += [f"{name}: {value}" for name, value in d.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def perform(d: Delivery, keep_alive: bool, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> bool:
    """Send `d`; True when the connection may serve another request."""
    # Bytes due at the same instant go out in one write: without pacing a whole
    # stream costs one send() instead of one per frame (the load tests' bottleneck).
    pending = [_head(d, keep_alive)]
    for delay, frame in d.frames:
        if delay > 0:  # chunk_delay=0 never touches the timer
            await _flush(writer, pending)
            await asyncio.sleep(delay)
        pending.append(_chunk(frame) if d.chunked else frame)
    if d.ending == "end" and d.chunked:
        pending.append(b"0\r\n\r\n")
    await _flush(writer, pending)
    if d.ending == "end":
        return keep_alive
    if d.ending == "truncate":
        writer.close()  # FIN after what was written: the body is visibly incomplete
    elif d.ending == "reset":
        reset(writer)
    elif d.ending == "stall":
        await _until_client_leaves(reader)
        writer.transport.abort()
    elif d.ending == "endless":
        await _endless(d, reader, writer)
    return False


async def _flush(writer: asyncio.StreamWriter, pending: list[bytes]) -> None:
    if pending:
        writer.write(b"".join(pending))
        pending.clear()
        await writer.drain()


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort with a TCP RST: linger on, timeout 0, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def _until_client_leaves(reader: asyncio.StreamReader) -> None:
    # A stalled response still notices the client hanging up (EOF); server
    # shutdown cancels this wait.
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


async def _endless(d: Delivery, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    assert d.more is not None
    i = 0
    while not reader.at_eof() and not writer.is_closing():
        # With no pace, still yield to the loop so other connections are served.
        await asyncio.sleep(d.gap)
        writer.write(_chunk(d.more(i)))
        await writer.drain()
        i += 1
    writer.transport.abort()
