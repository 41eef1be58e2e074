"""systemd's notify protocol, without a dependency: datagrams to `$NOTIFY_SOCKET`.

`Type=notify` units learn from `READY=1` that the daemon works (here: after its first
control period), from `WATCHDOG=1` that it still does (`WatchdogSec=`), and from
`STOPPING=1` that it is shutting down. Without `NOTIFY_SOCKET` (not under systemd) every
call is a no-op. A failed send is never fatal: the watchdog then restarts us, which is
what it is for.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        # "@name" is Linux's abstract namespace: a leading NUL byte on the wire
        self.address: str | None = None if not path else ("\0" + path[1:] if path.startswith("@") else path)
        self._sock: socket.socket | None = None
        self.ready = False
        self.send_failures = 0
        watchdog_us = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # the watchdog is meant for us unless WATCHDOG_PID names another process
        self.watchdog_s: float | None = (int(watchdog_us) / 1e6 if watchdog_us.isdigit() and
                                         (not pid or pid == str(os.getpid())) else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, state: str) -> bool:
        """Send one `KEY=value` message (newline-separated for several); False if it did not go."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(state.encode(), self.address)
            return True
        except OSError:
            self.send_failures += 1
            return False

    def period_done(self) -> None:
        """After each healthy control period: READY=1 the first time, WATCHDOG=1 every time."""
        if not self.ready:
            self.ready = self.notify("READY=1\nSTATUS=controlling")
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1\nSTATUS=stopping: bringing units to 0 W")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
