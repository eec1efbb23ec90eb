"""Debian's chromium, headless, driven over the DevTools protocol (aiohttp's websocket): load a page, collect errors."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageResult:
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, failed loads
    values: dict = field(default_factory=dict)  # what each expression evaluated to, by name
    screenshot: bytes = b""


class _Session:
    def __init__(self, ws):
        self.ws, self.next_id, self.events = ws, 0, []

    async def call(self, method: str, **params):
        self.next_id += 1
        mine = self.next_id
        await self.ws.send_json({"id": mine, "method": method, "params": params})
        while True:
            msg = json.loads((await self.ws.receive(timeout=60)).data)
            if msg.get("id") == mine:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    async def wait_for(self, method: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            msg = await self.ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(msg.data))

    async def drain(self, seconds: float):
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                msg = await self.ws.receive(timeout=max(0.05, deadline - time.monotonic()))
                self.events.append(json.loads(msg.data))
        except asyncio.TimeoutError:
            pass


def _errors(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            out.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry']['text']} {p['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            out.append(f"load failed: {p.get('errorText')}")
    return out


async def _drive(port: int, url: str, steps: list[tuple[str, str]], width: int, height: int) -> PageResult:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.put(f"http://127.0.0.1:{port}/json/new?about:blank") as r:
            target = await r.json()
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            s = _Session(ws)
            for domain in ("Page", "Runtime", "Log", "Network"):
                await s.call(f"{domain}.enable")
            await s.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                         mobile=False)
            await s.call("Page.navigate", url=url)
            await s.wait_for("Page.loadEventFired")
            result = PageResult()
            for name, expression in steps:  # each may return a promise (awaited)
                r = await s.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
                if "exceptionDetails" in r:
                    raise RuntimeError(f"{name}: {r['exceptionDetails']}")
                result.values[name] = r["result"].get("value")
            await s.drain(0.5)
            shot = await s.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            result.screenshot = base64.b64decode(shot["data"])
            result.errors = _errors(s.events)
            return result


def open_page(path: Path, steps: list[tuple[str, str]], width: int = 1400, height: int = 1000) -> PageResult:
    """Open a local file in headless chromium (no network), run `steps` (name, JS expression) in order."""
    chromium = find_chromium()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--disable-sync", "--metrics-recording-only",
             "--disable-component-update", "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not (port_file.exists() and port_file.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            return asyncio.run(_drive(port, path.resolve().as_uri(), steps, width, height))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
