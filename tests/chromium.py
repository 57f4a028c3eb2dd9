"""Open a page in real headless Chromium and report what happened, over the DevTools protocol.

Chromium is started with ``--remote-debugging-port=0``; the port it picked is read from the
``DevToolsActivePort`` file in its profile folder, and the page is driven over a websocket
(tornado's client, which bokeh already depends on). Console errors, uncaught exceptions
and failed loads are collected; a screenshot and timings come back for the caller to judge.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--no-first-run", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio",
         "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL with no GPU
         "--remote-allow-origins=*", "--window-size=1280,900"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    warnings: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    seconds: dict[str, float] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)  # results of the caller's steps


class Session:
    """One page target: send commands, collect events."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.next_id, self.events = ws, 0, []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        await self.ws.write_message(json.dumps({"id": my_id, "method": method,
                                                "params": params}))
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                raise RuntimeError("Chromium closed the DevTools connection")
            msg = json.loads(raw)
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression,
                                 awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def mouse(self, kind: str, x: float, y: float, **extra: Any) -> None:
        """A real input event at page pixel (x, y): mouseMoved, mouseWheel, mousePressed…"""
        await self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    async def wait_for(self, expression: str, timeout: float) -> float:
        """Poll ``expression`` until truthy; returns the seconds waited."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if await self.evaluate(expression):
                return time.perf_counter() - start
            await asyncio.sleep(0.02)
        raise TimeoutError(f"page never satisfied {expression!r} within {timeout} s")

    def problems(self, report: Report) -> None:
        for ev in self.events:
            method, p = ev["method"], ev.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                report.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                              for a in p.get("args", [])))
            elif method == "Runtime.consoleAPICalled" and p.get("type") == "warning":
                report.warnings.append(" ".join(str(a.get("value", "")) for a in p["args"]))
            elif method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                report.errors.append(d.get("exception", {}).get("description", d.get("text")))
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                report.errors.append(f"{p['entry']['source']}: {p['entry']['text']}")
            elif method == "Network.loadingFailed":
                report.errors.append(f"load failed: {p.get('errorText')}")


Step = str | Callable[[Session], Awaitable[Any]]


async def _drive(port: int, page: Path, ready: str, steps: dict[str, Step],
                 timeout: float, report: Report, fragment: str = "") -> None:
    from tornado.httpclient import AsyncHTTPClient
    from tornado.websocket import websocket_connect

    body = (await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/json/list")).body
    target = next(t for t in json.loads(body) if t["type"] == "page")
    ws = await websocket_connect(target["webSocketDebuggerUrl"], max_message_size=1 << 28)
    s = Session(ws)
    for domain in ("Runtime", "Log", "Page", "Network"):
        await s.call(f"{domain}.enable")
    start = time.perf_counter()
    await s.call("Page.navigate", url=page.resolve().as_uri() + fragment)
    await s.wait_for("document.readyState === 'complete'", timeout)
    report.seconds["load_event"] = time.perf_counter() - start
    try:
        await s.wait_for(ready, timeout)
    except TimeoutError as err:
        s.problems(report)
        raise TimeoutError(f"{err}; page errors: {report.errors or 'none'}") from None
    report.seconds["ready"] = time.perf_counter() - start
    for name, step in steps.items():
        t0 = time.perf_counter()
        report.values[name] = await (s.evaluate(step) if isinstance(step, str) else step(s))
        report.seconds[name] = time.perf_counter() - t0
    shot = await s.call("Page.captureScreenshot", format="png")
    report.screenshot = base64.b64decode(shot["data"])
    await asyncio.sleep(0.1)
    await s.evaluate("1")  # drain events that arrived meanwhile
    s.problems(report)
    ws.close()


def open_page(page: Path, ready: str, steps: dict[str, Step] | None = None,
              timeout: float = 60.0, fragment: str = "") -> Report:
    """Load ``page`` (with the URL ``fragment``, e.g. ``#token=%E6%9D%B1``), wait until the
    JS expression ``ready`` holds, run ``steps`` in order (name → JS expression, which may
    return a promise, or an async function of the :class:`Session`), then screenshot.
    Raises if Chromium is missing."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (bash scripts/system-deps.sh)")
    report = Report()
    profile = tempfile.mkdtemp(prefix="vocabmap-chromium-")
    # its own process group: the browser's helpers (renderer, GPU, utility) are stopped with
    # it, before the profile they write into is removed
    proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}",
                             "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        asyncio.run(_drive(port, page, ready, steps or {}, timeout, report, fragment))
    finally:
        _stop(proc)
        _remove(Path(profile))
    return report


def _stop(proc: subprocess.Popen) -> None:
    """End Chromium and every process of its group, and wait until none is left."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        deadline = time.monotonic() + grace
        while _group_running(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _group_running(proc.pid):
            return


def _group_running(group: int) -> bool:
    """Whether a process of this group is still running (zombies, which write nothing and
    wait for their parent to read them, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _remove(profile: Path) -> None:
    """Remove the profile folder; a straggling writer gets a few more tries."""
    for attempt in range(20):
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt == 19:
                raise
            time.sleep(0.1)
