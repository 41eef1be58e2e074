"""Which changes of the site file apply without a restart.

Policy parameters, control tuning (except the period), failover tuning, logging and BESS
units added or removed apply at the next period (ems/unit_changes.py). Other devices, racks,
broker, HTTP, state directory, the arbitrage planner, smoothing's fast loop and levers and
demand response's channels (built at start-up) need a restart: a reload that changes them is refused, and the running
configuration stays.
"""

from __future__ import annotations

from ems.config import SiteConfig
from ems.unit_changes import live_unit_change_refused

_RESTART_SECTIONS = ("site", "meter", "genset", "gensets", "filler", "pv", "racks", "mqtt", "http", "state",
                     "simulation", "ha", "fleet")


def needs_restart(running: SiteConfig, new: SiteConfig) -> list[str]:
    """The fields whose change a reload cannot apply (empty: the reload can apply). BESS units
    added or removed apply while running (ems/unit_changes.py); a unit changed does not."""
    changed = [name for name in _RESTART_SECTIONS if getattr(running, name) != getattr(new, name)]
    if running.bess_units != new.bess_units and (why := live_unit_change_refused(running, new)) is not None:
        changed.append(why)
    if running.control.period_s != new.control.period_s:
        changed.append("control.period_s")
    if (running.failover is None) != (new.failover is None):
        changed.append("failover (added or removed)")
    # off-grid is built at start-up (grid-forming units, no failover) and `ems run` checked what it can drive
    rm, nm = running.microgrid, new.microgrid
    if (None if rm is None else rm.mode) != (None if nm is None else nm.mode):
        changed.append("microgrid.mode")
    if (None if rm is None else [g.id for g in rm.gensets]) != (None if nm is None else [g.id for g in nm.gensets]):
        changed.append("microgrid.gensets (added or removed)")
    if (None if rm is None else rm.genset_plan) != (None if nm is None else nm.genset_plan):
        changed.append("microgrid.genset_plan")  # the planner is built at start-up
    if running.policies.arbitrage != new.policies.arbitrage:
        changed.append("policies.arbitrage")
    # the fast loop, the GPU lever, the job ramps and the filler are built at start-up with these
    # the OpenADR VEN and the load-target channel are built at start-up; flex tiers and the
    # pre-charge are step parameters and apply at the next period
    rd, nd = running.policies.demand_response, new.policies.demand_response
    for part in ("openadr", "openadr3", "load_target"):
        if (None if rd is None else getattr(rd, part)) != (None if nd is None else getattr(nd, part)):
            changed.append(f"policies.demand_response.{part}")
    if (rd is None or not rd.enabled) != (nd is None or not nd.enabled):
        changed.append("policies.demand_response (added, removed, enabled or disabled)")
    if running.policies.smoothing != new.policies.smoothing:
        changed.append("policies.smoothing")
    elif running.policies.smoothing is not None and running.grid_connection != new.grid_connection:
        changed.append("grid_connection (the fast loop's limits)")
    return changed
