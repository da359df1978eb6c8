"""fork() with a stream in flight (issue 19, item 6): the child does not report the parent's open
stream as its own (``steer.client.streams.active`` stays at 0 there, not 1 forever), and the parent's
count is untouched. A real ``os.fork()``; the child collects its own metrics (its copy of the SDK's
state) and sends them back through a pipe."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from reliability.surfaces import USER, openai_client
from steer.tools.devserver import DevServer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_child_of_a_fork_with_a_stream_open_reports_no_active_stream(instrumented: Any) -> None:
    telemetry = instrumented()
    with DevServer(chunk_delay=0) as srv:
        client = openai_client(srv, False, 60)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
        next(stream)  # in flight
        assert telemetry.active_streams() == 1
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave at once (no atexit, no pytest teardown)
            try:
                os.close(read_end)
                before = telemetry.active_streams()
                stream.close()  # the parent's stream, closed in the child: not the child's to count down
                after = telemetry.active_streams()
                os.write(write_end, json.dumps({"before": before, "after": after}).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            child = json.loads(pipe.read())
        os.waitpid(pid, 0)
        assert child == {"before": 0, "after": 0}
        assert telemetry.active_streams() == 1  # the parent's own stream is still open in the parent
        for _ in stream:
            pass
        assert telemetry.active_streams() == 0
        client.close()
