"""Off-grid or weak grid, live: rows capped in shed order while the sources cannot carry the load.

Carries out policies/offgrid_shed.py after each period step (step by step, released in reverse)
and records each change as an event. The shed parameters are built from the site file once, and
again only when a reload changes it.
"""

from __future__ import annotations

from ems.config import SiteConfig
from ems.events import EventLog
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot
from ems.period import StepResult
from policies import offgrid_shed
from policies.microgrid import MicrogridParams


def shed_params(cfg: SiteConfig) -> offgrid_shed.ShedParams | None:
    """The site file's shed order and pace (None: not an off-grid or weak-grid site)."""
    mgc, fc = cfg.microgrid, cfg.failover
    if mgc is None:
        return None
    return offgrid_shed.ShedParams(
        tuple(mgc.shed_order or ([] if fc is None else fc.shed_order)), frozenset(cfg.racks.critical_rows),
        mgc.min_cap_fraction, mgc.shed_step_s, mgc.shed_release_s)


class OffGridRows:
    def __init__(self, cfg: SiteConfig, events: EventLog) -> None:
        self.events = events
        self.params = shed_params(cfg)
        self.state = offgrid_shed.ShedState()

    def reconfigure(self, cfg: SiteConfig) -> None:
        self.params = shed_params(cfg)

    @property
    def rows(self) -> int:
        """How many rows are capped (the first of the shed sequence)."""
        return self.state.rows

    def caps(self, snap: SiteSnapshot, result: StepResult, mp: MicrogridParams, wall_s: float
             ) -> dict[str, float | None]:
        """Each rack's cap this period (None: released), from the step's microgrid outcome."""
        mg, p = result.microgrid, self.params
        assert mg is not None and p is not None
        x = offgrid_shed.inputs(snap.now_s, mg, result.setpoint_w, sum(hi for _, hi in result.unit_bounds_w.values()),
                                mp.dispatch.gensets, result.state.microgrid.gensets.recharge)
        out, self.state = offgrid_shed.decide(snap.racks, x, p, self.state)
        if out.change is not None:
            shed = out.change is Reason.OFFGRID_SHED
            self.events.record("offgrid_shed" if shed else "offgrid_shed_released", wall_s,
                               out.change.code, row=out.row, rows=len(out.rows),
                               unserved_w=round(x.unserved_w), no_relief=x.no_relief)
        return out.caps_w
