"""A private MQTT broker for demos and tests: Mosquitto when installed, else amqtt.

Mosquitto runs as a child process on a free loopback port with TCP_NODELAY on (see
REFERENCES.md: Nagle adds a 40 ms tail). amqtt runs embedded, in-process; it is fine
for tens of clients (the demo), not for thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux default


def free_port() -> int:
    """A free loopback port below the OS's ephemeral range, never one this process was given
    before. A port the kernel handed out for bind(0) is ephemeral: once closed, the next
    outgoing connection (a client, a browser) may take it before our server binds it, so
    ports are drawn at random from below that range and checked free instead."""
    low, high = _ephemeral_range()
    # the larger stretch outside the ephemeral range (a system may have moved it)
    lo, hi = max([(10000, low - 1), (high + 1, 65535)], key=lambda r: r[1] - r[0])
    if hi - lo < 100:
        raise OSError(f"no room for test ports outside the ephemeral range {low}-{high}")
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randint(lo, hi)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError("no fresh free port on 127.0.0.1")


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    kind: str  # "mosquitto" or "amqtt"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


async def _wait_listening(host: str, port: int, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, w = await asyncio.open_connection(host, port)
            w.close()
            await w.wait_closed()
            return
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.02)


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)


@contextlib.asynccontextmanager
async def mosquitto(port: int | None = None, host: str = "127.0.0.1") -> AsyncIterator[Broker]:
    exe = mosquitto_path()
    if exe is None:
        raise FileNotFoundError("mosquitto is not installed")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="ems-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} {host}\nallow_anonymous true\nset_tcp_nodelay true\n"
            "persistence false\nmax_queued_messages 100000\nlog_dest none\n"
        )
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            try:
                await _wait_listening(host, port, 10.0)
            except OSError as exc:
                err = proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
                raise RuntimeError(f"mosquitto did not start on port {port}: {err}") from exc
            yield Broker(host, port, "mosquitto")
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.asynccontextmanager
async def embedded(port: int | None = None) -> AsyncIterator[Broker]:
    from amqtt.broker import Broker as AmqttBroker  # demo-only dependency, imported late

    port = port or free_port()
    config: dict[str, Any] = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = AmqttBroker(config)
    await broker.start()  # returns once the listener is bound
    try:
        yield Broker("127.0.0.1", port, "amqtt")
    finally:
        await broker.shutdown()


@contextlib.asynccontextmanager
async def private_broker(kind: str = "auto", port: int | None = None) -> AsyncIterator[Broker]:
    """kind: "auto" (Mosquitto if installed, else amqtt), "mosquitto" or "embedded"; on `port`
    (default: a free one)."""
    use_mosquitto = kind == "mosquitto" or (kind == "auto" and mosquitto_path() is not None)
    cm = mosquitto(port) if use_mosquitto else embedded(port)
    async with cm as broker:
        yield broker
