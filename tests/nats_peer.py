"""Real NATS for the tests: the machine's server on 127.0.0.1:4222 (private bucket and stream
names per test), a private `nats-server` on a free port that a test may stop and start, and
a TCP relay a test can cut (sim_devices/tcp_relay.py: a partition between one peer and NATS)."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from sim_devices.nats_server import NatsServer, nats_binary
from sim_devices.tcp_relay import Relay

__all__ = ["PrivateNats", "Relay", "shared_nats_or_skip", "unique"]

SHARED_URL = os.environ.get("EMS_TEST_NATS_URL", "nats://127.0.0.1:4222")


NAMED: set[str] = set()  # every name handed out this session: their streams are deleted at its end


def unique(prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    NAMED.add(name)
    return name


async def delete_named_streams(url: str = SHARED_URL) -> int:
    """Delete the shared server's streams (KV buckets are streams) whose names hold a name
    `unique` handed out: the tests' private buckets and streams do not pile up. Best effort."""
    import nats

    if not NAMED:
        return 0
    nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        gone = 0
        for info in await js.streams_info():
            name = info.config.name or ""
            if any(n in name for n in NAMED):
                await js.delete_stream(name)
                gone += 1
        return gone
    finally:
        await nc.close()


def shared_nats_or_skip() -> str:
    host, port = SHARED_URL.removeprefix("nats://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError:
        pytest.skip(f"no NATS server at {SHARED_URL} (.ci/run starts one: nats-server -js)")
    return SHARED_URL


class PrivateNats(NatsServer):
    """sim_devices.nats_server's server, skipping the test where nats-server is not installed."""

    def __init__(self, store: Path) -> None:
        if nats_binary() is None:
            pytest.skip("nats-server is not installed (apt-get install nats-server)")
        super().__init__(store)
