"""Island operation, from grid loss to reconnection: a pure state machine.

While islanded, grid-trading policies stand down and this decides, every period: rack
caps so the load fits what the BESS (and a running genset) can carry — re-planned as
SoC falls, deeper (every non-critical rack at its minimum) if the genset failed to
start, relaxed once the genset carries load (running is not enough: it must deliver);
genset start (at once or after a delay) and its battery-charging request. When the grid has been back and stable for
`reconnect_stable_s` it asks for the planned reconnection; a loss in the meantime
restarts the wait (a flapping grid never reconnects early). After reconnection, caps
ramp back to nameplate over `cap_release_s` and the genset stops once it has run its
minimum time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from ems.model.readings import GensetState
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot
from policies.failover_plan import FailoverParams, battery_deliverable_w, caps_to_fit


@dataclass(frozen=True, slots=True)
class IslandParams:
    plan: FailoverParams
    reconnect_stable_s: float
    cap_release_s: float
    has_genset: bool
    genset_start_after_s: float
    genset_min_run_s: float
    genset_charge_w: float


@dataclass(frozen=True, slots=True)
class IslandState:
    islanded: bool = False
    loss_at_s: float | None = None
    grid_ok_since_s: float | None = None
    genset_started: bool = False
    genset_stop_sent: bool = False
    genset_start_at_s: float | None = None  # the last start sent, and how many so far this outage
    genset_start_tries: int = 0
    reconnected_at_s: float | None = None
    caps_w: dict[str, float] = field(default_factory=dict)  # caps owned by failover, in force
    release_from_w: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IslandActions:
    caps_w: dict[str, float | None]  # failover-owned caps to hold (None: release)
    genset: Literal["start", "stop"] | None
    genset_charge_w: float | None
    reconnect: bool
    reason: Reason | None  # None: not islanded, nothing to report


def on_grid_loss(state: IslandState, now_s: float, caps_w: dict[str, float], genset_started: bool) -> IslandState:
    """The fast path fired (or the loop found the site islanded). `genset_started`: the fast
    path sent the start. One sent in an earlier outage does not count: that genset may have
    failed or been stopped since (a start to one still running is harmless)."""
    return IslandState(islanded=True, loss_at_s=now_s, genset_started=genset_started,
                       genset_start_at_s=now_s if genset_started else None, genset_start_tries=int(genset_started),
                       caps_w={**state.caps_w, **caps_w})


GENSET_CARRYING_FRACTION = 0.25
# a start the genset did not take (refused, timed out, ignored: it still reports stopped) is sent
# again after this, doubling each time up to the most: never a command every period
GENSET_RETRY_FIRST_S = 2.0
GENSET_RETRY_MAX_S = 120.0


def _genset_relief_w(power_w: float, rated_w: float, load_w: float) -> float:
    """What a running genset counts for: its rating once it carries load (at least a quarter
    of what it could carry now: a share by rating still passes), else only what it delivers
    (running, breaker open: a rating that relaxed the caps would drop the load on the BESS)."""
    if power_w >= GENSET_CARRYING_FRACTION * min(rated_w, load_w):
        return rated_w
    return max(0.0, power_w)


def _island_caps(snap: SiteSnapshot, p: IslandParams, state: IslandState, genset_w: float,
                 genset_failed: bool) -> dict[str, float]:
    racks = snap.racks
    # a rack we capped would draw up to nameplate if released: plan with that, or caps chatter
    capped = np.array([rid in state.caps_w for rid in racks.rack_ids])
    load_w = np.where(capped, racks.nameplate_w, racks.conservative_power_w())
    plan = p.plan
    if genset_failed:
        plan = replace(plan, shed_order=tuple(dict.fromkeys(racks.row_of_rack)))
    _, battery_w = battery_deliverable_w(snap, plan)
    deliverable_w = battery_w + plan.island_loading * genset_w
    if genset_failed:
        # no relief coming: every non-critical rack to its minimum, to stretch the energy
        floor = plan.min_cap_fraction * racks.nameplate_w
        keep = np.array([r in plan.critical_rows for r in racks.row_of_rack])
        deep = {rid: float(floor[i]) for i, rid in enumerate(racks.rack_ids) if not keep[i]}
        load_w = np.where(keep, load_w, floor)
        caps, _ = caps_to_fit(racks, load_w, float(load_w.sum()) * (1 + plan.overhead_fraction) - deliverable_w,
                              replace(plan, critical_rows=frozenset()))
        return {**deep, **caps}
    caps, _ = caps_to_fit(racks, load_w, float(load_w.sum()) * (1 + plan.overhead_fraction) - deliverable_w, plan)
    return caps


def step(snap: SiteSnapshot, p: IslandParams, state: IslandState) -> tuple[IslandActions, IslandState]:
    now = snap.now_s
    if not state.islanded:
        return _after_reconnection(snap, p, state)
    genset = snap.genset
    running = genset is not None and genset.state is GensetState.RUNNING
    grid_ok = bool(snap.grid_ok)
    since = (state.grid_ok_since_s if state.grid_ok_since_s is not None else now) if grid_ok else None
    start: Literal["start", "stop"] | None = None
    started = state.genset_started
    loss_at = state.loss_at_s if state.loss_at_s is not None else now
    tries, sent_at = state.genset_start_tries, state.genset_start_at_s
    due = p.has_genset and now - loss_at >= p.genset_start_after_s
    idle = genset is not None and genset.state in (GensetState.STOPPED, GensetState.COOLDOWN)
    wait_s = min(GENSET_RETRY_FIRST_S * 2.0 ** max(tries - 1, 0), GENSET_RETRY_MAX_S)
    if due and not started:
        start, started, tries, sent_at = "start", True, 1, now
    elif due and idle and now - (loss_at if sent_at is None else sent_at) >= wait_s:
        start, tries, sent_at = "start", tries + 1, now  # the start sent did not take
    failed = genset is not None and genset.state is GensetState.FAILED
    genset_w = 0.0 if not running or genset is None else _genset_relief_w(genset.power_w, genset.rated_power_w,
                                                                           snap.racks.load_estimate_w)
    caps = _island_caps(snap, p, state, genset_w, failed)
    charge_w = p.genset_charge_w if running and p.genset_charge_w > 0 else None
    if since is not None and now - since >= p.reconnect_stable_s:
        new = replace(state, islanded=False, grid_ok_since_s=None, genset_started=started,
                      genset_start_at_s=sent_at, genset_start_tries=tries,
                      reconnected_at_s=now, caps_w=caps, release_from_w=caps)
        return IslandActions(dict(caps), start, 0.0 if charge_w else None, True, Reason.RECONNECT_WAIT), new
    reason = Reason.GENSET_START_FAILED if failed else Reason.RECONNECT_WAIT if since is not None else Reason.ISLANDED
    released: dict[str, float | None] = {rid: None for rid in state.caps_w if rid not in caps}
    new = replace(state, grid_ok_since_s=since, genset_started=started, genset_start_at_s=sent_at,
                  genset_start_tries=tries, caps_w=caps)
    return IslandActions({**released, **caps}, start, charge_w, False, reason), new


def _after_reconnection(snap: SiteSnapshot, p: IslandParams,
                        state: IslandState) -> tuple[IslandActions, IslandState]:
    caps_out: dict[str, float | None] = {}
    new = state
    if state.reconnected_at_s is not None and state.release_from_w:
        done = 1.0 if p.cap_release_s <= 0 else min(1.0, (snap.now_s - state.reconnected_at_s) / p.cap_release_s)
        nameplate = dict(zip(snap.racks.rack_ids, snap.racks.nameplate_w, strict=True))
        if done >= 1.0:
            caps_out = dict.fromkeys(state.release_from_w)
            new = replace(new, caps_w={}, release_from_w={})
        else:
            ramped = {rid: cap + done * (float(nameplate[rid]) - cap) for rid, cap in state.release_from_w.items()}
            caps_out = dict(ramped)
            new = replace(new, caps_w=ramped)
    stop: Literal["start", "stop"] | None = None
    genset = snap.genset
    if (p.has_genset and state.genset_started and not state.genset_stop_sent and genset is not None
            and state.reconnected_at_s is not None and genset.start_requested
            and genset.run_s >= p.genset_min_run_s):
        stop = "stop"
        new = replace(new, genset_stop_sent=True, genset_started=False)
    elif state.genset_stop_sent and genset is not None and not genset.start_requested:
        new = replace(new, genset_stop_sent=False)
    return IslandActions(caps_out, stop, None, False, None), new
