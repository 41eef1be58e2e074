"""Off-grid or weak-grid: graded shedding by the shed order when the sources cannot cover the load.

Pure, each period, after the period step. Shedding is needed while

* the battery, the running gensets and the grid's allowance cannot carry the load (the
  step expects load not served: UNSERVED_LOAD), or
* the battery runs low (the dispatch's recharge latch), it carries part of the load (more
  than the grid's allowance), and no genset is on its way (each failed, tripped or none at
  all): no relief is coming, so the battery's energy is stretched.

While it is needed, one more row is capped every `step_s` (OFFGRID_SHED), in the shed order
(`shed_order` first, then the other non-critical rows from the last backwards; critical rows
never): each of its racks at `min_cap_fraction` of its nameplate. Not all at once: the load
falls step by step until it fits. Once no longer needed, rows come back in reverse order
(OFFGRID_SHED_RELEASED), one every `release_hold_s`, and only when the sources' headroom
covers the row's load at nameplate plus `release_margin` (hysteresis: a release that would
bring the shortfall straight back is not made).
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.racks import RacksReading
from ems.model.reasons import Reason
from policies.failover_plan import shed_sequence
from policies.genset_dispatch import GensetSpec, Phase
from policies.microgrid import MicrogridOutcome, shortfall

NAME = "offgrid_shed"


@dataclass(frozen=True, slots=True)
class ShedParams:
    shed_order: tuple[str, ...] = ()  # rows capped first .. last (the others follow from the last row back)
    critical_rows: frozenset[str] = frozenset()  # never capped
    min_cap_fraction: float = 0.25
    step_s: float = 20.0  # one more row at most this often
    release_hold_s: float = 120.0  # one row back at most this often, and this long after the last change
    release_margin: float = 0.25  # the headroom must exceed a row's load at nameplate by this share


@dataclass(frozen=True, slots=True)
class ShedState:
    rows: int = 0  # rows capped, the first `rows` of the sequence
    changed_s: float | None = None


@dataclass(frozen=True, slots=True)
class ShedInputs:
    now_s: float
    unserved_w: float  # what the sources cannot carry now (the step's expectation)
    no_relief: bool  # the battery runs low and no genset is on its way
    headroom_w: float  # what the sources could give beyond the load now (battery + running gensets + grid)


@dataclass(frozen=True, slots=True)
class ShedOutcome:
    caps_w: dict[str, float | None]  # each rack's cap (None: released)
    rows: tuple[str, ...]  # the rows capped
    change: Reason | None = None  # OFFGRID_SHED or OFFGRID_SHED_RELEASED when a row changed this period
    row: str | None = None  # the row that changed


def sequence(racks: RacksReading, p: ShedParams) -> list[str]:
    """The non-critical rows in the order they are capped."""
    rows = list(dict.fromkeys(racks.row_of_rack))
    return [r for r in shed_sequence(rows, p.shed_order, p.critical_rows) if r not in p.critical_rows]


def _row_release_w(racks: RacksReading, row: str, p: ShedParams) -> float:
    """What a row's racks may draw back, at nameplate, once their caps go."""
    return sum((1.0 - p.min_cap_fraction) * float(n)
               for r, n in zip(racks.row_of_rack, racks.nameplate_w, strict=True) if r == row)


def decide(racks: RacksReading, x: ShedInputs, p: ShedParams, state: ShedState) -> tuple[ShedOutcome, ShedState]:
    seq = sequence(racks, p)
    n = min(state.rows, len(seq))
    since = None if state.changed_s is None else x.now_s - state.changed_s
    change: Reason | None = None
    row: str | None = None
    if x.unserved_w > 0.0 or x.no_relief:
        if n < len(seq) and (since is None or since >= p.step_s or n == 0):
            row, n, change = seq[n], n + 1, Reason.OFFGRID_SHED
    elif (n > 0 and (since is None or since >= p.release_hold_s)
          and x.headroom_w >= (1.0 + p.release_margin) * _row_release_w(racks, seq[n - 1], p)):
        row, n, change = seq[n - 1], n - 1, Reason.OFFGRID_SHED_RELEASED
    capped = frozenset(seq[:n])
    caps: dict[str, float | None] = {
        rid: float(p.min_cap_fraction * nameplate) if r in capped else None
        for rid, r, nameplate in zip(racks.rack_ids, racks.row_of_rack, racks.nameplate_w, strict=True)}
    new_state = ShedState(n, x.now_s if change is not None else state.changed_s)
    return ShedOutcome(caps, tuple(seq[:n]), change, row), new_state


def inputs(now_s: float, outcome: MicrogridOutcome, setpoint_w: float, battery_max_discharge_w: float,
           gensets: tuple[GensetSpec, ...], recharging: bool) -> ShedInputs:
    """The period's need and headroom, from the step's microgrid outcome and the setpoint written."""
    unserved_w, _ = shortfall(outcome, setpoint_w)
    phases = outcome.dispatch.phases
    coming = any(ph in (Phase.STARTING, Phase.WARMUP, Phase.RUNNING) for ph in phases.values())
    running_w = sum(g.rated_w for g in gensets if phases.get(g.genset_id) is Phase.RUNNING)
    headroom_w = (0.0 if outcome.demand_w is None else
                  battery_max_discharge_w + running_w + outcome.grid_allowance_w - outcome.demand_w)
    # the battery must be giving for its energy to need stretching (a weak grid may carry the load)
    drawing = outcome.demand_w is not None and outcome.demand_w > outcome.grid_allowance_w
    return ShedInputs(now_s, unserved_w, recharging and not coming and drawing, headroom_w)
