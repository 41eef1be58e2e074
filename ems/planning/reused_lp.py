"""The planner's LP built once and updated in place between solves (highspy).

`plan_dispatch` builds a new HiGHS model for every plan; a rolling planner solves the
same model every 15 minutes with the window moved one step on. `ReusedLp` keeps one
`Highs` object per horizon length and, per solve, changes only what moved: costs
(prices, demand rates, wear), column bounds (power, SoC window, initial and final SoC,
peaks so far), row bounds (the net load, the over-peak and charge-peak floors) and the
few matrix entries that tie a step to its demand group, and sends HiGHS only the entries
that differ from what it holds. HiGHS then starts from the last optimal basis, shifted by
the steps the window moved, instead of from scratch, with Devex pricing (measured: less
time than dual steepest edge, whose weights HiGHS recomputes at every run).

The model is a superset of `plan_dispatch`'s with the same optimum: a row for every step
and grouping (free where the step is in no charged group), and a fixed number of peak
columns ("slots") per grouping, each carrying one demand group while the window holds it
(an unused slot is fixed at 0). Columns c, d, g, x, e come first in the same order, so
`plan_from_columns` reads both. A group keeps its slot while it stays in the window, so a
step's matrix entries change only where it crosses into another group. The demand-response
soft cap (a column and a row a step slot, last) is built in once a problem has needed it,
so a site without events solves the model it solved before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt

from ems.planning.lp import (
    FloatArray,
    IntArray,
    Plan,
    PlanInfeasible,
    PlanInputError,
    PlanProblem,
    PlanSolveError,
    check_status,
    plan_from_columns,
)

_INF = highspy.kHighsInf


@dataclass(frozen=True)
class _Layout:
    """Column and row offsets. Steps live in `m = n + 1` slots, energy points in `m`: the
    window's step i (absolute step T + i) in slot (T + i) % m, the one spare slot (the
    step that just left) decoupled, so a step keeps its columns and rows, and its place
    in the last optimal basis, while it stays in the window."""

    n: int
    slots: int  # peak columns per grouping (TOU periods, flat groups)
    dr: bool = False  # with the demand-response soft cap: a column and a row a step, last

    @property
    def m(self) -> int:
        return self.n + 1

    def block(self, b: int) -> int:  # step blocks: 0 c, 1 d, 2 g, 3 x, 4 e, 5 s (m each)
        return b * self.m

    @property
    def pk0(self) -> int:  # TOU slots, then flat slots
        return 6 * self.m

    @property
    def q0(self) -> int:  # charge-peak, one per slot
        return self.pk0 + 2 * self.slots

    @property
    def u0(self) -> int:  # DR: import over the target, one a step slot (where `dr`)
        return self.q0 + 2 * self.slots

    @property
    def n_col(self) -> int:
        return self.u0 + (self.m if self.dr else 0)

    # row blocks of m: 0 balance, 1 energy, 2 TOU peak, 3 flat peak, 4 over-peak,
    # 5 TOU charge-peak, 6 flat charge-peak, 7 DR soft cap (where `dr`)
    def row(self, b: int) -> int:
        return b * self.m

    @property
    def n_row(self) -> int:
        return (8 if self.dr else 7) * self.m


def _slots_for(labels: IntArray, charged: npt.NDArray[np.bool_], where: IntArray, old: IntArray,
               same: npt.NDArray[np.bool_], slots: int) -> tuple[IntArray, IntArray] | None:
    """Per window step, the peak slot of its charged group (-1: none), and per label its slot
    (-1: absent). A group keeps the slot it had in the last window wherever one of its steps
    was there already (`same`: the step in slot `where[i]` is the one it held last time;
    `old`: each step slot's peak slot then). None: more groups than slots."""
    out = np.full(labels.size, -1, dtype=np.int64)
    of_label = np.full(charged.size, -1, dtype=np.int64)
    on = labels >= 0
    on[on] = charged[labels[on]]
    # labels are small: counts per label instead of a sort (np.unique) give the same sorted lists
    present = np.flatnonzero(np.bincount(labels[on], minlength=charged.size)).tolist()
    if len(present) > slots:
        return None
    taken: set[int] = set()
    # each group's first step that was in the last window, and the peak slot it had there
    at = np.flatnonzero(same & on)
    first_at = np.full(charged.size, labels.size, dtype=np.int64)
    np.minimum.at(first_at, labels[at], at)  # per label its first such step (labels.size: none)
    kept_labels = np.flatnonzero(first_at < labels.size)
    for p, slot in zip(kept_labels.tolist(), old[where[first_at[kept_labels]]].tolist(), strict=True):
        if slot >= 0 and slot not in taken:
            of_label[p] = slot
            taken.add(slot)
    free = (s for s in range(slots) if s not in taken)
    for p in present:
        if of_label[p] < 0:
            of_label[p] = next(free)
    out[on] = of_label[labels[on]]
    return out, of_label


class ReusedLp:
    """One HiGHS model for a horizon of `n` steps, updated in place for each problem."""

    def __init__(self, slots: int = 16) -> None:
        self._slots_hint = slots
        self._highs: highspy.Highs | None = None
        self._layout: _Layout | None = None
        self._key: tuple[float, float, float] | None = None  # step, efficiencies: in the matrix
        self._peak_slot: list[IntArray] = []  # per grouping, each step slot's peak slot (-1: none)
        self._abs_step: IntArray = np.zeros(0, dtype=np.int64)  # the absolute step each slot holds
        # costs, column bounds, row bounds as last sent to HiGHS (None: the model's own, after a build)
        self._sent: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray] | None = None
        self.rebuilds = 0  # models built (first use, a new horizon length, more groups than slots)
        self.recoveries = 0  # warm solves that ended without a verdict, solved again in a new model
        self.last_solve_s = 0.0
        self._dr_hint = False  # once a problem has had DR terms, models are built with their block

    def _build(self, pb: PlanProblem, slots: int) -> None:
        """A model with this problem's shape and no demand groups yet (every peak row free).
        The DR block only once a problem has needed it: without events the model (and its
        solve time) is as before."""
        n = pb.net_load_w.size
        lay = _Layout(n, slots, self._dr_hint)
        m = lay.m
        dt_h = pb.step_s / 3600.0
        eta_c, eta_d = pb.charge_efficiency, pb.discharge_efficiency
        c0, d0, g0, x0, e0, s0 = (lay.block(b) for b in range(6))
        j = np.arange(m)
        nxt = (j + 1) % m
        idx = [np.stack([g0 + j, x0 + j, c0 + j, d0 + j], axis=1).ravel(),
               np.stack([e0 + nxt, e0 + j, c0 + j, d0 + j], axis=1).ravel(),
               g0 + j, g0 + j,  # peak rows: "-g" until the step joins a group
               np.stack([s0 + j, g0 + j], axis=1).ravel(),
               g0 + j, g0 + j]  # charge-peak rows likewise
        val = [np.tile([1.0, -1.0, -1.0, 1.0], m), np.tile([1.0, -1.0, -eta_c * dt_h, dt_h / eta_d], m),
               np.full(m, -1.0), np.full(m, -1.0), np.tile([1.0, -1.0], m), np.full(m, -1.0), np.full(m, -1.0)]
        widths = [np.full(2 * m, 4), np.full(2 * m, 1), np.full(m, 2), np.full(2 * m, 1)]
        if lay.dr:  # DR soft cap: u - g >= -target
            idx.append(np.stack([lay.u0 + j, g0 + j], axis=1).ravel())
            val.append(np.tile([1.0, -1.0], m))
            widths.append(np.full(m, 2))
        lp = highspy.HighsLp()
        lp.num_col_ = lay.n_col
        lp.num_row_ = lay.n_row
        lp.col_cost_ = np.zeros(lay.n_col)
        lp.col_lower_ = np.zeros(lay.n_col)
        lp.col_upper_ = np.zeros(lay.n_col)
        lp.row_lower_ = np.full(lay.n_row, -_INF)
        lp.row_upper_ = np.full(lay.n_row, _INF)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_ = lay.n_col
        lp.a_matrix_.num_row_ = lay.n_row
        lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(np.concatenate(widths))]).astype(np.int32)
        lp.a_matrix_.index_ = np.concatenate(idx).astype(np.int32)
        lp.a_matrix_.value_ = np.concatenate(val)
        highs = highspy.Highs()  # type: ignore[no-untyped-call]
        highs.setOptionValue("output_flag", False)
        highs.setOptionValue("presolve", "off")  # small LPs; and presolve would drop the warm basis
        highs.setOptionValue("threads", 1)
        # Devex pricing: a warm solve takes a few more (cheap) iterations but skips the dual
        # steepest-edge weights HiGHS recomputes from scratch each run (a third of a solve
        # of a few iterations); measured 15 % less solve time over January and July, same optima
        highs.setOptionValue("simplex_dual_edge_weight_strategy", 1)
        if highs.passModel(lp) == highspy.HighsStatus.kError:
            raise PlanSolveError("HiGHS rejected the model")
        self._highs, self._layout = highs, lay
        self._key = (pb.step_s, eta_c, eta_d)
        self._peak_slot = [np.full(m, -1, dtype=np.int64), np.full(m, -1, dtype=np.int64)]
        self._abs_step = np.full(m, -1, dtype=np.int64)
        self._sent = None  # the model's costs and bounds are the build's: send them all next
        self.rebuilds += 1

    def _move_groups(self, k: int, new: IntArray) -> None:
        """Point each step slot's peak (and charge-peak) row of grouping `k` at its new peak slot."""
        highs, lay = self._highs, self._layout
        assert highs is not None and lay is not None
        old = self._peak_slot[k]
        pk = lay.pk0 + k * lay.slots
        q = lay.q0 + k * lay.slots
        for j in np.flatnonzero(old != new).tolist():
            a, b = int(old[j]), int(new[j])
            for row, col0 in ((lay.row(2 + k) + j, pk), (lay.row(5 + k) + j, q)):
                if a >= 0:
                    highs.changeCoeff(row, col0 + a, 0.0)
                if b >= 0:
                    highs.changeCoeff(row, col0 + b, 1.0)
        self._peak_slot[k] = new

    def solve(self, pb: PlanProblem, start_step: int = 0, _cold: bool = False) -> Plan:
        """Solve `pb` in the kept model. `start_step`: the window's first step counted on a
        fixed clock (e.g. local seconds / step_s); windows that overlap share their steps'
        columns, rows and basis. Always 0 still solves right, with less to reuse."""
        if pb.wear_depth_cost_per_kwh:
            raise PlanInputError("the kept LP has no depth-of-discharge segments: plan_dispatch builds them")
        n = pb.net_load_w.size
        key = (pb.step_s, pb.charge_efficiency, pb.discharge_efficiency)
        lay = self._layout
        if pb.dr_over_steps().size and not self._dr_hint:
            self._dr_hint = True
        if lay is None or lay.n != n or self._key != key or lay.dr != self._dr_hint:
            self._build(pb, self._slots_hint)
        lay = self._layout
        assert lay is not None
        m = lay.m
        steps = start_step + np.arange(n)
        where = steps % m
        same = self._abs_step[where] == steps
        groups = (pb.periods, pb.flat_groups)
        rates = (pb.demand_rates, pb.flat_rates)
        got = []
        for k in range(2):
            slots = _slots_for(groups[k], rates[k] > 0, where, self._peak_slot[k], same, lay.slots)
            if slots is None:  # more groups than slots: a model with room for twice as many
                self._slots_hint = 2 * max(lay.slots, pb.demand_rates.size, pb.flat_rates.size)
                self._build(pb, self._slots_hint)
                return self.solve(pb, start_step)
            got.append(slots)
        step_slots: list[IntArray] = []
        for k in range(2):
            per_slot = np.full(m, -1, dtype=np.int64)
            per_slot[where] = got[k][0]
            self._move_groups(k, per_slot)
            step_slots.append(per_slot)
        self._abs_step = np.full(m, -1, dtype=np.int64)
        self._abs_step[where] = steps
        self._update(pb, where, (got[0][1], got[1][1]), step_slots)
        highs = self._highs
        assert highs is not None
        t0 = time.perf_counter()
        run_status = highs.run()
        self.last_solve_s = time.perf_counter() - t0
        if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal and not _cold:
            # A warm start can end without a verdict (HiGHS "Unknown": 4 plans in a year of
            # 35,040 here); this one plan in a new model, from scratch, as the rebuild path would.
            self.recoveries += 1
            self._layout = None
            return self.solve(pb, start_step, _cold=True)
        status = check_status(highs, run_status)
        col = np.asarray(highs.getSolution().col_value, dtype=np.float64)
        e_at = (start_step + np.arange(n + 1)) % m
        ordered = np.concatenate([col[lay.block(b) + where] for b in range(4)] + [col[lay.block(4) + e_at]])
        return plan_from_columns(pb, ordered, highs.modelStatusToString(status), self.last_solve_s,
                                 highs.getObjectiveValue())

    def _update(self, pb: PlanProblem, where: IntArray, label_slot: tuple[IntArray, IntArray],
                step_slots: list[IntArray]) -> None:
        """Costs and bounds of this problem, as `plan_dispatch` sets them, at the steps' slots."""
        highs, lay = self._highs, self._layout
        assert highs is not None and lay is not None
        n, m, ns = lay.n, lay.m, lay.slots
        dt_h = pb.step_s / 3600.0
        net_kw = pb.net_load_w / 1000.0
        cap_kwh = pb.capacity_wh / 1000.0
        c0, d0, g0, x0, e0, s0 = (lay.block(b) for b in range(6))
        cost = np.zeros(lay.n_col)
        lower = np.zeros(lay.n_col)
        upper = np.zeros(lay.n_col)  # the spare step slot and unused peak slots stay fixed at 0
        cost[d0 + where] = pb.wear_cost_per_kwh * dt_h
        assert pb.dr_target_w is not None and pb.dr_over_cost_per_kwh is not None
        cost[g0 + where] = pb.import_price_per_kwh * dt_h
        dr_i = pb.dr_over_steps()  # the DR soft cap's slack, fixed at 0 (and its row free) elsewhere
        if lay.dr:
            cost[lay.u0 + where[dr_i]] = pb.dr_over_cost_per_kwh[dr_i] * dt_h
            upper[lay.u0 + where[dr_i]] = _INF
        cost[x0 + where] = -pb.export_price_per_kwh * dt_h
        upper[c0 + where] = pb.max_charge_w / 1000.0
        upper[d0 + where] = pb.max_discharge_w / 1000.0
        upper[g0 + where] = _INF if pb.grid_import_limit_w is None else pb.grid_import_limit_w / 1000.0
        upper[x0 + where] = _INF if pb.allow_export else np.maximum(-net_kw, 0.0)
        # energy points: the first fixed at the SoC now, the rest within the window
        e_at = (where[0] + np.arange(n + 1)) % m
        floor = min(max(pb.soc_min, pb.reserve_soc), pb.soc_initial)
        ceiling = max(pb.soc_max, pb.soc_initial)
        lower[e0 + e_at] = floor * cap_kwh
        upper[e0 + e_at] = ceiling * cap_kwh
        cost[e0 + e_at[1:]] = -pb.hold_value_per_kwh_h * dt_h
        cost[e0 + e_at[n]] -= pb.final_value_per_kwh
        lower[e0 + e_at[0]] = upper[e0 + e_at[0]] = pb.soc_initial * cap_kwh
        final = pb.soc_initial if pb.soc_final_min is None else pb.soc_final_min
        lower[e0 + e_at[n]] = max(floor, final) * cap_kwh
        if lower[e0 + e_at[n]] > upper[e0 + e_at[n]]:
            raise PlanInfeasible("soc_final_min is above the highest allowed SoC")
        # demand groups: a used peak slot carries its group's rate and peak so far
        offset = 0.0
        floor_kw = np.full(n, np.inf)  # per step: the lowest peak so far of its charged groups
        row_lower = np.full(lay.n_row, -_INF)
        row_upper = np.full(lay.n_row, _INF)
        labels = (pb.periods, pb.flat_groups)
        rates = (pb.demand_rates, pb.flat_rates)
        floors = (pb.peaks_so_far, pb.flat_peaks_so_far)
        for k in range(2):
            used = np.flatnonzero(label_slot[k] >= 0)
            cols = lay.pk0 + k * ns + label_slot[k][used]
            cost[cols] = rates[k][used]
            lower[cols] = floors[k][used]
            upper[cols] = _INF
            offset -= float(np.dot(rates[k][used], floors[k][used]))
            on = step_slots[k][where] >= 0
            step_floor = np.where(on, floors[k][np.maximum(labels[k], 0)], np.inf)
            floor_kw = np.minimum(floor_kw, step_floor)
            row_lower[lay.row(2 + k) + where[on]] = 0.0
            if pb.charge_peak_weight > 0:
                qcols = lay.q0 + k * ns + label_slot[k][used]
                cost[qcols] = pb.charge_peak_weight * rates[k][used]
                upper[qcols] = _INF
                row_lower[lay.row(5 + k) + where[on]] = -np.maximum(step_floor[on], net_kw[on])
        over = np.isfinite(floor_kw) if pb.over_peak_cost_per_kwh > 0 else np.zeros(n, dtype=bool)
        cost[s0 + where] = pb.over_peak_cost_per_kwh * dt_h
        upper[s0 + where[over]] = _INF
        row_lower[lay.row(4) + where[over]] = -floor_kw[over]
        row_lower[lay.row(0) + where] = row_upper[lay.row(0) + where] = net_kw
        row_lower[lay.row(1) + where] = row_upper[lay.row(1) + where] = 0.0
        if lay.dr:
            row_lower[lay.row(7) + where[dr_i]] = -pb.dr_target_w[dr_i] / 1000.0
        self._send(cost, lower, upper, row_lower, row_upper)
        highs.changeObjectiveOffset(offset)

    def _send(self, cost: FloatArray, lower: FloatArray, upper: FloatArray, row_lower: FloatArray,
              row_upper: FloatArray) -> None:
        """Only the entries that differ from the model's (one call per kind, index arrays): a
        window moved by one step changes a few dozen of ~650 columns and ~680 rows."""
        highs, last = self._highs, self._sent
        assert highs is not None
        if last is None:
            cols = np.arange(cost.size, dtype=np.int32)
            rows = np.arange(row_lower.size, dtype=np.int32)
            cost_at, bound_at = cols, cols
        else:
            cost_at = np.flatnonzero(cost != last[0]).astype(np.int32)
            bound_at = np.flatnonzero((lower != last[1]) | (upper != last[2])).astype(np.int32)
            rows = np.flatnonzero((row_lower != last[3]) | (row_upper != last[4])).astype(np.int32)
        if cost_at.size:
            highs.changeColsCost(cost_at.size, cost_at, cost[cost_at])
        if bound_at.size:
            highs.changeColsBounds(bound_at.size, bound_at, lower[bound_at], upper[bound_at])
        if rows.size:
            highs.changeRowsBounds(rows.size, rows, row_lower[rows], row_upper[rows])  # type: ignore[attr-defined]
        self._sent = (cost, lower, upper, row_lower, row_upper)
