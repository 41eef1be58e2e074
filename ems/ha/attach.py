"""Put a controller under the lease: its writes gated, the role task beside its loop."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from ems.ha.handover import state_of, take_over
from ems.ha.role import HaRole

if TYPE_CHECKING:
    from ems.control_loop import Controller
    from ems.ha.settings import HaConfig


def _promoted(ctl: Controller, state: dict[str, Any] | None) -> None:
    take_over(ctl, state)
    ctl.run_now.set()  # the first write at once, not at the next tick


def attach(ctl: Controller, cfg: HaConfig, holder: str | None = None) -> HaRole:
    """`holder` names this controller in the lease (default: the host name)."""
    name = holder or socket.gethostname()
    role = HaRole(cfg, ctl.cfg.site, name, ctl.events, ctl.clock.wall,
                  lambda: state_of(ctl), lambda state: _promoted(ctl, state))
    # the pair shares a site file and a broker: each its own MQTT client ids, or the broker drops
    # one of them whenever the other connects
    client_id = f"{ctl.cfg.mqtt.client_id}-{name}"
    ctl.mqtt.identify_as(client_id)
    if ctl.failover is not None:
        ctl.failover.client_id = client_id
    ctl.write_gate = role
    ctl.side_tasks.append(("ha", role.run))
    if ctl.failover is not None:
        ctl.failover.may_fire = role.may_write
    return role
