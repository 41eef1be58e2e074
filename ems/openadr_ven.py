"""The site's OpenADR 2.0b VEN: openleadr's client, registered with the program's VTN.

It registers, polls at the rate the VTN asks, turns each event into the site's events
(ems/openadr_events.py) in the controller's book (ems/dr_book.py), opts in (or out: by
configuration, for an event the site cannot act on, or one that is malformed) and offers a
telemetry report with the site's grid import and the flexibility it has now (battery room
above the reserve plus what the flex tiers allow the racks to give). Cancelled or completed
events leave the book. Runs in the controller's task group, with openleadr on a thread and an
event loop of its own: a VTN's answer is read, validated, parsed and dispatched there
(openleadr reads any size of answer and looks each event up in a list: 2,000 events held the
control loop for 6 s), never on the control loop. It reads only the published period result
(never a device) and writes only to the book, on the control loop's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from openleadr import OpenADRClient, enums

from ems.config import OpenAdrConfig
from ems.dr_book import DrBook, DrBookFull
from ems.model.cancel_guard import checkpoint
from ems.model.dr import DrEvent
from ems.openadr_events import Malformed, Unsupported, dr_events
from ems.published import Published
from policies.demand_response import DrParams, flexibility_w

log = structlog.get_logger("ems.openadr")
CANCEL_CHECK_S = 1.0  # how often a registered VEN looks whether the VTN cancelled its registration
OPT_IN, OPT_OUT = "optIn", "optOut"
logging.getLogger("openleadr").setLevel(logging.WARNING)  # its own INFO lines for every poll


def site_import_w(published: Published) -> float | None:
    """The grid import the meter read in the latest period (None: none yet)."""
    r = published.result
    if r is None or r.snapshot.meter is None:
        return None
    return r.snapshot.meter.grid_power_w


def site_flexibility_w(published: Published, params: DrParams | None) -> float | None:
    """What the site could take off its import now: battery room above the reserve plus the racks' tiers."""
    r = published.result
    if r is None or params is None:
        return None
    hi_w = sum(b[1] for b in r.step.unit_bounds_w.values())
    return flexibility_w(r.snapshot.racks, params, max(hi_w - r.step.setpoint_w, 0.0))


class OpenAdrVen:
    def __init__(self, cfg: OpenAdrConfig, book: DrBook, published: Published, params: DrParams | None) -> None:
        self.cfg, self.book, self.published, self.params = cfg, book, published, params
        self.client: OpenADRClient | None = None
        self.opted_in = self.opted_out = 0  # events, counted (a list of ids grew for ever)
        self.malformed = 0
        self.registered = False
        self.registrations = 0  # registrations the VTN accepted (more than one: it cancelled one)
        self._logged: set[str] = set()
        self._main: asyncio.AbstractEventLoop | None = None  # the control loop, where the book lives
        self.on_main_timeout_s = 10.0  # how long openleadr's handler waits for the control loop
        self._stop: asyncio.Event | None = None  # set (on openleadr's loop) to end its thread

    def _on_main(self, fn: Callable[[], str]) -> str:
        """`fn` run on the control loop's thread (the book's), its answer awaited here, on
        openleadr's; directly where there is no other loop (a test calling the handler)."""
        if self._main is None or self._main.is_closed():
            return fn()
        done: concurrent.futures.Future[str] = concurrent.futures.Future()

        def call() -> None:
            if not done.set_running_or_notify_cancel():  # the handler gave up waiting: nothing done
                return
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed over: raised again on openleadr's thread
                done.set_exception(exc)

        self._main.call_soon_threadsafe(call)
        try:
            return done.result(timeout=self.on_main_timeout_s)
        except TimeoutError:
            # a control loop this late: the VTN hears of a failure (openleadr opts out), so the
            # book must not change after all; a change begun meanwhile ends at once
            if done.cancel():
                raise
            return done.result()

    def status(self) -> dict[str, object]:
        """The VEN's figures for the site status (`dr.ven`)."""
        return {"protocol": "OpenADR 2.0b", "vtn": self.cfg.vtn_url, "registered": self.registered,
                "registrations": self.registrations,
                "opted_in": self.opted_in, "opted_out": self.opted_out, "malformed": self.malformed}

    def import_w(self) -> float | None:
        return site_import_w(self.published)

    def flexibility_w(self) -> float | None:
        return site_flexibility_w(self.published, self.params)

    def on_event(self, event: dict[str, Any]) -> str:
        """openleadr's handler (on its thread): the event parsed here, the book changed on the
        control loop's thread."""
        desc = event.get("event_descriptor", {})
        event_id, status = str(desc.get("event_id")), desc.get("event_status")
        if status in (enums.EVENT_STATUS.CANCELLED, enums.EVENT_STATUS.COMPLETED):
            return self._on_main(lambda: self._end(event_id, str(status)))
        try:
            events = dr_events(event, self.cfg.simple_levels, self.cfg.power_scale_w, time.time())
        except (Unsupported, Malformed) as exc:
            self.malformed += isinstance(exc, Malformed)
            kind = type(exc).__name__
            if kind not in self._logged:  # once per kind: a flood of bad events is counted, not logged
                self._logged.add(kind)
                log.warning("openadr event refused: opting out", event_id=event_id, why=str(exc))
            return self._on_main(lambda: self._opt_out(event_id))
        if not self.cfg.opt_in:
            return self._on_main(lambda: self._opt_out(event_id))
        return self._on_main(lambda: self._book(event_id, events))

    def _drop(self, event_id: str) -> None:
        """The event's intervals out of the book (a modified event replaces them)."""
        for e in [e for e in self.book.pending() if e.event_id.startswith(f"{event_id}:")]:
            self.book.cancel(e.event_id)

    def _end(self, event_id: str, status: str) -> str:
        self._drop(event_id)
        log.info("openadr event ended", event_id=event_id, status=status)
        return OPT_IN

    def _opt_out(self, event_id: str) -> str:
        """Opted out: a version booked before leaves the book (the site answered it will not act)."""
        self._drop(event_id)
        self.opted_out += 1
        return OPT_OUT

    def _book(self, event_id: str, events: list[DrEvent]) -> str:
        self._drop(event_id)
        try:
            for e in events:
                self.book.add(e)
        except DrBookFull as exc:
            log.warning("openadr event refused: opting out", event_id=event_id, why=str(exc))
            return self._opt_out(event_id)
        self.opted_in += 1
        log.info("openadr event accepted", event_id=event_id, intervals=len(events),
                 start=None if not events else events[0].start_s)
        return OPT_IN

    async def on_update_event(self, event: dict[str, Any]) -> str:
        return self.on_event(event)

    def _client(self) -> OpenADRClient:
        c = self.cfg
        client = OpenADRClient(
            ven_name=c.ven_name, vtn_url=c.vtn_url, ven_id=c.ven_id,
            cert=None if c.cert is None else str(c.cert), key=None if c.key is None else str(c.key),
            vtn_fingerprint=c.vtn_fingerprint, ca_file=None if c.ca_file is None else str(c.ca_file),
            disable_signature=c.cert is None, show_fingerprint=False, allow_jitter=False)
        client.add_handler("on_event", self.on_event)
        client.add_handler("on_update_event", self.on_update_event)
        rate = timedelta(seconds=c.report_every_s)
        for resource, read in (("site", self.import_w), ("flexibility", self.flexibility_w)):
            client.add_report(callback=read, resource_id=resource, measurement=enums.MEASUREMENTS.REAL_POWER,
                              report_specifier_id="ems-telemetry", r_id=f"{resource}-power",
                              sampling_rate=rate, unit="W", scale="none")
        return client

    async def run(self) -> None:
        """openleadr on its own thread and event loop until cancelled; the VTN is retried there,
        and a thread whose loop broke (logged there) is started anew."""
        self._main = asyncio.get_running_loop()
        while True:
            started: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
            thread = threading.Thread(target=self._thread_main, args=(started,), name="openadr-ven", daemon=True)
            thread.start()
            loop: asyncio.AbstractEventLoop | None = None
            try:
                loop = await asyncio.wrap_future(started)
                while thread.is_alive():
                    checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
                    await asyncio.sleep(1.0)
            finally:
                if loop is None:  # cancelled before the thread said which loop: it will soon
                    loop = await asyncio.shield(asyncio.wrap_future(started))
                stop = self._stop
                if stop is not None and not loop.is_closed():
                    with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                        loop.call_soon_threadsafe(stop.set)
                await asyncio.shield(asyncio.to_thread(thread.join, 15.0))
            self.registered = False
            await asyncio.sleep(10.0)

    def _thread_main(self, started: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        loop = asyncio.new_event_loop()
        try:
            self._stop = asyncio.Event()
            started.set_result(loop)
            loop.run_until_complete(self._serve(self._stop))
        except Exception:
            log.exception("openadr VEN thread failed")
        finally:
            loop.close()

    async def _serve(self, stop: asyncio.Event) -> None:
        """Register and keep polling until `stop`; a VTN that cannot be reached is retried."""
        while not stop.is_set():
            client = self._client()
            self.client = client
            try:
                try:
                    await client.run()
                except Exception as exc:  # a third party's edge: whatever it raises, retry
                    log.warning("openadr registration failed: retrying", vtn=self.cfg.vtn_url, error=repr(exc))
                else:
                    if client.registration_id is None:
                        log.warning("openadr registration refused: retrying", vtn=self.cfg.vtn_url)
                    else:
                        self.registered = True
                        self.registrations += 1
                        log.info("openadr registered", vtn=self.cfg.vtn_url, ven_id=client.ven_id)
                        # openleadr's scheduler polls from here on, until the VTN cancels the
                        # registration (oadrCancelPartyRegistration): openleadr then drops its
                        # registration id and every job, polls no more, and says nothing
                        while client.registration_id is not None and not stop.is_set():
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), CANCEL_CHECK_S)
                        if stop.is_set():
                            return
                        self.registered = False  # and registered again in 10 s (refused if the VTN meant it)
                        log.warning("openadr registration cancelled by the VTN: registering again",
                                    vtn=self.cfg.vtn_url)
            finally:
                with contextlib.suppress(Exception):
                    await client.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 10.0)
