"""Demand response: hold grid import at or under an event's target for its window.

Before the window (`precharge_s`) the battery charges towards `precharge_soc` (a soft
target: an import cap or the grid's limits still bound it). During the window the battery
covers what it can above the reserve: the site's load over the aim (smoothed, and at once
when the load rises), as a bound and a target, up to its room: its power, and its energy
above the reserve spread over what is left of the window, so it does not run empty
halfway. What it cannot cover comes off the GPU racks by flex tier: tier 0 never, tier 1 gives up at most
10 % of its throughput, tier 2 25 %, tier 3 50 %, tier 4 may pause; the most flexible tier
first, critical rows last. A rack's cap never goes under (1 - its tier's share) of its
recent peak power, so whatever its job's swing, it is never served less than that share of
its demand (throughput taken as proportional to the energy served: conservative, GPUs
lose less work than power under a moderate cap).

The GPU cut is an integral controller on what the load over the aim leaves with the battery
at its room (smoothed), not a one-shot guess: a cap under a rack's peak first clips only its
peaks, so how much a cap saves is learnt from the meter, not assumed. The cut falls back
while the battery has room to spare, so at rest the battery gives its room and the racks
only the rest; where the grid as it will be (the metered load less the battery's part,
smoothed) is over the target itself, that drives it too, for what the model misses. Caps are
quantised (`cap_step_fraction` of nameplate) so a steady cut is not a new message per row
every period. Pure: time comes in the snapshot, the caller books what the battery did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from ems.model.decision import Decision
from ems.model.dr import DrEvent
from ems.model.racks import FloatArray, RacksReading
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot

NAME = "demand_response"
TIER_MAX_CUT = (0.0, 0.10, 0.25, 0.50, 1.0)  # share of throughput a tier may give up
TIERS = len(TIER_MAX_CUT)


@dataclass(frozen=True, slots=True)
class DrParams:
    tier_of_row: Mapping[str, int] = field(default_factory=dict)
    default_tier: int = 0
    critical_rows: frozenset[str] = frozenset()
    precharge_s: float = 3600.0
    precharge_soc: float = 0.95
    margin_fraction: float = 0.03  # aim this share under the target: the 1-minute average stays under it
    battery_share: float = 0.95  # of the battery's room planned on: the rest answers the load's swing
    baseline_tau_s: float = 900.0  # the site's own baseline: import averaged over this before an event
    rack_tau_s: float = 300.0  # a rack's recent mean and peak power decay over this
    shortfall_tau_s: float = 10.0
    gain_per_s: float = 0.5  # the GPU cut's integral gain
    release_per_s: float = 0.005  # the cut falls back by at most this share of the tiers' room a second
    cap_step_fraction: float = 0.02


@dataclass(frozen=True)
class EventTally:
    """One event's figures so far (or in the end)."""

    event_id: str
    source: str
    start_s: float
    end_s: float
    baseline_w: float
    target_w: float
    price_per_kwh: float
    price_per_kw: float
    duration_s: float = 0.0
    import_wh: float = 0.0
    battery_wh: float = 0.0  # discharged by the battery during the window
    throttled_wh: tuple[float, ...] = (0.0,) * TIERS  # GPU energy under the racks' means before the event, by tier
    tier_wh: tuple[float, ...] = (0.0,) * TIERS  # the racks' energy without DR, by tier
    minutes: int = 0  # whole minutes closed
    minutes_at_target: int = 0  # of those, at or under the target (1-minute average)
    minute_wh: float = 0.0
    minute_s: float = 0.0
    seconds_to_target: float | None = None  # from the start to the first period at or under it
    unreachable_s: float = 0.0

    @property
    def achieved_w(self) -> float | None:
        return None if self.duration_s <= 0 else self.import_wh * 3600.0 / self.duration_s

    @property
    def shifted_wh(self) -> float:
        a = self.achieved_w
        return 0.0 if a is None else max(self.baseline_w - a, 0.0) * self.duration_s / 3600.0

    @property
    def gpu_throttled_wh(self) -> float:
        return sum(max(w, 0.0) for w in self.throttled_wh)

    @property
    def revenue(self) -> float:
        a = self.achieved_w
        kw = 0.0 if a is None else max(self.baseline_w - a, 0.0) / 1e3
        return self.shifted_wh / 1e3 * self.price_per_kwh + kw * self.price_per_kw

    def throughput_given_up(self) -> dict[int, float]:
        """Per tier with racks: the share of its racks' work given up (energy not served)."""
        return {t: max(self.throttled_wh[t], 0.0) / self.tier_wh[t] for t in range(TIERS) if self.tier_wh[t] > 0}

    def summary(self) -> dict[str, object]:
        a = self.achieved_w
        return {
            "event_id": self.event_id, "source": self.source, "start_s": self.start_s, "end_s": self.end_s,
            "baseline_w": round(self.baseline_w, 1), "target_w": round(self.target_w, 1),
            "achieved_w": None if a is None else round(a, 1), "duration_s": round(self.duration_s, 1),
            "shifted_kwh": round(self.shifted_wh / 1e3, 3), "battery_kwh": round(self.battery_wh / 1e3, 3),
            "gpu_throttled_kwh": round(self.gpu_throttled_wh / 1e3, 3),
            "gpu_throttled_kwh_by_tier": {str(t): round(max(w, 0.0) / 1e3, 3)
                                          for t, w in enumerate(self.throttled_wh) if self.tier_wh[t] > 0},
            "throughput_given_up_by_tier": {str(t): round(s, 4) for t, s in self.throughput_given_up().items()},
            "minutes": self.minutes, "minutes_at_target": self.minutes_at_target,
            "seconds_to_target": self.seconds_to_target, "unreachable_s": round(self.unreachable_s, 1),
            "revenue": round(self.revenue, 2)}


@dataclass(frozen=True)
class DrState:
    import_avg_w: float | None = None  # the site's own baseline (import, averaged), held during events
    rack_mean_w: FloatArray | None = None  # each rack's recent mean power, held while DR caps it
    rack_peak_w: FloatArray | None = None  # and its recent peak
    cut_w: float = 0.0  # the GPU cut asked, in cap terms (W under the racks' peaks)
    shortfall_w: float = 0.0  # smoothed: the grid's import over the aim
    load_avg_w: float | None = None  # during an event: the site's load, smoothed
    grid_avg_w: float | None = None  # and the grid's import with the battery's part
    capped: bool = False  # DR caps racks now
    rack_capped: npt.NDArray[np.bool_] | None = None  # which racks DR caps now
    baseline_s: float = 0.0  # how long the baseline has averaged (a plain mean until baseline_tau_s)
    tally: EventTally | None = None


@dataclass(frozen=True)
class DrOutcome:
    phase: str | None  # "precharge", "active" or None
    event_id: str | None
    target_w: float | None
    caps_w: dict[str, float | None]  # every rack (None: released); empty while DR never capped
    gpu_reason: Reason | None  # DR_GPU_THROTTLE or DR_TARGET_UNREACHABLE while racks are capped
    battery_room_w: float = 0.0
    cut_w: float = 0.0
    finished: EventTally | None = None  # an event that ended (or was cancelled) this period


def tier_of_racks(racks: RacksReading, p: DrParams) -> npt.NDArray[np.int_]:
    return np.array([p.tier_of_row.get(row, p.default_tier) for row in racks.row_of_rack], dtype=int)


def _decay(dt_s: float, tau_s: float) -> float:
    return math.exp(-dt_s / tau_s) if tau_s > 0 else 0.0


def _track_racks(racks: RacksReading, p: DrParams, state: DrState, dt_s: float) -> DrState:
    """Each rack's recent mean and peak, from its power while DR does not cap it."""
    power = racks.conservative_power_w()
    if state.rack_mean_w is None or state.rack_peak_w is None or len(state.rack_mean_w) != len(power):
        return replace(state, rack_mean_w=power.copy(), rack_peak_w=power.copy())
    if state.capped:  # its own caps would pull the baselines down: held
        return state
    k = _decay(dt_s, p.rack_tau_s)
    mean = k * state.rack_mean_w + (1 - k) * power
    peak = np.maximum(power, k * state.rack_peak_w + (1 - k) * mean)
    return replace(state, rack_mean_w=mean, rack_peak_w=peak)


def allocate(racks: RacksReading, peak_w: FloatArray, cut_w: float,
             p: DrParams) -> tuple[dict[str, float | None], float]:
    """Caps that take `cut_w` off the racks' peaks: tier 4 first, tier 1 last, critical rows
    after every other row; within a group each rack gives the same share of its room.
    Returns every rack's cap (None: none) and what no tier could give."""
    tiers = tier_of_racks(racks, p)
    critical = np.array([row in p.critical_rows for row in racks.row_of_rack], dtype=bool)
    room = peak_w * np.array(TIER_MAX_CUT)[tiers]
    caps = np.full(len(peak_w), np.nan)
    left = cut_w
    for crit in (False, True):
        for tier in range(TIERS - 1, 0, -1):
            if left <= 0:
                break
            idx = np.flatnonzero((tiers == tier) & (critical == crit))
            group = float(room[idx].sum())
            if group <= 0:
                continue
            share = min(1.0, left / group)
            caps[idx] = peak_w[idx] - share * room[idx]
            left -= share * group
    step = p.cap_step_fraction * racks.nameplate_w
    out: dict[str, float | None] = {}
    for i, rid in enumerate(racks.rack_ids):
        c = caps[i]
        out[rid] = None if math.isnan(c) else float(max(math.floor(c / step[i]) * step[i], 0.0))
    return out, max(left, 0.0)


def _mask(caps: dict[str, float | None]) -> npt.NDArray[np.bool_]:
    return np.array([c is not None for c in caps.values()], dtype=bool)


def room_w(max_discharge_w: float, energy_above_reserve_wh: float, remaining_s: float) -> float:
    """The battery's room: its power, and its energy spread over what is left of the window."""
    if remaining_s <= 0:
        return max_discharge_w
    return max(min(max_discharge_w, energy_above_reserve_wh * 3600.0 / remaining_s), 0.0)


def _phase(event: DrEvent | None, now_s: float, p: DrParams) -> str | None:
    if event is None:
        return None
    if event.start_s <= now_s < event.end_s:
        return "active"
    if event.start_s - p.precharge_s <= now_s < event.start_s:
        return "precharge"
    return None


def decide(snap: SiteSnapshot, p: DrParams, state: DrState, event: DrEvent | None, max_discharge_w: float,
           energy_above_reserve_wh: float, max_charge_w: float, charge_to_soc_wh: float
           ) -> tuple[Decision | None, DrOutcome, DrState]:
    """The battery's constraint (None: none), the racks' caps and the new state.

    `max_discharge_w`/`max_charge_w`: the battery's limits this period (reserve included);
    `energy_above_reserve_wh`: what it may still discharge; `charge_to_soc_wh`: what it
    needs to reach `precharge_soc`."""
    now, dt = snap.wall_s, snap.period_s
    state = _track_racks(snap.racks, p, state, dt)
    phase = _phase(event, now, p)
    finished = None
    tally = state.tally
    if tally is not None and (phase != "active" or event is None or event.event_id != tally.event_id):
        finished, tally = tally, None
    released: dict[str, float | None] = dict.fromkeys(snap.racks.rack_ids) if state.capped or finished else {}
    if phase != "active":
        if phase is None and snap.meter is not None:  # the baseline: import without DR at work
            a = state.import_avg_w
            # a plain mean over what there is until the window is full, then exponential
            w = max(1 - _decay(dt, p.baseline_tau_s), dt / (state.baseline_s + dt))
            g = snap.meter.grid_power_w
            state = replace(state, import_avg_w=g if a is None else a + w * (g - a), baseline_s=state.baseline_s + dt)
        state = replace(state, cut_w=0.0, shortfall_w=0.0, load_avg_w=None, grid_avg_w=None, capped=False,
                        rack_capped=None, tally=None)
        d = None
        if phase == "precharge" and event is not None and charge_to_soc_wh > 0:
            left_s = max(event.start_s - now, dt)
            charge_w = min(max_charge_w, charge_to_soc_wh * 3600.0 / left_s)
            d = Decision(NAME, Reason.DR_PRECHARGE, target_w=-charge_w) if charge_w > 0 else None
        return d, DrOutcome(phase, None if event is None else event.event_id, None, released, None,
                            finished=finished), state
    assert event is not None
    if tally is None:
        baseline = event.baseline_w if event.baseline_w is not None else state.import_avg_w
        if baseline is None:  # no meter reading since start: the site's load is the best guess
            baseline = snap.site_load_avg_w or 0.0
        tally = EventTally(event.event_id, event.source, event.start_s, event.end_s, baseline,
                           event.target_w(baseline), event.price_per_kwh, event.price_per_kw)
    target_w = tally.target_w
    aim_w = target_w - p.margin_fraction * abs(target_w)
    room = p.battery_share * room_w(max_discharge_w, energy_above_reserve_wh, event.end_s - now)
    load_w = snap.site_load_avg_w
    peak = state.rack_peak_w
    assert peak is not None
    if load_w is None:  # no trusted meter: the cut is held; the cap's safe action holds the battery
        caps, _ = allocate(snap.racks, peak, state.cut_w, p)
        return None, DrOutcome("active", event.event_id, target_w, caps, None, room, state.cut_w, finished), replace(
            state, capped=True, rack_capped=_mask(caps), tally=tally)
    k = _decay(dt, p.shortfall_tau_s)
    load_avg = load_w if state.load_avg_w is None else k * state.load_avg_w + (1 - k) * load_w
    # the battery covers the load over the aim, smoothed (the 1-minute average is what counts, and a
    # battery chasing each swing is clipped at its room on the peaks), up to its room: its energy
    # lasts the window, and what it does not need now is there later
    battery_w = min(max(load_avg - aim_w, 0.0), room)
    at_least_w = min(load_w - aim_w, room)  # and a load coming back (from a checkpoint) at once
    # the GPU cut's error: what the load over the aim leaves with the battery at its room. The cut
    # grows while the battery cannot cover it and falls back while the battery has room to spare:
    # at rest the battery gives its room and the racks only the rest
    shortfall = k * state.shortfall_w + (1 - k) * (load_w - aim_w - room)
    # and the grid as it will be with the battery's part (the load as metered, under the caps in
    # force): where that is over the target itself (a swing the caps clip unevenly, a load coming
    # back from a checkpoint faster than the smoothed load), the cut grows whatever the model says
    grid_now = load_w - max(battery_w, at_least_w)
    grid_avg = grid_now if state.grid_avg_w is None else k * state.grid_avg_w + (1 - k) * grid_now
    error = max(shortfall, grid_avg - aim_w) if grid_avg > target_w else shortfall
    most_w = float((peak * np.array(TIER_MAX_CUT)[tier_of_racks(snap.racks, p)]).sum())  # every tier's room
    # released slowly: a checkpoint's dip must not undo the cut the load needs when it comes back. At
    # most the whole error a period: a long period (a backtest's minute) must not overshoot into a limit cycle
    delta = max(min(p.gain_per_s * dt, 1.0) * error, -p.release_per_s * dt * most_w)
    cut = min(max(state.cut_w + delta, 0.0), most_w)
    caps, _ = allocate(snap.racks, peak, cut, p)
    # unreachable: every tier at its limit and the grid (smoothed) over the target itself, not just the aim
    unreachable = error > p.margin_fraction * abs(target_w) and cut >= most_w
    reason = Reason.DR_TARGET_UNREACHABLE if unreachable else Reason.DR_EVENT_ACTIVE
    gpu = None if cut <= 0 else (Reason.DR_TARGET_UNREACHABLE if unreachable else Reason.DR_GPU_THROTTLE)
    d = Decision(NAME, reason, min_w=max(battery_w, at_least_w), target_w=battery_w)
    state = replace(state, cut_w=cut, shortfall_w=shortfall, load_avg_w=load_avg, grid_avg_w=grid_avg, capped=True,
                    rack_capped=_mask(caps),
                    tally=replace(tally, unreachable_s=tally.unreachable_s + (dt if unreachable else 0.0)))
    return d, DrOutcome("active", event.event_id, target_w, caps, gpu, room, cut, finished), state


def book(snap: SiteSnapshot, p: DrParams, state: DrState, battery_w: float) -> DrState:
    """An active event's figures after the period: the grid's import (as metered this
    period), the battery's discharge, the GPU energy given up by tier, the minutes at target."""
    t = state.tally
    if t is None or snap.meter is None or state.rack_mean_w is None:
        return state
    dt = snap.period_s
    grid_w = snap.meter.mean_w  # one sample a period of a swing is not its energy
    tiers = tier_of_racks(snap.racks, p)
    mean = state.rack_mean_w
    # signed: a swinging rack is under its mean half the time capped or not; the sum is what the caps
    # took, over the periods a rack is capped
    given = mean - snap.racks.conservative_power_w()
    if state.rack_capped is not None and len(state.rack_capped) == len(given):
        given = np.where(state.rack_capped, given, 0.0)
    throttled = tuple(t.throttled_wh[k] + float(given[tiers == k].sum()) * dt / 3600.0 for k in range(TIERS))
    tier_wh = tuple(t.tier_wh[k] + float(mean[tiers == k].sum()) * dt / 3600.0 for k in range(TIERS))
    since_s = snap.wall_s - t.start_s
    minute_wh, minute_s = t.minute_wh + grid_w * dt / 3600.0, t.minute_s + dt
    minutes, at = t.minutes, t.minutes_at_target
    if minute_s >= 60.0 - 1e-9:  # a minute closed: its average against the target
        minutes += 1
        at += minute_wh * 3600.0 / minute_s <= t.target_w
        minute_wh, minute_s = 0.0, 0.0
    # the first period whose metered import (averaged where the meter averages) is at or under the target
    first = t.seconds_to_target if t.seconds_to_target is not None or grid_w > t.target_w else since_s
    return replace(state, tally=replace(
        t, duration_s=t.duration_s + dt, import_wh=t.import_wh + grid_w * dt / 3600.0,
        battery_wh=t.battery_wh + max(battery_w, 0.0) * dt / 3600.0, throttled_wh=throttled, tier_wh=tier_wh,
        minutes=minutes, minutes_at_target=at, minute_wh=minute_wh, minute_s=minute_s, seconds_to_target=first))


def flexibility_w(racks: RacksReading, p: DrParams, battery_room_w: float) -> float:
    """What the site could take off its import now: the battery's room and the racks' flex
    tiers' share of what they draw (reported to the program, e.g. over OpenADR)."""
    tiers = tier_of_racks(racks, p)
    return battery_room_w + float((racks.conservative_power_w() * np.array(TIER_MAX_CUT)[tiers]).sum())
