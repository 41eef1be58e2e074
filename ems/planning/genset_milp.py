"""The gensets' on/off schedule over a horizon as a mixed-integer program, solved with HiGHS.

Where the SoC thresholds start a genset when the battery runs low and run it until the
battery is back at `stop_soc` (whatever the sun will do in an hour), this plans when each
genset runs from a forecast of the load and PV: the fewest litres over the horizon.

Per planning step t (kW, kWh; `dt_h` hours) and genset g:

    on[g,t] in {0, 1}; p[g,t] in [min_load x rated x on, rated x on]   (never under min loading)
    su[g,t] >= on[g,t] - on[g,t-1]                                    (a start)
    sum of su[g, t-U+1 .. t] <= on[g,t]                               (minimum run: U steps)
    sum_g p + discharge - charge + grid + unserved - curtailed = load - PV
    e[t+1] = e[t] + eta_c charge dt - discharge dt / eta_d;  e in [floor, ceiling]
    grid in [0, the weak grid's allowance]; curtailed in [0, PV]

    minimise  sum fuel (the curve as a line through min load and full load: a x on + b x p)
              + each start's litres (the start delay, warm-up and cool-down at idle)
              + unserved x a large penalty
              - the energy left in the battery at the end x the litres a genset kWh costs

Identical gensets are ordered (g runs before g+1) to break the symmetry; which unit runs
is the dispatch's choice (the fewest hours). The answer is a count of gensets on and
their planned power per step (ems/model/plan.py GensetSchedule), which the period step
takes as a constraint (policies/genset_dispatch.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt

from ems.model.plan import GensetSchedule
from ems.planning.lp import PlanInfeasible, PlanSolveError
from policies.genset_dispatch import GensetSpec

FloatArray = npt.NDArray[np.float64]
UNSERVED_L_PER_KWH = 20.0  # far above any genset's ~0.25 l/kWh: served whenever it can be


SOC_FLOOR_MARGIN = 0.02  # the plan keeps this above start_soc: the thresholds' latch stays a backstop

@dataclass(frozen=True)
class GensetPlanProblem:
    start_s: float  # site time of step 0
    step_s: float
    load_w: FloatArray  # forecast, before PV
    pv_w: FloatArray  # forecast, what PV could give
    gensets: tuple[GensetSpec, ...]
    on_now: tuple[bool, ...]  # each genset running (or on its way) now
    capacity_wh: float
    soc_now: float
    soc_floor: float  # the plan keeps the battery above this (the thresholds' start_soc: a backstop)
    soc_ceiling: float
    max_charge_w: float
    max_discharge_w: float
    charge_efficiency: float = 0.96
    discharge_efficiency: float = 0.96
    grid_allowance_w: float = 0.0
    mip_rel_gap: float = 0.01
    time_limit_s: float = 5.0


def fuel_line(g: GensetSpec) -> tuple[float, float]:
    """(litres/h when on, litres/kWh): the curve as a line through min load and full load."""
    lo, hi = g.min_load_fraction, 1.0
    l_lo, l_hi = g.fuel.l_per_h(lo), g.fuel.l_per_h(hi)
    if hi - lo < 1e-9:
        return l_hi, 0.0
    b = (l_hi - l_lo) / ((hi - lo) * g.rated_w / 1000.0)
    return l_lo - b * lo * g.rated_w / 1000.0, b


def start_litres(g: GensetSpec) -> float:
    """What a start burns besides its running: the start delay, warm-up and cool-down at idle."""
    return g.fuel.l_per_h(0.0) * (g.start_delay_s + g.warmup_s + g.cooldown_s) / 3600.0


class _Model:
    """Columns and rows, built as they come (the problem is small: a few hundred of each)."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integer: list[int] = []
        self.rows: list[tuple[list[int], list[float], float, float]] = []

    def col(self, cost: float, lower: float, upper: float, integer: bool = False) -> int:
        self.cost.append(cost)
        self.lower.append(lower)
        self.upper.append(upper)
        self.integer.append(1 if integer else 0)
        return len(self.cost) - 1

    def row(self, terms: dict[int, float], lower: float, upper: float) -> None:
        self.rows.append((list(terms), list(terms.values()), lower, upper))

    def solve(self, gap: float, time_limit_s: float) -> tuple[FloatArray, float]:
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = len(self.cost), len(self.rows)
        lp.col_cost_ = np.array(self.cost)
        lp.col_lower_ = np.array(self.lower)
        lp.col_upper_ = np.array(self.upper)
        lp.row_lower_ = np.array([r[2] for r in self.rows])
        lp.row_upper_ = np.array([r[3] for r in self.rows])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
        lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum([len(r[0]) for r in self.rows])]).astype(np.int32)
        lp.a_matrix_.index_ = np.array([i for r in self.rows for i in r[0]], dtype=np.int32)
        lp.a_matrix_.value_ = np.array([v for r in self.rows for v in r[1]])
        lp.integrality_ = [highspy.HighsVarType.kInteger if k else highspy.HighsVarType.kContinuous
                           for k in self.integer]
        highs = highspy.Highs()  # type: ignore[no-untyped-call]
        highs.setOptionValue("output_flag", False)
        highs.setOptionValue("mip_rel_gap", gap)
        highs.setOptionValue("time_limit", time_limit_s)
        t0 = time.perf_counter()
        if highs.passModel(lp) == highspy.HighsStatus.kError:
            raise PlanSolveError("HiGHS rejected the genset model")
        highs.run()
        status = highs.getModelStatus()
        if status is highspy.HighsModelStatus.kInfeasible:
            raise PlanInfeasible("no genset schedule meets the constraints")
        sol = highs.getSolution()
        if not sol.value_valid:  # a time limit with no feasible point yet
            raise PlanSolveError(f"HiGHS stopped with {highs.modelStatusToString(status)}")
        return np.asarray(sol.col_value, dtype=np.float64), time.perf_counter() - t0


def plan_gensets(pb: GensetPlanProblem) -> GensetSchedule:
    """The schedule with the fewest litres; PlanInfeasible / PlanSolveError on failure."""
    n, gs = pb.load_w.size, pb.gensets
    dt_h = pb.step_s / 3600.0
    m = _Model()
    cap_kwh = pb.capacity_wh / 1000.0
    # the energy left at the end is worth what a genset kWh costs at its best, through the battery
    best_l_per_kwh = min((g.fuel.l_per_h(g.efficient_load_fraction) / (g.efficient_load_fraction * g.rated_w / 1000.0)
                          for g in gs), default=0.0)
    value_l_per_kwh = 0.98 * best_l_per_kwh * pb.discharge_efficiency
    floor = min(pb.soc_floor, pb.soc_now) * cap_kwh
    ceiling = max(pb.soc_ceiling, pb.soc_now) * cap_kwh
    e = [m.col(0.0, pb.soc_now * cap_kwh, pb.soc_now * cap_kwh)]
    on: list[list[int]] = [[] for _ in gs]
    p: list[list[int]] = [[] for _ in gs]
    su: list[list[int]] = [[] for _ in gs]
    for t in range(n):
        pv_kw = max(float(pb.pv_w[t]), 0.0) / 1000.0
        ch = m.col(1e-4, 0.0, pb.max_charge_w / 1000.0)  # a hair of cost: no charging and discharging at once
        dis = m.col(1e-4, 0.0, pb.max_discharge_w / 1000.0)
        grid = m.col(0.0, 0.0, pb.grid_allowance_w / 1000.0)
        unserved = m.col(UNSERVED_L_PER_KWH * dt_h, 0.0, highspy.kHighsInf)
        curtailed = m.col(0.0, 0.0, pv_kw)
        balance = {dis: 1.0, ch: -1.0, grid: 1.0, unserved: 1.0, curtailed: -1.0}
        for j, g in enumerate(gs):
            a, b = fuel_line(g)
            rated_kw = g.rated_w / 1000.0
            on[j].append(m.col(a * dt_h, 0.0, 1.0, integer=True))
            p[j].append(m.col(b * dt_h, 0.0, rated_kw))
            su[j].append(m.col(start_litres(g), 0.0, 1.0))
            balance[p[j][t]] = 1.0
            m.row({p[j][t]: 1.0, on[j][t]: -rated_kw}, -highspy.kHighsInf, 0.0)
            m.row({p[j][t]: 1.0, on[j][t]: -g.min_load_fraction * rated_kw}, 0.0, highspy.kHighsInf)
            if t == 0:
                m.row({su[j][0]: 1.0, on[j][0]: -1.0}, -float(pb.on_now[j]), highspy.kHighsInf)
            else:
                m.row({su[j][t]: 1.0, on[j][t]: -1.0, on[j][t - 1]: 1.0}, 0.0, highspy.kHighsInf)
            up = max(1, math.ceil(g.min_run_s / pb.step_s))
            window = {su[j][k]: 1.0 for k in range(max(0, t - up + 1), t + 1)}
            m.row(window | {on[j][t]: -1.0}, -highspy.kHighsInf, 0.0)
        m.row(balance, float(pb.load_w[t] - pb.pv_w[t]) / 1000.0, float(pb.load_w[t] - pb.pv_w[t]) / 1000.0)
        e.append(m.col(0.0, floor, ceiling))
        m.row({e[t + 1]: 1.0, e[t]: -1.0, ch: -pb.charge_efficiency * dt_h, dis: dt_h / pb.discharge_efficiency},
              0.0, 0.0)
        for j in range(len(gs) - 1):  # identical units: the first runs before the second
            if gs[j].rated_w == gs[j + 1].rated_w and gs[j].fuel == gs[j + 1].fuel and pb.on_now[j] >= pb.on_now[j + 1]:
                m.row({on[j][t]: 1.0, on[j + 1][t]: -1.0}, 0.0, highspy.kHighsInf)
    m.cost[e[-1]] = -value_l_per_kwh
    col, solve_s = m.solve(pb.mip_rel_gap, pb.time_limit_s)
    on_count = tuple(round(float(sum(col[on[j][t]] for j in range(len(gs))))) for t in range(n))
    power = tuple(float(sum(col[p[j][t]] for j in range(len(gs)))) * 1000.0 for t in range(n))
    soc = tuple(float(col[i]) / cap_kwh for i in e) if cap_kwh > 0 else (0.0,) * (n + 1)
    a_b = [fuel_line(g) for g in gs]
    litres = float(sum((a * col[on[j][t]] + b * col[p[j][t]]) * dt_h + start_litres(gs[j]) * col[su[j][t]]
                       for j, (a, b) in enumerate(a_b) for t in range(n)))
    return GensetSchedule(pb.start_s, pb.step_s, on_count, power, soc, litres, solve_s)
