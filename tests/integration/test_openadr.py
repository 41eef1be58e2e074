"""OpenADR 2.0b end to end: openleadr's own VTN on loopback, the site's VEN in the real
controller, the simulated site over real Modbus and MQTT. The VTN issues a LOAD_DISPATCH
event; the site registers, opts in, holds import at or under the target by the minute from
30 s after the start, and reports its import and flexibility."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from openleadr import OpenADRServer

from ems.clock import ScaledClock
from ems.operator.metrics import ControllerMetrics
from tests.conftest import free_port, running_controller, running_site, wait_for

pytestmark = pytest.mark.integration

VEN_ID = "ven-ems-test"
TARGET_KW = 360.0  # 16 racks of 40 kW at ~60 % and PUE 1.25 import ~480 kW: a quarter less


class Vtn:
    """openleadr's VTN, recording what the VEN tells it."""

    def __init__(self, port: int) -> None:
        self.server = OpenADRServer(vtn_id="EMS-TEST-VTN", http_port=port, http_host="127.0.0.1",
                                    requested_poll_freq=timedelta(seconds=1), verify_message_signatures=False,
                                    show_fingerprint=False, show_server_cert_domain=False)
        self.url = f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b"
        self.registered: list[str] = []
        self.opts: dict[str, str] = {}
        self.reports: dict[str, list[tuple[datetime, float]]] = {}
        self.server.add_handler("on_create_party_registration", self.on_registration)
        self.server.add_handler("on_register_report", self.on_register_report)

    def on_registration(self, info: dict[str, Any]) -> tuple[str, str]:
        self.registered.append(info["ven_name"])
        return VEN_ID, "reg-1"

    def on_register_report(self, ven_id: str, resource_id: str, measurement: str, unit: str, scale: str,
                           min_sampling_interval: timedelta, max_sampling_interval: timedelta
                           ) -> tuple[Any, timedelta]:
        def got(values: list[tuple[datetime, float]]) -> None:
            self.reports.setdefault(resource_id, []).extend(values)
        return got, min_sampling_interval

    def on_opt(self, ven_id: str, event_id: str, opt_type: str) -> None:
        self.opts[event_id] = opt_type


@contextlib.asynccontextmanager
async def running_vtn() -> AsyncIterator[Vtn]:
    vtn = Vtn(free_port())
    await vtn.server.run()
    try:
        yield vtn
    finally:
        await vtn.server.stop()


def _site(make_site, mqtt_url: str, vtn_url: str):
    return make_site(
        mqtt_url, rows=2, racks_per_row=8, period_s=0.5, units=1,
        policies={"battery": {"soc_min": 0.1, "soc_max": 0.95},
                  "demand_response": {"flex_tiers": {"row01": 2, "row02": 4}, "precharge_s": 0.0,
                                      "openadr": {"vtn_url": vtn_url, "ven_name": "ems-site", "ven_id": VEN_ID,
                                                  "report_every_s": 2.0}}},
        simulation={"seed": 4, "speed": 1.0, "pue": 1.25,
                    "bess": [{"capacity_wh": 400_000, "rated_power_w": 100_000, "initial_soc": 0.6,
                              "ramp_w_per_s": 1_000_000, "heartbeat_timeout_s": 2.0}],
                    "racks": {"model": "training", "racks_per_job": 8, "swing_low_fraction": 0.4,
                              "swing_high_fraction": 0.8, "swing_hz_min": 0.5, "swing_hz_max": 1.0,
                              "mean_job_s": 1e6, "checkpoint_every_s": 1e6, "telemetry_period_s": 0.5,
                              "cap_response_s": 0.2}})


async def _sample(site, seconds: float, into: list[tuple[float, float]]) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        into.append((site.plant.now_s, site.plant.meter.grid_power_w))
        await asyncio.sleep(0.05)


def _mean(samples: list[tuple[float, float]], t0: float, t1: float) -> float:
    return float(np.mean([w for t, w in samples if t0 <= t < t1]))


@pytest.mark.timeout(240)
async def test_an_openadr_event_is_held_at_the_meter_and_reported(broker, make_site) -> None:
    async with running_vtn() as vtn:
        cfg = _site(make_site, broker.url, vtn.url)
        clock = ScaledClock(1.0)
        async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
            ven = ctl.ven
            assert ven is not None
            await wait_for(lambda: ven.registered, timeout_s=20)
            assert vtn.registered == ["ems-site"]
            # openleadr runs on a thread of its own: a VTN's answer is parsed there, not on the loop
            assert [t.name for t in threading.enumerate()].count("openadr-ven") == 1
            start = datetime.now(UTC) + timedelta(seconds=10)
            duration_s = 100.0
            vtn.server.add_event(ven_id=VEN_ID, signal_name="LOAD_DISPATCH", signal_type="setpoint",
                                 intervals=[{"dtstart": start, "duration": timedelta(seconds=duration_s),
                                             "signal_payload": TARGET_KW}],
                                 callback=vtn.on_opt, event_id="evt-1")
            samples: list[tuple[float, float]] = []
            sampler = asyncio.create_task(_sample(site, 10.0 + duration_s + 2.0, samples))
            await wait_for(lambda: vtn.opts.get("evt-1") == "optIn", timeout_s=10)
            await sampler
            start_s = start.timestamp() - clock.epoch_wall  # on the plant's clock
            before = _mean(samples, start_s - 8.0, start_s)
            assert before > TARGET_KW * 1e3 * 1.1  # the site imports well over the target before the event
            # from 30 s after the start, every minute's average at the meter at or under the target
            for t0 in (start_s + 30.0, start_s + 40.0):
                assert _mean(samples, t0, t0 + 60.0) <= TARGET_KW * 1e3, t0
            assert ctl.last is not None
            # the site status says how the VEN stands beside the events it booked
            ven_status = ctl.last.status["dr"]["ven"]
            assert ven_status["protocol"] == "OpenADR 2.0b" and ven_status["registered"] is True
            assert ven_status["opted_in"] >= 1 and ven_status["opted_out"] == 0 and ven_status["malformed"] == 0
            text = ControllerMetrics(ctl.published).render().decode()  # the same in the metrics
            assert "ems_dr_ven_registered 1.0" in text
            assert 'ems_dr_ven_events_refused_total{kind="Malformed"} 0.0' in text
            assert re.search(r"^ems_dr_ven_opted_in_total [1-9]", text, re.M)
            await wait_for(lambda: any(r["event_id"] == "evt-1:0" for r in ctl.dr.results), timeout_s=5)
            [result] = [r for r in ctl.dr.results if r["event_id"] == "evt-1:0"]
            assert result["source"] == "openadr" and result["target_w"] == TARGET_KW * 1e3
            assert result["battery_kwh"] > 0  # the battery first ...
            assert result["gpu_throttled_kwh"] > 0  # ... and the racks for what it could not
            # the VTN received the site's telemetry: import and flexibility, in W
            await wait_for(lambda: min(len(vtn.reports.get(r, [])) for r in ("site", "flexibility")) >= 2,
                           timeout_s=15)
            assert all(v > 0 for _, v in vtn.reports["site"])
            assert all(v >= 0 for _, v in vtn.reports["flexibility"])
        assert bool(np.isnan(site.plant.racks.cap_w).all())  # at the stop every cap is released
        assert "openadr-ven" not in [t.name for t in threading.enumerate()]  # and the VEN's thread ended


@pytest.mark.timeout(90)
async def test_a_registration_the_vtn_cancels_is_shown_and_made_again() -> None:
    """openleadr's VTN answers a poll with oadrCancelPartyRegistration (its `on_poll` handler):
    openleadr's client then drops every job and polls no more, silently. The VEN says it is not
    registered (the status, so `ems_dr_ven_registered` and its alert) and registers again."""
    from typing import cast

    from ems.config import OpenAdrConfig
    from ems.dr_book import DrBook
    from ems.openadr_ven import OpenAdrVen
    from ems.published import Published

    port = free_port()
    server = OpenADRServer(vtn_id="EMS-TEST-VTN", http_port=port, http_host="127.0.0.1",
                           requested_poll_freq=timedelta(seconds=1), verify_message_signatures=False,
                           show_fingerprint=False, show_server_cert_domain=False)
    registered: list[str] = []
    cancel = {"now": False}

    def on_registration(info: dict[str, Any]) -> tuple[str, str]:
        registered.append(info["ven_name"])
        return VEN_ID, f"reg-{len(registered)}"

    def on_poll(ven_id: str) -> tuple[str, dict[str, Any]] | None:
        if not cancel["now"]:
            return None
        cancel["now"] = False
        return "oadrCancelPartyRegistration", {"request_id": "cancel-1", "ven_id": ven_id,
                                                "registration_id": f"reg-{len(registered)}"}

    server.add_handler("on_create_party_registration", on_registration)
    server.add_handler("on_poll", on_poll)  # external polling: this handler answers each poll
    await server.run()
    ven = OpenAdrVen(OpenAdrConfig(vtn_url=f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b", ven_name="ems-site"),
                     DrBook(), cast(Published, None), None)  # registration reads neither
    task = asyncio.create_task(ven.run())
    try:
        await wait_for(lambda: ven.registered, timeout_s=20)
        assert ven.status()["registrations"] == 1 and registered == ["ems-site"]
        cancel["now"] = True
        await wait_for(lambda: not ven.registered, timeout_s=10)
        assert ven.status()["registered"] is False
        await wait_for(lambda: ven.registered, timeout_s=30)  # a new registration, 10 s on
        assert ven.status()["registrations"] == 2 and registered == ["ems-site", "ems-site"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()
