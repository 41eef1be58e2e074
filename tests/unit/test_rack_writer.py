"""The controller's row writers: how a slow or failing broker's acknowledgements reach the period."""

from __future__ import annotations

import asyncio

import pytest

from drivers.racks import RackCapWriter
from ems.mqtt_link import NotConnected

RACKS = [f"row{r:02d}-rack{k:02d}" for r in range(1, 11) for k in range(1, 3)]


async def test_rows_are_published_at_once_so_a_slow_broker_costs_one_timeout_not_one_per_row() -> None:
    """A broker slow to acknowledge QoS 1: ten rows published one after another held the
    control period for ten acknowledgements (up to ten publish timeouts, 10 s)."""
    writer = RackCapWriter("ems", RACKS, deadband_w=100.0)
    in_flight, most = 0, 0
    gate = asyncio.Event()

    async def slow_publish(topic: str, payload: bytes) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await gate.wait()  # the broker's acknowledgement
        in_flight -= 1

    by_row = writer.changes({r: 20_000.0 for r in RACKS})
    task = asyncio.create_task(writer.send(slow_publish, by_row))
    for _ in range(5):
        await asyncio.sleep(0)
    assert most == 10  # every row waiting on the broker together
    gate.set()
    assert await task == 10 and writer.changes({r: 20_000.0 for r in RACKS}) == {}


async def test_a_row_the_broker_refused_goes_again_the_rows_it_took_do_not() -> None:
    writer = RackCapWriter("ems", RACKS, deadband_w=100.0)
    published: list[str] = []

    async def publish(topic: str, payload: bytes) -> None:
        if "row03" in topic:
            raise NotConnected(topic)
        published.append(topic)

    with pytest.raises(NotConnected):
        await writer.send(publish, writer.changes({r: 20_000.0 for r in RACKS}))
    assert len(published) == 9  # the others were tried all the same
    assert set(writer.changes({r: 20_000.0 for r in RACKS})) == {"row03"}
