"""Two controllers on two "machines" of one network, for partitions: a bridge on the host and a
network namespace per controller (root only; `ip` from iproute2).

The host's side of the bridge (10.231.N.1) is where the site's devices, the broker and NATS
listen; each controller runs in its own namespace (10.231.N.2, .3, ...) through a veth pair
on the bridge. `cut(name)` takes that controller's link down: its machine is off the network
(NATS, the broker, the devices and the other controller all gone at once, as when a switch
port or a cable fails), and `heal(name)` brings it back.
"""

from __future__ import annotations

import random
import secrets
import subprocess

from ems.model.errors import EmsError


class NoNetns(EmsError):
    """Network namespaces cannot be made here (not root, or no iproute2)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NoNetns(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


class PairNetwork:
    def __init__(self, names: tuple[str, ...]) -> None:
        self.tag = secrets.token_hex(2)  # interface names stay under 15 characters
        self.net = random.randint(1, 250)
        self.host_ip = f"10.231.{self.net}.1"
        self.bridge = f"emsbr{self.tag}"
        self.ns = {n: f"ems{self.tag}{n}" for n in names}
        self.ip = {n: f"10.231.{self.net}.{i + 2}" for i, n in enumerate(names)}
        self._made: list[tuple[str, str]] = []

    def up(self) -> PairNetwork:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", self.bridge))
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for n, ns in self.ns.items():
                host_end, ns_end = f"v{self.tag}{n}", f"p{self.tag}{n}"
                _ip("netns", "add", ns)
                self._made.append(("netns", ns))
                _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
                _ip("link", "set", ns_end, "netns", ns)
                _ip("link", "set", host_end, "master", self.bridge)
                _ip("link", "set", host_end, "up")
                _ip("-n", ns, "addr", "add", f"{self.ip[n]}/24", "dev", ns_end)
                _ip("-n", ns, "link", "set", ns_end, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except NoNetns:
            self.down()
            raise
        return self

    def exec_prefix(self, name: str) -> list[str]:
        """Run a command on that controller's "machine"."""
        return ["ip", "netns", "exec", self.ns[name]]

    def cut(self, name: str) -> None:
        _ip("link", "set", f"v{self.tag}{name}", "down")

    def heal(self, name: str) -> None:
        _ip("link", "set", f"v{self.tag}{name}", "up")

    def down(self) -> None:
        """Remove what was made (a namespace takes its veth pair with it)."""
        for kind, what in reversed(self._made):
            subprocess.run(["ip", kind, "del", what], capture_output=True, check=False)
        self._made.clear()
