"""Real NATS for the tests: the machine's server on 127.0.0.1:4222 (private bucket and stream
names per test), a private `nats-server` on a free port that a test may stop and start, and
a TCP relay a test can cut (sim_devices/tcp_relay.py: a partition between one peer and NATS)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ems.broker import free_port
from sim_devices.tcp_relay import Relay

__all__ = ["PrivateNats", "Relay", "shared_nats_or_skip", "unique"]

SHARED_URL = os.environ.get("EMS_TEST_NATS_URL", "nats://127.0.0.1:4222")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def shared_nats_or_skip() -> str:
    host, port = SHARED_URL.removeprefix("nats://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError:
        pytest.skip(f"no NATS server at {SHARED_URL} (.ci/run starts one: nats-server -js)")
    return SHARED_URL


def nats_binary() -> str | None:
    return shutil.which("nats-server") or next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server")
                                                if os.path.exists(p)), None)


class PrivateNats:
    """A nats-server with JetStream on a free port and its own store; stop() and start() again."""

    def __init__(self, store: Path) -> None:
        binary = nats_binary()
        if binary is None:
            pytest.skip("nats-server is not installed (apt-get install nats-server)")
        self.binary, self.store, self.port = binary, store, free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js",
                                      "-sd", str(self.store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            time.sleep(0.02)
        raise RuntimeError("private nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
