"""Headless Chromium (Debian ``chromium``) driven over the DevTools protocol, for UI screenshots.

Every host but 127.0.0.1 resolves to nothing (``--host-resolver-rules``) and Chromium's own
background traffic (updates, sync, QUIC) is off, so a page can only talk to the loopback server under
test. The DevTools socket is on loopback too; its port comes from the profile's DevToolsActivePort.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict, Optional

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def find_chromium() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless browser process (ours: started in ``__enter__``, ended in ``__exit__``)."""

    def __init__(self, binary: str, width: int = 1600, height: int = 1000) -> None:
        self.binary, self.width, self.height = binary, width, height
        self.profile = Path(tempfile.mkdtemp(prefix="steer-chromium-"))
        self.proc: Optional[subprocess.Popen] = None
        self._ws: Any = None
        self._stack = ExitStack()
        self._next_id = 0

    def __enter__(self) -> "Chromium":
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={self.width},{self.height}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not active.exists() or len(active.read_text().splitlines()) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(active.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            pages = [t for t in json.loads(resp.read()) if t.get("type") == "page"]
        self._ws = self._stack.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=30))
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, **params: Any) -> Dict[str, Any]:
        self._next_id += 1
        mine = self._next_id
        self._ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *needles: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.25)
        missing = [n for n in needles if n not in text]
        raise TimeoutError(f"page never showed {missing}; it shows:\n{text[:2000]}")

    def click_text(self, text: str, selector: str = "[role=tab], button, a") -> bool:
        """Click the first element matching ``selector`` whose visible text is exactly ``text``."""
        script = (
            f"(() => {{ const el = [...document.querySelectorAll({json.dumps(selector)})]"
            f".find(e => e.innerText && e.innerText.trim() === {json.dumps(text)});"
            " if (!el) return false; el.click(); return true; })()"
        )
        return bool(self.evaluate(script))

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
