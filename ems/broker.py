"""A private MQTT broker for demos and tests: Mosquitto when installed, else amqtt.

Mosquitto runs as a child process on a free loopback port with TCP_NODELAY on (see
REFERENCES.md: Nagle adds a 40 ms tail). amqtt runs embedded, in-process; it is fine
for tens of clients (the demo), not for thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this process was given before: the OS may hand the
    same ephemeral port out twice in a row, and a site needs a distinct port per device."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
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
async def mosquitto(port: int | None = None) -> AsyncIterator[Broker]:
    exe = mosquitto_path()
    if exe is None:
        raise FileNotFoundError("mosquitto is not installed")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="ems-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
            "persistence false\nmax_queued_messages 100000\nlog_dest none\n"
        )
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            try:
                await _wait_listening("127.0.0.1", port, 10.0)
            except OSError as exc:
                err = proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
                raise RuntimeError(f"mosquitto did not start on port {port}: {err}") from exc
            yield Broker("127.0.0.1", port, "mosquitto")
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
async def private_broker(kind: str = "auto") -> AsyncIterator[Broker]:
    """kind: "auto" (Mosquitto if installed, else amqtt), "mosquitto" or "embedded"."""
    use_mosquitto = kind == "mosquitto" or (kind == "auto" and mosquitto_path() is not None)
    cm = mosquitto() if use_mosquitto else embedded()
    async with cm as broker:
        yield broker
