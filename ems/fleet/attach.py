"""Give a controller its fleet link: the outbox fed by its periods and events, the sender beside its loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ems.fleet.link import FleetLink

if TYPE_CHECKING:
    from ems.control_loop import Controller
    from ems.fleet.settings import FleetLinkConfig


def attach_link(ctl: Controller, cfg: FleetLinkConfig) -> FleetLink:
    """After ems/ha's attach, where there is one: only the active speaks for the site."""
    state_dir = ctl.cfg.state.dir
    gate = ctl.write_gate
    link = FleetLink(cfg, ctl.cfg.site, None if state_dir is None else state_dir / "fleet_outbox.db", ctl.events,
                     ctl.clock.wall, (lambda: True) if gate is None else gate.may_write)
    ctl.observers.append(link.observe)
    ctl.side_tasks.append(("fleet", link.run))
    return link
