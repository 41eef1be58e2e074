"""A flood of the operator server, as an attacker would send it: every endpoint, many
connections, from many loopback addresses, as fast as one process can. Bounded in time and
in requests; loopback only. Run in a process of its own (the flood test, the benchmark),
so its own work never competes with the controller's interpreter.

    python -m tests.http_flood URL --seconds 5 [--max-requests 200000] [--connections 64]
        [--sources 32] [--token TOKEN]

Prints one JSON line: requests sent, answers by status and by path, connection errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import aiohttp

CAP = "policies.peak_shaving.grid_import_cap_w"
GETS = ["/", "/static/app.js", "/api/openapi.json", "/api/health", "/api/status", "/api/snapshot",
        "/api/setpoints", "/api/history", "/api/history?since=0", "/api/events?limit=1000",
        "/api/events?limit=1000&kind=operator_refused", "/api/config", "/api/params", "/metrics",
        "/no/such/path"]
STREAM = "/api/stream"


def _posts(token: str | None) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    auth = {} if token is None else {"Authorization": f"Bearer {token}"}
    wrong = {"Authorization": "Bearer not-the-token-0123456789"}
    return [
        ("/api/actions/set-param", {"param": CAP, "value": 2e6, "reason": "flood"}, {}),  # no token: 401
        ("/api/actions/set-param", {"param": CAP, "value": 2e6, "reason": "flood"}, wrong),
        ("/api/actions/set-param", {"param": CAP, "value": -1.0, "reason": "flood"}, auth),  # 422 from the loop
        ("/api/actions/reset-param", {"param": CAP, "reason": "flood"}, auth),  # 409: nothing to reset
        ("/api/actions/maintenance", {"unit": "nope", "in_maintenance": True, "reason": "flood"}, auth),  # 404
        ("/api/actions/force-mode", {"mode": "auto", "reason": "flood"}, auth),  # 409: no forced mode
    ]


def _loopback(i: int) -> str:
    """The i-th flooding address, 127.0.1.0 onwards: every one is this machine's."""
    return f"127.0.{1 + i // 250}.{i % 250 + 1}"


class Tally:
    def __init__(self) -> None:
        self.by_status: Counter[int] = Counter()
        self.by_path: dict[str, Counter[int]] = {}
        self.errors: Counter[str] = Counter()
        self.sent = 0

    def count(self, path: str, status: int) -> None:
        self.by_status[status] += 1
        self.by_path.setdefault(path.split("?")[0], Counter())[status] += 1


async def _worker(session: aiohttp.ClientSession, base: str, n: int, tally: Tally, end: float, max_requests: int,
                  posts: list[tuple[str, dict[str, Any], dict[str, str]]]) -> None:
    i = n
    while time.monotonic() < end and tally.sent < max_requests:
        i += 1
        tally.sent += 1
        k = i % (len(GETS) + len(posts) + 1)
        try:
            if k < len(GETS):
                async with session.get(base + GETS[k]) as r:
                    await r.read()
                    tally.count(GETS[k], r.status)
            elif k < len(GETS) + len(posts):
                path, body, headers = posts[k - len(GETS)]
                async with session.post(base + path, json=body, headers=headers) as r:
                    await r.read()
                    tally.count(path, r.status)
            else:  # open an event stream, take its first message, go
                async with session.get(base + STREAM) as r:
                    if r.status == 200:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(r.content.readline(), 0.5)
                    else:
                        await r.read()
                    tally.count(STREAM, r.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
            await asyncio.sleep(0.01)


async def _hold_stream(session: aiohttp.ClientSession, base: str, tally: Tally, end: float) -> None:
    """Keep event streams open for the whole flood: slots an attacker would sit on."""
    while time.monotonic() < end:
        try:
            async with session.get(base + STREAM) as r:
                tally.count(STREAM + " (held)", r.status)
                if r.status != 200:
                    await r.read()
                    await asyncio.sleep(0.2)
                    continue
                while time.monotonic() < end:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(r.content.readline(), max(0.01, end - time.monotonic()))
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
            await asyncio.sleep(0.05)


async def flood(url: str, seconds: float, max_requests: int, connections: int, sources: int,
                token: str | None) -> dict[str, Any]:
    host = urlsplit(url).hostname or ""
    if not host.startswith("127."):
        raise SystemExit("the flood goes to loopback only")
    base = url.rstrip("/")
    tally = Tally()
    posts = _posts(token)
    timeout = aiohttp.ClientTimeout(total=5)
    sessions = [aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(
        limit=0, local_addr=(_loopback(s), 0), force_close=False)) for s in range(sources)]
    t0 = time.monotonic()
    end = t0 + seconds
    try:
        tasks = [_worker(sessions[n % sources], base, n, tally, end, max_requests, posts) for n in range(connections)]
        tasks += [_hold_stream(sessions[n % sources], base, tally, end) for n in range(min(sources, 8))]
        await asyncio.gather(*tasks)
    finally:
        for s in sessions:
            await s.close()
    elapsed = time.monotonic() - t0
    return {"seconds": round(elapsed, 3), "requests": sum(tally.by_status.values()),
            "per_s": round(sum(tally.by_status.values()) / elapsed, 1),
            "by_status": {str(k): v for k, v in sorted(tally.by_status.items())},
            "by_path": {p: {str(k): v for k, v in sorted(c.items())} for p, c in sorted(tally.by_path.items())},
            "errors": dict(tally.errors)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--sources", type=int, default=32, help="loopback addresses to send from (clients)")
    ap.add_argument("--token", default=None, help="an operator token: actions then reach the control loop")
    a = ap.parse_args(argv)
    result = asyncio.run(flood(a.url, a.seconds, a.max_requests, a.connections, a.sources, a.token))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
