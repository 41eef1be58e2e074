"""systemd notify messages over a real AF_UNIX datagram socket (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from ems.sd_notify import Notifier


def _receiver(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(2.0)
    return s


def test_ready_once_then_watchdog_every_period_then_stopping() -> None:
    with tempfile.TemporaryDirectory(prefix="ems-sd-") as d:
        path = str(Path(d) / "notify")
        with _receiver(path) as rx:
            n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
            assert n.enabled and n.watchdog_s == 2.0
            n.period_done()
            n.period_done()
            n.stopping()
            n.close()
            got = [rx.recv(4096).decode() for _ in range(4)]
    assert got[0].splitlines()[0] == "READY=1"
    assert got[1:3] == ["WATCHDOG=1", "WATCHDOG=1"]
    assert got[3].splitlines()[0] == "STOPPING=1"
    assert n.send_failures == 0


def test_abstract_namespace_socket() -> None:
    name = f"ems-sd-test-{os.getpid()}"
    with _receiver("\0" + name) as rx:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.notify("WATCHDOG=1")
        assert rx.recv(4096) == b"WATCHDOG=1"
        n.close()


def test_no_op_without_notify_socket_and_survives_a_vanished_socket() -> None:
    n = Notifier({})
    assert not n.enabled and not n.notify("READY=1") and n.watchdog_s is None
    n.period_done()
    assert not n.ready
    gone = Notifier({"NOTIFY_SOCKET": "/nonexistent/ems-notify"})
    gone.period_done()  # never raises: the watchdog, not a crash, deals with a lost systemd
    assert gone.send_failures == 2 and not gone.ready
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_s is None  # the watchdog belongs to another process
