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
from collections.abc import Awaitable, Callable
from concurrent.futures import Future

import structlog
from aiohttp import web

log = structlog.get_logger("ems.http")


class ServerThread:
    def __init__(self, app: web.Application, host: str, port: int, *, name: str = "ems-http",
                 on_start: Callable[[asyncio.AbstractEventLoop], None] | None = None,
                 on_stop: Callable[[], Awaitable[None]] | None = None, shutdown_timeout_s: float = 2.0) -> None:
        self.app, self.host, self.port = app, host, port
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
        self._started.set_result(next(a[1] for a in runner.addresses if isinstance(a, tuple)))
        try:
            await self._stop.wait()
        finally:
            try:
                await runner.cleanup()
            finally:
                if self.on_stop is not None:
                    await self.on_stop()
