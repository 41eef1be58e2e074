"""Racks through a real broker: telemetry ingest, group cap commands, malformed input."""

from __future__ import annotations

import asyncio

import aiomqtt
import numpy as np
import pytest

from drivers import rack_protocol as rp
from drivers.racks import RackCapWriter, RackTelemetryStore
from ems.clock import ScaledClock
from ems.mqtt_link import MqttLink
from tests.conftest import running_site, wait_for

pytestmark = pytest.mark.integration


async def test_telemetry_reaches_the_store_and_caps_reach_the_racks(broker, make_site) -> None:
    cfg = make_site(broker.url)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site:
        ids = cfg.racks.rack_ids()
        store = RackTelemetryStore(ids, cfg.racks.nameplate_w, stale_after_s=2.0)
        writer = RackCapWriter(cfg.mqtt.topic_prefix, ids, deadband_w=100.0)
        link = MqttLink(cfg.mqtt, store, clock, on_connect=writer.forget)
        task = asyncio.create_task(link.run())
        try:
            await wait_for(lambda: store.reading(clock.monotonic()).stale_count == 0)
            reading = store.reading(clock.monotonic())
            assert reading.reported_power_w == pytest.approx(site.plant.racks.total_power_w, rel=0.01)

            caps = {ids[0]: 12_000.0, ids[5]: 15_000.0}
            by_row = writer.changes(caps)
            assert set(by_row) == {"row01", "row02"}  # one group message per row
            assert await writer.send(link.publish, by_row) == 2
            fleet = site.plant.racks
            await wait_for(lambda: fleet.power_w[0] == pytest.approx(12_000.0)
                           and fleet.power_w[5] == pytest.approx(15_000.0))
            # the racks report the cap back in their telemetry
            await wait_for(lambda: store.cap_w[0] == pytest.approx(12_000.0))
            # unchanged caps are not re-sent; a release is
            assert writer.changes(caps) == {}
            release = writer.changes({ids[0]: None, ids[5]: 15_000.0})
            assert release == {"row01": dict.fromkeys(ids[:4])}  # the whole row, retained
            await writer.send(link.publish, release)
            await wait_for(lambda: np.isnan(fleet.cap_w[0]))
        finally:
            task.cancel()


async def test_malformed_and_unknown_messages_are_counted_not_ingested(broker, make_site) -> None:
    cfg = make_site(broker.url)
    clock = ScaledClock(1.0)
    ids = cfg.racks.rack_ids()
    store = RackTelemetryStore(ids, cfg.racks.nameplate_w, stale_after_s=2.0)
    link = MqttLink(cfg.mqtt, store, clock)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 5)
        prefix = cfg.mqtt.topic_prefix
        async with aiomqtt.Client(broker.host, broker.port) as bad_rack:
            await bad_rack.publish(rp.telemetry_topic(prefix, ids[0]), b"{not json")
            await bad_rack.publish(rp.telemetry_topic(prefix, ids[1]), b'{"rack": "x"}')
            await bad_rack.publish(rp.telemetry_topic(prefix, "row99-rack99"), b"{}")
            good = rp.RackTelemetry(ids[2], 21_000.0, None, 40_000.0, "training", 1, 0.0)
            await bad_rack.publish(rp.telemetry_topic(prefix, ids[2]), rp.encode_telemetry(good))
        await wait_for(lambda: store.received == 1 and store.malformed == 2 and store.unknown == 1)
        reading = store.reading(clock.monotonic())
        assert reading.fresh.tolist() == [False, False, True] + [False] * (len(ids) - 3)
        # a rack that never reported is assumed at nameplate, never 0 W
        assert reading.load_estimate_w == pytest.approx(21_000.0 + 40_000.0 * (len(ids) - 1))
    finally:
        task.cancel()


async def test_row_caps_are_retained_for_a_row_agent_that_subscribes_late(broker, make_site) -> None:
    import functools
    import json

    cfg = make_site(broker.url)
    clock = ScaledClock(1.0)
    ids = cfg.racks.rack_ids()
    store = RackTelemetryStore(ids, cfg.racks.nameplate_w, stale_after_s=2.0)
    writer = RackCapWriter(cfg.mqtt.topic_prefix, ids, deadband_w=100.0)
    link = MqttLink(cfg.mqtt, store, clock, on_connect=writer.forget)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 5)
        publish = functools.partial(link.publish, qos=1, retain=True)
        await writer.send(publish, writer.changes({ids[1]: 20_000.0}))
        await writer.send(publish, writer.changes({ids[2]: 25_000.0}))  # a second, later change
        async with aiomqtt.Client(broker.host, broker.port) as late:  # e.g. after a broker or agent restart
            await late.subscribe(rp.row_caps_topic(cfg.mqtt.topic_prefix, "row01"), qos=1)
            message = await asyncio.wait_for(anext(aiter(late.messages)), 5)
        caps = json.loads(message.payload)["caps_w"]
        assert caps == {ids[0]: None, ids[1]: 20_000.0, ids[2]: 25_000.0, ids[3]: None}  # the whole row, current
        # a reconnect re-sends every row that was ever told anything: caps re-asserted
        writer.forget()
        assert set(writer.changes({})) == {"row01", "row02"}
    finally:
        task.cancel()


async def test_job_announcements_reach_the_book_and_malformed_ones_are_counted(broker, make_site) -> None:
    from drivers import scheduler_protocol as sp
    from ems.job_ramps import JobBook

    cfg = make_site(broker.url)
    clock = ScaledClock(1.0)
    ids = tuple(cfg.racks.rack_ids())
    store = RackTelemetryStore(list(ids), cfg.racks.nameplate_w, stale_after_s=2.0)
    book = JobBook(ids, cfg.racks.nameplate_w)
    link = MqttLink(cfg.mqtt, store, clock, jobs=book)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 5)
        topic = sp.jobs_topic(cfg.mqtt.topic_prefix)
        async with aiomqtt.Client(broker.host, broker.port) as scheduler:
            await scheduler.publish(topic, b'{"job": "j1"}', qos=1)
            a = sp.JobAnnouncement("j2", "start", ids[:2], clock.wall() + 30.0, None)
            await scheduler.publish(topic, sp.encode(a, 1), qos=1)
        await wait_for(lambda: book.received == 1 and book.malformed == 1)
        [s] = book.steps(clock.monotonic())
        assert s.job == "j2" and s.rack_ids == ids[:2]
        assert s.at_s - clock.monotonic() == pytest.approx(30.0, abs=1.0)  # on the controller's clock
        assert store.malformed == 0  # not mistaken for rack telemetry
    finally:
        task.cancel()
