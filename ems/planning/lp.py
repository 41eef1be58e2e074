"""Battery dispatch over a horizon as a linear program, solved with HiGHS (highspy).

A pure function of its input: no I/O, no clock (``solve_time_s`` is measured, never used).

Model, per step ``i`` of ``step_s`` (internally kW and kWh, which keeps the LP well scaled):

* variables: charge ``c_i``, discharge ``d_i``, grid import ``g_i``, grid export ``x_i``
  (all >= 0), stored energy ``e_0..e_n``, and one peak ``pk_p`` per demand period;
* balance: ``g_i - x_i = net_load_i + c_i - d_i``;
* energy: ``e_{i+1} = e_i + eta_c * c_i * dt - d_i / eta_d * dt``;
* demand: ``pk_p >= g_i`` for the steps of period ``p`` and ``pk_p >= peak_so_far_p``; the
  demand measure is the step's average import, so a 15-min step matches a 15-min demand
  interval (coarser steps understate the billed peak). A second, independent grouping
  (``flat_group``) models charges on the whole month's peak next to TOU periods: a step
  belongs to at most one TOU period and at most one flat group;
* objective: ``sum(import_price * g * dt) - sum(export_price * x * dt)
  + sum_p rate_p * (pk_p - peak_so_far_p) + wear_cost * sum(d * dt)
  - hold_value * sum(e_{i+1} * dt)``. Wear is charged on discharged energy only (AC side):
  one full cycle pays once, not twice. The optional hold value is a preference, not money
  (it is left out of the reported costs): a small reward per kWh stored per hour makes a
  rolling plan charge as soon as it is cheap instead of at the last moment its forecast
  allows, a hedge against a forecast that is too low. The optional over-peak cost is
  another: ``+ over_peak_cost * sum(s_i * dt)`` with ``s_i >= g_i - floor_i``, ``floor_i``
  the lowest peak so far of the step's charged groups. Where the plan has the choice, it
  then charges under the billed peak rather than up to a peak it only forecasts: a
  forecast that is too high otherwise makes the charging itself set the month's peak.
  The optional charge-peak weight is the stronger form of that hedge:
  ``+ weight * sum_p rate_p * q_p`` with ``q_p >= g_i - max(peak_so_far_p, net_i)`` for
  the steps of group ``p``: import that charging lifts above both the billed peak and the
  load itself is priced as a new peak, even where the forecast says the load will reach
  that level later anyway. A peak made by charging is certain; the forecast peak that
  would excuse it is not (at a month's start, when the peak so far is near zero, a plan
  without it charged up to a forecast evening peak at midnight and so set the month's
  peak itself).
* demand response (optional, per step of an event's window): ``+ dr_over_cost_i * u_i * dt``
  with ``u_i >= g_i - dr_target_i``, a soft cap: a kWh imported over the event's target
  costs what the program pays for a kWh of reduction (and a per-kW payment spread over the
  window's hours) plus what it charges for a kWh short. Under the target nothing more is
  earned, as the period step holds the import at the target, not below it. Money the plan
  weighs against the tariff: it charges before the window only where what the window
  earns pays for the charge and its losses.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import highspy
import numpy as np
import numpy.typing as npt

from ems.model.errors import EmsError
from ems.planning.depth_wear import Segments, check_costs, segment_block, wear_from_columns

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _without_banner() -> None:
    """HiGHS prints its banner to the process's stdout from C++ when the first solver is
    built: build that one with stdout pointed at /dev/null, at import (on the main thread,
    before any other thread can print), so a backtest or `ems run` prints only its own."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        highspy.Highs()  # type: ignore[no-untyped-call]
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


_without_banner()


class PlanError(EmsError):
    """Root of every error raised by ems.planning."""


class PlanInputError(PlanError):
    """The problem is malformed; the message names the field."""


class PlanInfeasible(PlanError):
    """No dispatch satisfies the constraints (e.g. an import cap the battery cannot cover)."""


class PlanSolveError(PlanError):
    """HiGHS failed or stopped without an optimal solution."""


def _floats(value: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.array(value, dtype=np.float64, copy=True).reshape(-1)
    if not np.isfinite(arr).all():
        raise PlanInputError(f"{name} contains NaN or infinite values")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class PlanProblem:
    """One planning horizon. Powers in W, energy in Wh, prices per kWh, demand per kW.

    ``demand_period`` (optional) gives each step's TOU demand period index (-1: no demand
    charge); ``demand_charge_per_kw`` and ``peak_so_far_kw`` are then per period. Without
    it, every step is in one period with a flat rate. ``flat_group`` (optional) is a second
    grouping billed on top (e.g. the flat monthly demand charge next to TOU periods), with
    ``flat_demand_charge_per_kw`` and ``flat_peak_so_far_kw`` per group.
    ``allow_export=False`` forbids the battery from exporting: export is capped at what the
    site exports on its own.
    """

    step_s: float
    net_load_w: FloatArray
    import_price_per_kwh: FloatArray
    export_price_per_kwh: FloatArray
    capacity_wh: float
    soc_initial: float
    max_charge_w: float
    max_discharge_w: float
    soc_min: float = 0.0
    soc_max: float = 1.0
    reserve_soc: float = 0.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    wear_cost_per_kwh: float = 0.0
    # per SoC segment, from the top of soc_min..soc_max down, a further cost per kWh drawn from
    # it: wear that grows with the depth of discharge (ems/planning/depth_wear.py); () for none
    wear_depth_cost_per_kwh: Sequence[float] = ()
    demand_charge_per_kw: float | Sequence[float] = 0.0
    peak_so_far_kw: float | Sequence[float] = 0.0
    demand_period: IntArray | None = None
    grid_import_limit_w: float | None = None
    allow_export: bool = True
    soc_final_min: float | None = None
    hold_value_per_kwh_h: float = 0.0
    # what a kWh stored at the horizon's end is worth: a bound credits the charge it keeps at the
    # price its savings are credited with (ems/backtest/foresight.py); the live planner: 0
    final_value_per_kwh: float = 0.0
    over_peak_cost_per_kwh: float = 0.0
    charge_peak_weight: float = 0.0
    flat_group: IntArray | None = None
    flat_demand_charge_per_kw: float | Sequence[float] = 0.0
    flat_peak_so_far_kw: float | Sequence[float] = 0.0
    # demand response, per step (ems/planning/dr_terms.py): target import (+inf: none), and
    # what a kWh over it costs (forfeited payment and penalty)
    dr_target_w: FloatArray | None = None
    dr_over_cost_per_kwh: FloatArray | None = None
    # normalised per-period views, filled in __post_init__
    demand_rates: FloatArray = field(init=False, repr=False)
    peaks_so_far: FloatArray = field(init=False, repr=False)
    periods: IntArray = field(init=False, repr=False)
    flat_rates: FloatArray = field(init=False, repr=False)
    flat_peaks_so_far: FloatArray = field(init=False, repr=False)
    flat_groups: IntArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        net = _floats(self.net_load_w, "net_load_w")
        n = net.size
        if n == 0:
            raise PlanInputError("net_load_w must have at least one step")
        set_(self, "net_load_w", net)
        for name in ("import_price_per_kwh", "export_price_per_kwh"):
            arr = _floats(getattr(self, name), name)
            if arr.size == 1:
                arr = np.full(n, arr[0])
                arr.setflags(write=False)
            if arr.size != n:
                raise PlanInputError(f"{name} has {arr.size} steps, net_load_w has {n}")
            set_(self, name, arr)
        if (self.export_price_per_kwh > self.import_price_per_kwh + 1e-12).any():
            # Otherwise importing to export at once is free money and the LP is unbounded.
            raise PlanInputError("export_price_per_kwh must not exceed import_price_per_kwh")
        self._check_scalars()
        self._normalise_dr(n)
        depth = tuple(float(c) for c in self.wear_depth_cost_per_kwh)
        if (why := check_costs(depth)) is not None:
            raise PlanInputError(f"wear_depth_cost_per_kwh: {why}")
        set_(self, "wear_depth_cost_per_kwh", depth)

        if self.demand_period is None:
            periods = np.zeros(n, dtype=np.int64)
            rates = _floats(np.atleast_1d(self.demand_charge_per_kw), "demand_charge_per_kw")
            peaks = _floats(np.atleast_1d(self.peak_so_far_kw), "peak_so_far_kw")
            if rates.size != 1 or peaks.size != 1:
                raise PlanInputError(
                    "without demand_period, demand_charge_per_kw and "
                    "peak_so_far_kw are single values"
                )
        else:
            periods = np.array(self.demand_period, dtype=np.int64).reshape(-1)
            if periods.size != n:
                raise PlanInputError(f"demand_period has {periods.size} steps, expected {n}")
            rates = _floats(np.atleast_1d(self.demand_charge_per_kw), "demand_charge_per_kw")
            n_p = rates.size
            peaks = _floats(np.atleast_1d(self.peak_so_far_kw), "peak_so_far_kw")
            if peaks.size == 1 and n_p > 1:
                peaks = np.full(n_p, peaks[0])
            if peaks.size != n_p:
                raise PlanInputError("peak_so_far_kw needs one value per demand period")
            if (periods < -1).any() or (periods >= n_p).any():
                raise PlanInputError("demand_period indices must be -1 or < the number of rates")
        if (rates < 0).any() or (peaks < 0).any():
            raise PlanInputError("demand_charge_per_kw and peak_so_far_kw must be >= 0")
        periods.setflags(write=False)
        set_(self, "periods", periods)
        set_(self, "demand_rates", rates)
        set_(self, "peaks_so_far", peaks)
        self._normalise_flat(n)

    def _normalise_flat(self, n: int) -> None:
        rates = _floats(np.atleast_1d(self.flat_demand_charge_per_kw), "flat_demand_charge_per_kw")
        peaks = _floats(np.atleast_1d(self.flat_peak_so_far_kw), "flat_peak_so_far_kw")
        if self.flat_group is None:
            groups = np.full(n, -1 if (rates == 0).all() else 0, dtype=np.int64)
        else:
            groups = np.array(self.flat_group, dtype=np.int64).reshape(-1)
            if groups.size != n:
                raise PlanInputError(f"flat_group has {groups.size} steps, expected {n}")
        if peaks.size == 1 and rates.size > 1:
            peaks = np.full(rates.size, peaks[0])
        if peaks.size != rates.size:
            raise PlanInputError("flat_peak_so_far_kw needs one value per flat group")
        if (groups < -1).any() or (groups >= rates.size).any():
            raise PlanInputError("flat_group indices must be -1 or < the number of flat rates")
        if (rates < 0).any() or (peaks < 0).any():
            raise PlanInputError("flat_demand_charge_per_kw and flat_peak_so_far_kw must be >= 0")
        groups.setflags(write=False)
        object.__setattr__(self, "flat_groups", groups)
        object.__setattr__(self, "flat_rates", rates)
        object.__setattr__(self, "flat_peaks_so_far", peaks)

    def _normalise_dr(self, n: int) -> None:
        """The DR arrays, one value a step: no target is +inf, no cost 0."""
        for name, absent in (("dr_target_w", np.inf), ("dr_over_cost_per_kwh", 0.0)):
            raw = getattr(self, name)
            arr = np.full(n, absent) if raw is None else np.array(raw, dtype=np.float64, copy=True).reshape(-1)
            if arr.size != n:
                raise PlanInputError(f"{name} has {arr.size} steps, net_load_w has {n}")
            if np.any(np.isnan(arr)) or np.any(arr < 0) or (absent == 0.0 and not np.all(np.isfinite(arr))):
                raise PlanInputError(f"{name} must be >= 0 and not NaN" + ("" if absent else " or infinite"))
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def dr_over_steps(self) -> IntArray:
        """The steps whose import over a DR target costs something (each gets a soft-cap slack)."""
        assert self.dr_target_w is not None and self.dr_over_cost_per_kwh is not None
        return np.flatnonzero(np.isfinite(self.dr_target_w) & (self.dr_over_cost_per_kwh > 0))

    def _check_scalars(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise PlanInputError(f"{name} {rule} (got {getattr(self, name)!r})")

        need(self.step_s > 0, "step_s", "must be > 0")
        need(self.capacity_wh > 0, "capacity_wh", "must be > 0")
        need(
            0.0 <= self.soc_min <= self.soc_max <= 1.0,
            "soc_max",
            "must satisfy 0 <= soc_min <= soc_max <= 1",
        )
        need(0.0 <= self.soc_initial <= 1.0, "soc_initial", "must be within 0..1")
        need(
            self.soc_min <= self.reserve_soc <= self.soc_max,
            "reserve_soc",
            "must be within soc_min..soc_max",
        )
        need(self.max_charge_w >= 0, "max_charge_w", "must be >= 0")
        need(self.max_discharge_w >= 0, "max_discharge_w", "must be >= 0")
        need(0 < self.charge_efficiency <= 1, "charge_efficiency", "must be in (0, 1]")
        need(0 < self.discharge_efficiency <= 1, "discharge_efficiency", "must be in (0, 1]")
        need(self.wear_cost_per_kwh >= 0, "wear_cost_per_kwh", "must be >= 0")
        need(self.hold_value_per_kwh_h >= 0, "hold_value_per_kwh_h", "must be >= 0")
        need(0 <= self.final_value_per_kwh < math.inf, "final_value_per_kwh", "must be >= 0 and finite")
        need(self.over_peak_cost_per_kwh >= 0, "over_peak_cost_per_kwh", "must be >= 0")
        need(self.charge_peak_weight >= 0, "charge_peak_weight", "must be >= 0")
        if self.grid_import_limit_w is not None:
            need(self.grid_import_limit_w >= 0, "grid_import_limit_w", "must be >= 0")
        if self.soc_final_min is not None:
            need(0.0 <= self.soc_final_min <= 1.0, "soc_final_min", "must be within 0..1")


@dataclass(frozen=True)
class Plan:
    """Planned dispatch; arrays per step except ``soc`` (n + 1 values, soc[0] = initial)."""

    battery_w: FloatArray  # > 0 discharge
    charge_w: FloatArray
    discharge_w: FloatArray
    grid_w: FloatArray  # > 0 import
    soc: FloatArray
    peak_kw: FloatArray  # planned peak per demand period (>= peak_so_far)
    expected_cost: float  # energy - export revenue + demand increase + wear
    energy_cost: float
    demand_cost: float
    wear_cost: float
    cost_without_battery: float
    status: str
    solve_time_s: float
    flat_peak_kw: FloatArray = field(default_factory=lambda: np.zeros(0))  # per flat group
    objective: float = float("nan")  # the LP's optimum, preferences (hold value, over-peak) included
    dr_cost: float = 0.0  # import over DR targets at its cost (outside expected_cost: the program's money)

    def import_cap_w(self, problem: PlanProblem) -> FloatArray:
        """Per step, the highest import the plan allows: the planned peak of the step's
        charged groups (TOU period and flat group); +inf where no demand charge applies."""
        cap_kw = np.full(problem.periods.size, np.inf)
        for labels, rates, peaks in ((problem.periods, problem.demand_rates, self.peak_kw),
                                     (problem.flat_groups, problem.flat_rates, self.flat_peak_kw)):
            if rates.size:
                # per group its planned peak where charged, +inf otherwise; label -1 reads the spare +inf
                by_group = np.append(np.where(rates > 0, peaks, np.inf), np.inf)
                cap_kw = np.minimum(cap_kw, by_group[labels])
        return cap_kw * 1000.0

    @property
    def expected_savings(self) -> float:
        return self.cost_without_battery - self.expected_cost


def cost_without_battery(problem: PlanProblem) -> float:
    """The same prices applied to the net load with the battery idle."""
    dt_h = problem.step_s / 3600.0
    imp_kw = np.maximum(problem.net_load_w, 0.0) / 1000.0
    exp_kw = np.maximum(-problem.net_load_w, 0.0) / 1000.0
    energy = float(
        np.sum(problem.import_price_per_kwh * imp_kw - problem.export_price_per_kwh * exp_kw) * dt_h
    )
    return energy + _demand_cost(problem, imp_kw)


def _demand_groups(problem: PlanProblem) -> list[tuple[IntArray, float, float]]:
    """Every charged demand group that has steps: (step indices, rate per kW, peak so far)."""
    groups = []
    for labels, rates, floors in ((problem.periods, problem.demand_rates, problem.peaks_so_far),
                                  (problem.flat_groups, problem.flat_rates, problem.flat_peaks_so_far)):
        for p, rate in enumerate(rates):
            steps = np.flatnonzero(labels == p)
            if rate > 0 and steps.size:
                groups.append((steps, float(rate), float(floors[p])))
    return groups


def group_max(labels: IntArray, n_groups: int, values: FloatArray) -> FloatArray:
    """Per group, the highest of `values` over its steps (-inf for a group without steps;
    label -1 is no group)."""
    out = np.full(n_groups + 1, -np.inf)
    np.maximum.at(out, labels, values)  # label -1 lands in the spare last slot
    return out[:n_groups]


def _group_tops(problem: PlanProblem, import_kw: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per TOU period and per flat group, the highest of `import_kw` over its steps."""
    return (group_max(problem.periods, problem.demand_rates.size, import_kw),
            group_max(problem.flat_groups, problem.flat_rates.size, import_kw))


def _demand_cost_of(problem: PlanProblem, tops: tuple[FloatArray, FloatArray]) -> float:
    """What the groups' highest imports (`_group_tops`) add to their peaks so far."""
    total = 0.0
    for rates, floors, top in ((problem.demand_rates, problem.peaks_so_far, tops[0]),
                               (problem.flat_rates, problem.flat_peaks_so_far, tops[1])):
        if rates.size:
            total += float(np.sum(np.where(np.isfinite(top), rates * np.maximum(top - floors, 0.0), 0.0)))
    return total


def _demand_cost(problem: PlanProblem, import_kw: FloatArray) -> float:
    """What the import's peaks add to the charged groups' peaks so far (one pass per grouping)."""
    return _demand_cost_of(problem, _group_tops(problem, import_kw))


def plan_dispatch(problem: PlanProblem, *, presolve: bool = False) -> Plan:
    """Solve the dispatch LP; raise `PlanInfeasible` or `PlanSolveError` on failure.

    `presolve`: worth it on a long horizon (a year for the perfect-foresight bound), not
    on a planner's day."""
    pb = problem
    n = pb.net_load_w.size
    dt_h = pb.step_s / 3600.0
    net_kw = pb.net_load_w / 1000.0
    cap_kwh = pb.capacity_wh / 1000.0
    eta_c, eta_d = pb.charge_efficiency, pb.discharge_efficiency
    inf = highspy.kHighsInf

    # Column blocks: c, d, g, x (n each), e (n + 1), pk (one per charged demand group),
    # s (one per step in a charged group, with an over-peak cost), q (one per charged
    # group, with a charge-peak weight).
    c0, d0, g0, x0, e0 = 0, n, 2 * n, 3 * n, 4 * n
    groups = _demand_groups(pb)
    pk0 = 5 * n + 1
    floor_kw = np.full(n, np.inf)  # per step: the lowest peak so far of its charged groups
    for steps, _, group_floor in groups:
        floor_kw[steps] = np.minimum(floor_kw[steps], group_floor)
    over_i = np.flatnonzero(np.isfinite(floor_kw)) if pb.over_peak_cost_per_kwh > 0 else np.zeros(0, np.int64)
    s0 = pk0 + len(groups)
    q0 = s0 + over_i.size
    q_groups = groups if pb.charge_peak_weight > 0 else []
    u0 = q0 + len(q_groups)  # u: import over a DR target, one per step where that costs
    dr_i = pb.dr_over_steps()
    n_col = u0 + dr_i.size
    depth = pb.wear_depth_cost_per_kwh
    seg = None
    if depth:  # segment columns last (depth_wear.py): they replace the energy rows below
        segments = Segments.of(cap_kwh, pb.soc_min, pb.soc_max, pb.soc_initial, len(depth))
        seg = segment_block(depth, segments, n, n_col, (c0, d0, e0), dt_h, eta_c, eta_d)
        n_col += seg.cost.size

    cost = np.zeros(n_col)
    cost[d0 : d0 + n] = pb.wear_cost_per_kwh * dt_h
    assert pb.dr_target_w is not None and pb.dr_over_cost_per_kwh is not None
    cost[g0 : g0 + n] = pb.import_price_per_kwh * dt_h
    cost[u0 : u0 + dr_i.size] = pb.dr_over_cost_per_kwh[dr_i] * dt_h
    cost[x0 : x0 + n] = -pb.export_price_per_kwh * dt_h
    cost[e0 + 1 : e0 + n + 1] = -pb.hold_value_per_kwh_h * dt_h
    cost[e0 + n] -= pb.final_value_per_kwh
    lower = np.zeros(n_col)
    upper = np.full(n_col, inf)
    upper[c0 : c0 + n] = pb.max_charge_w / 1000.0
    upper[d0 : d0 + n] = pb.max_discharge_w / 1000.0
    if pb.grid_import_limit_w is not None:
        upper[g0 : g0 + n] = pb.grid_import_limit_w / 1000.0
    if not pb.allow_export:
        upper[x0 : x0 + n] = np.maximum(-net_kw, 0.0)
    # A start outside the band (e.g. below the reserve after an outage) is not infeasible:
    # the band widens to include it; getting back is the reserve policy's job.
    floor = min(max(pb.soc_min, pb.reserve_soc), pb.soc_initial)
    ceiling = max(pb.soc_max, pb.soc_initial)
    lower[e0 : e0 + n + 1] = floor * cap_kwh
    upper[e0 : e0 + n + 1] = ceiling * cap_kwh
    lower[e0] = upper[e0] = pb.soc_initial * cap_kwh
    final = pb.soc_initial if pb.soc_final_min is None else pb.soc_final_min
    lower[e0 + n] = max(lower[e0 + n], final * cap_kwh)
    cost[s0:q0] = pb.over_peak_cost_per_kwh * dt_h
    offset = 0.0
    for k, (_, rate, group_floor_kw) in enumerate(groups):
        cost[pk0 + k] = rate
        lower[pk0 + k] = group_floor_kw
        offset -= rate * group_floor_kw
    for k, (_, rate, _) in enumerate(q_groups):
        cost[q0 + k] = pb.charge_peak_weight * rate
    if seg is not None:
        tail = slice(n_col - seg.cost.size, n_col)
        cost[tail], lower[tail], upper[tail] = seg.cost, seg.lower, seg.upper

    # Rows, built row-wise: balance (n), energy (n), peak (one per step in a charged period),
    # over-peak and charge-peak (one per step each, when their cost is on).
    i = np.arange(n)
    bal_idx = np.stack([g0 + i, x0 + i, c0 + i, d0 + i], axis=1)
    bal_val = np.tile([1.0, -1.0, -1.0, 1.0], (n, 1))
    soc_idx = np.stack([e0 + i + 1, e0 + i, c0 + i, d0 + i], axis=1)
    soc_val = np.tile([1.0, -1.0, -eta_c * dt_h, dt_h / eta_d], (n, 1))
    pk_steps = [steps for steps, _, _ in groups]
    pk_i = np.concatenate(pk_steps) if pk_steps else np.zeros(0, dtype=np.int64)
    pk_col = np.concatenate(
        [np.full(s.size, pk0 + k) for k, s in enumerate(pk_steps)] or [np.zeros(0, dtype=np.int64)]
    )
    pk_idx = np.stack([pk_col, g0 + pk_i], axis=1)
    pk_val = np.tile([1.0, -1.0], (pk_i.size, 1))
    # over-peak: s_i - g_i >= -floor_i; charge-peak: q_p - g_i >= -max(peak so far_p, net_i),
    # what charging lifts the import above both the billed peak and the load itself
    q_i = np.concatenate([steps for steps, _, _ in q_groups] or [np.zeros(0, dtype=np.int64)])
    q_col = np.concatenate([np.full(steps.size, q0 + k) for k, (steps, _, _) in enumerate(q_groups)]
                           or [np.zeros(0, dtype=np.int64)])
    q_floor = np.concatenate([np.maximum(f, net_kw[steps]) for steps, _, f in q_groups] or [np.zeros(0)])
    ov_idx = np.concatenate([np.stack([s0 + np.arange(over_i.size), g0 + over_i], axis=1),
                             np.stack([q_col, g0 + q_i], axis=1)])
    # DR soft cap: u_i - g_i >= -target_i
    ov_idx = np.concatenate([ov_idx, np.stack([u0 + np.arange(dr_i.size), g0 + dr_i], axis=1)])
    ov_val = np.tile([1.0, -1.0], (over_i.size + q_i.size + dr_i.size, 1))
    n_ov = over_i.size + q_i.size + dr_i.size

    n_soc = 0 if seg is not None else n  # with depth segments their rows keep the energy balance
    row_lower = [net_kw, np.zeros(n_soc), np.zeros(pk_i.size), -floor_kw[over_i], -q_floor,
                 -pb.dr_target_w[dr_i] / 1000.0]
    row_upper = [net_kw, np.zeros(n_soc), np.full(pk_i.size + n_ov, inf)]
    widths = [np.full(n + n_soc, 4), np.full(pk_i.size + n_ov, 2)]
    index = [bal_idx.ravel(), soc_idx[:n_soc].ravel(), pk_idx.ravel(), ov_idx.ravel()]
    value = [bal_val.ravel(), soc_val[:n_soc].ravel(), pk_val.ravel(), ov_val.ravel()]
    if seg is not None:
        row_lower.append(seg.row_lower)
        row_upper.append(seg.row_upper)
        widths.append(seg.widths)
        index.append(seg.index)
        value.append(seg.value)
    lp = highspy.HighsLp()
    lp.num_col_ = n_col
    lp.col_cost_ = cost
    lp.col_lower_ = lower
    lp.col_upper_ = upper
    lp.offset_ = offset
    lp.row_lower_ = np.concatenate(row_lower)
    lp.row_upper_ = np.concatenate(row_upper)
    lp.num_row_ = sum(r.size for r in row_lower)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = n_col
    lp.a_matrix_.num_row_ = lp.num_row_
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(np.concatenate(widths))]).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate(index).astype(np.int32)
    lp.a_matrix_.value_ = np.concatenate(value)

    if np.any(lower > upper):
        # Only the terminal bound can cross (soc_final_min above the SoC ceiling).
        raise PlanInfeasible("soc_final_min is above the highest allowed SoC")

    highs = highspy.Highs()  # type: ignore[no-untyped-call]
    highs.setOptionValue("output_flag", False)
    # These LPs are small (~500 columns) and solved every few minutes: presolve costs more
    # than it saves (measured 4.6 -> 2.7 ms a solve, same optima).
    highs.setOptionValue("presolve", "on" if presolve else "off")
    highs.setOptionValue("threads", 1)  # as the reused LP: a thread pool only adds waits at this size
    if highs.passModel(lp) == highspy.HighsStatus.kError:
        raise PlanSolveError("HiGHS rejected the model")
    t0 = time.perf_counter()  # HiGHS's own solve, what the reused LP is compared with
    run_status = highs.run()
    solve_time = time.perf_counter() - t0
    status = check_status(highs, run_status)

    col = np.asarray(highs.getSolution().col_value, dtype=np.float64)
    return plan_from_columns(pb, col, highs.modelStatusToString(status), solve_time,
                             highs.getInfo().objective_function_value)


def check_status(highs: highspy.Highs, run_status: highspy.HighsStatus) -> highspy.HighsModelStatus:
    """The model status of a finished run, or the error that says why there is no plan."""
    status = highs.getModelStatus()
    if status in (highspy.HighsModelStatus.kInfeasible,):
        raise PlanInfeasible("no dispatch meets the constraints (import limit, SoC, terminal)")
    if status == highspy.HighsModelStatus.kUnboundedOrInfeasible:
        raise PlanInfeasible("the problem is infeasible or unbounded")
    if run_status == highspy.HighsStatus.kError or status != highspy.HighsModelStatus.kOptimal:
        raise PlanSolveError(f"HiGHS stopped with {highs.modelStatusToString(status)}")
    return status


def plan_from_columns(pb: PlanProblem, col: FloatArray, status: str, solve_time: float,
                      objective: float = float("nan")) -> Plan:
    """The plan from a solution whose first columns are c, d, g, x (n each) and e (n + 1),
    the layout both the rebuilt and the reused LP keep (and, with depth wear, whose last
    are the segments': only the rebuilt LP has them)."""
    n = pb.net_load_w.size
    dt_h = pb.step_s / 3600.0
    cap_kwh = pb.capacity_wh / 1000.0
    c0, d0, g0, x0, e0 = 0, n, 2 * n, 3 * n, 4 * n
    charge_kw = np.clip(col[c0 : c0 + n], 0.0, None)
    discharge_kw = np.clip(col[d0 : d0 + n], 0.0, None)
    import_kw = np.clip(col[g0 : g0 + n], 0.0, None)
    export_kw = np.clip(col[x0 : x0 + n], 0.0, None)
    energy_kwh = col[e0 : e0 + n + 1]
    # planned peak per period: the peak so far, or what the plan imports at most in it
    tops = _group_tops(pb, import_kw)  # once for the planned peaks and their cost
    peak_kw = np.maximum(pb.peaks_so_far, tops[0])
    flat_peak_kw = np.maximum(pb.flat_peaks_so_far, tops[1])

    energy_cost = float(
        np.sum(pb.import_price_per_kwh * import_kw - pb.export_price_per_kwh * export_kw) * dt_h
    )
    demand_cost = _demand_cost_of(pb, tops)
    wear_cost = float(pb.wear_cost_per_kwh * np.sum(discharge_kw) * dt_h)
    wear_cost += wear_from_columns(pb.wear_depth_cost_per_kwh, col, n, dt_h)
    assert pb.dr_target_w is not None and pb.dr_over_cost_per_kwh is not None
    over_kw = np.maximum(import_kw - pb.dr_target_w / 1000.0, 0.0)
    dr_cost = float(np.sum(pb.dr_over_cost_per_kwh * over_kw) * dt_h)
    return Plan(
        battery_w=(discharge_kw - charge_kw) * 1000.0,
        charge_w=charge_kw * 1000.0,
        discharge_w=discharge_kw * 1000.0,
        grid_w=(import_kw - export_kw) * 1000.0,
        soc=energy_kwh / cap_kwh,
        peak_kw=peak_kw,
        expected_cost=energy_cost + demand_cost + wear_cost,
        energy_cost=energy_cost,
        demand_cost=demand_cost,
        wear_cost=wear_cost,
        cost_without_battery=cost_without_battery(pb),
        status=status,
        solve_time_s=solve_time,
        flat_peak_kw=flat_peak_kw,
        objective=objective,
        dr_cost=dr_cost,
    )
