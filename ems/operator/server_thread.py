"""An aiohttp application served from a thread of its own, with an event loop of its own.

Whatever a client does (a flood, a slow read, a large query) is work for this loop, never
for the control loop's: the two share only what the controller publishes (ems/published.py)
and the action queue. Started and stopped from the control loop's thread without
blocking it: both wait on futures the server thread completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future

import structlog
from aiohttp import web

log = structlog.get_logger("ems.http")


class ServerThread:
    def __init__(self, app: web.Application, host: str, port: int, *, name: str = "ems-http",
                 on_start: Callable[[asyncio.AbstractEventLoop], None] | None = None,
                 on_stop: Callable[[], Awaitable[None]] | None = None, shutdown_timeout_s: float = 2.0,
                 pacer: Pacer | None = None, pace_every_s: float = 0.01) -> None:
        self.app, self.host, self.port = app, host, port
        self.pacer, self.pace_every_s = pacer, pace_every_s
        self.on_start, self.on_stop = on_start, on_stop
        self.shutdown_timeout_s = shutdown_timeout_s
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started: Future[int] = Future()
        self._done: Future[None] = Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def start(self) -> int:
        """Bind and serve; returns the port. A bind error (port taken) is raised here."""
        self._thread.start()
        return await asyncio.wrap_future(self._started)

    async def stop(self) -> None:
        """Stop serving (open streams end, handlers get `shutdown_timeout_s`) and end the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop has already ended
                loop.call_soon_threadsafe(stop.set)
        await asyncio.wrap_future(self._done)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to whoever waits on the thread
            log.exception("operator server thread failed")
            if not self._started.done():
                self._started.set_exception(exc)
        finally:
            self._done.set_result(None)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                               shutdown_timeout=self.shutdown_timeout_s)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException as exc:
            await runner.cleanup()
            self._started.set_exception(exc)
            return
        if self.on_start is not None:
            self.on_start(self._loop)
        if self.pacer is not None:
            self.pacer.start()
            self._loop.call_soon(self._pace)
        self._started.set_result(next(a[1] for a in runner.addresses if isinstance(a, tuple)))
        try:
            await self._stop.wait()
        finally:
            try:
                await runner.cleanup()
            finally:
                if self.on_stop is not None:
                    await self.on_stop()

    def _pace(self) -> None:
        assert self.pacer is not None and self._loop is not None
        self.pacer.check()
        self._loop.call_later(self.pace_every_s, self._pace)


class Pacer:
    """Keeps the thread that calls it to `cpu_share` of one core: past it, `check` sleeps,
    blocking that thread's loop alone. The control loop shares the interpreter with the
    server's thread; a sleeping thread leaves it free, so a flood slows the server, not the
    periods. Checked on a timer and before each request (one loop turn can take many)."""

    def __init__(self, cpu_share: float, max_pause_s: float = 0.5) -> None:
        self.cpu_share, self.max_pause_s = cpu_share, max_pause_s
        self.paused_s = 0.0
        self._cpu0 = self._wall0 = 0.0

    def start(self) -> None:
        self._cpu0, self._wall0 = time.thread_time(), time.monotonic()

    def check(self) -> None:
        if self.cpu_share >= 1.0:
            return
        cpu, wall = time.thread_time(), time.monotonic()
        owed = (cpu - self._cpu0) / self.cpu_share - (wall - self._wall0)
        if owed > 0:
            owed = min(owed, self.max_pause_s)
            time.sleep(owed)
            self.paused_s += owed
            wall += owed
        self._cpu0, self._wall0 = cpu, wall
