"""Screenshot the Ray dashboard of a running sweep, signed in with the token, in headless Chromium.

    python benchmarks/dashboard_screenshot.py --dashboard http://127.0.0.1:8265 --out docs/img/dashboard.png

Finds a live trial actor through Ray's state API (``/api/v0/actors``, with the token
as a bearer header) and opens its page, whose log shows the ``[fno] trial ...`` lines
each trial prints (one actor runs several trials in turn: ``reuse_actors``); with
``--page`` any dashboard route instead. Chromium is driven through its DevTools
protocol (aiohttp's websocket client, which Ray's dashboard already needs): the
token goes in as the dashboard's own sign-in cookie, so nothing is disabled. Needs
Chromium (Debian: apt-get install chromium); not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

COOKIE = "ray-authentication-token"  # the dashboard's sign-in cookie (Ray 2.60)


def _token(path: Path) -> str:
    return os.environ.get("RAY_AUTH_TOKEN") or path.expanduser().read_text().strip()


def _trial_actor(dashboard: str, token: str) -> str | None:
    """The id of a live actor of a Tune function trainable, or None."""
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"{dashboard}/api/v0/actors?limit=200", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        actors = json.load(response)["data"]["result"]["result"]
    live = [a for a in actors if a.get("state") == "ALIVE" and a.get("class_name") == "ImplicitFunc"]
    return live[0]["actor_id"] if live else None


async def _capture(chromium: str, url: str, dashboard: str, token: str, out: Path, wait_s: float) -> None:
    import aiohttp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
             f"--user-data-dir={profile}", "--window-size=1600,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(100):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                            targets = [t for t in await response.json() if t["type"] == "page"]
                        break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.2)
                async with session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    ids = iter(range(1, 1000))

                    async def call(method: str, **params):
                        message_id = next(ids)
                        await ws.send_json({"id": message_id, "method": method, "params": params})
                        while True:
                            reply = await ws.receive_json()
                            if reply.get("id") == message_id:
                                return reply.get("result", {})

                    await call("Network.enable")
                    await call("Network.setCookie", name=COOKIE, value=token, url=dashboard, httpOnly=True)
                    await call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1,
                               mobile=False)  # fmt: skip
                    await call("Page.enable")
                    await call("Page.navigate", url=url)
                    await asyncio.sleep(wait_s)  # the dashboard fetches its data after load
                    shot = await call("Page.captureScreenshot", format="png")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.terminate()
            browser.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboard", required=True, help="the dashboard's URL, as the sweep printed it")
    parser.add_argument("--token-file", type=Path, default=Path("~/.ray/auth_token"))
    parser.add_argument("--page", default=None, help="a dashboard route, e.g. '#/actors' (default: a trial actor's)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--wait", type=float, default=8.0, help="seconds to let the page load its data")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        print("error: no chromium found (apt-get install chromium, or --chromium PATH)", file=sys.stderr)
        return 2
    dashboard = args.dashboard.rstrip("/")
    if not dashboard.startswith("http"):
        dashboard = f"http://{dashboard}"
    token = _token(args.token_file)
    route = args.page
    if route is None:
        for _ in range(30):
            actor = _trial_actor(dashboard, token)
            if actor:
                route = f"#/actors/{actor}"
                break
            time.sleep(2)
        else:
            print("error: no live trial actor found: is a sweep running?", file=sys.stderr)
            return 1
    asyncio.run(_capture(args.chromium, f"{dashboard}/{route}", dashboard, token, args.out, args.wait))
    print(f"{dashboard}/{route} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
