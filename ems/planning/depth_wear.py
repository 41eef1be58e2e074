"""A wear cost that grows with the depth of discharge, as linear-program columns.

A flat cost per kWh discharged charges a shallow top-up the same as a cycle to the floor;
cycle ageing grows with the depth (ems/backtest/ageing.py). The LP cannot price a kWh by
the SoC it leaves from (a product of two variables), so the SoC window is cut into `J`
equal segments, each with its own charge, discharge and energy columns, and a kWh drawn
from a deeper segment costs more (B. Xu et al., "Factoring the cycle aging cost of
batteries participating in electricity markets", IEEE Trans. Power Syst. 33(2), 2018).
With costs that do not fall with depth the LP draws the shallow segments first. Nothing
ties a segment to a SoC level after the start, though: a charge goes into the cheapest
segment with room (the top), so a cycle low in the window is priced as the same depth from
the top, a cycle's depth rather than the SoC it passed through (`segment_cost_per_kwh`
prices a path the LP's way; the backtest uses it).

The segments split `soc_min..soc_max` (the battery's window, the same for every plan, so
a depth means the same thing in every plan), listed from the top; a start outside the
window widens the outer segments. The energy above the bottom starts in the deepest
segments: a battery at 60 % has its top segments empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_SEGMENTS = 10


def check_costs(costs: Sequence[float]) -> str | None:
    """Why these per-segment costs cannot be planned on, or None: at most MAX_SEGMENTS,
    finite, >= 0 and not falling with depth (a cheaper deep segment would be drawn first:
    its energy would no longer be the SoC's depth)."""
    arr = np.asarray(costs, dtype=np.float64)
    if arr.size > MAX_SEGMENTS:
        return f"at most {MAX_SEGMENTS} segments"
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        return "costs must be finite and >= 0"
    if np.any(np.diff(arr) < 0):
        return "costs must not fall with depth (listed from the top of the SoC window down)"
    return None


@dataclass(frozen=True)
class Segments:
    """The SoC window cut into segments: bottom energy, each segment's size and initial fill (kWh)."""

    base_kwh: float  # energy below the bottom segment
    size_kwh: FloatArray  # per segment, top first
    initial_kwh: FloatArray  # per segment at the start, top first

    @staticmethod
    def of(capacity_kwh: float, soc_min: float, soc_max: float, soc_initial: float, n_seg: int) -> Segments:
        edges = np.linspace(soc_max, soc_min, n_seg + 1)  # top first
        edges[0], edges[-1] = max(soc_max, soc_initial), min(soc_min, soc_initial)
        size = (edges[:-1] - edges[1:]) * capacity_kwh
        above_kwh = (soc_initial - edges[-1]) * capacity_kwh
        # fill from the bottom: the deepest segments hold the energy first
        filled_from_bottom = np.clip(above_kwh - np.concatenate([[0.0], np.cumsum(size[::-1])[:-1]]),
                                     0.0, size[::-1])
        return Segments(float(edges[-1] * capacity_kwh), size, filled_from_bottom[::-1].copy())


@dataclass(frozen=True)
class Block:
    """The segment columns and rows appended to the dispatch LP (row-wise, like lp.py's)."""

    cost: FloatArray
    lower: FloatArray
    upper: FloatArray
    row_lower: FloatArray
    row_upper: FloatArray
    widths: IntArray
    index: IntArray
    value: FloatArray


def segment_block(costs: Sequence[float], seg: Segments, n: int, first_col: int, cols: tuple[int, int, int],
          dt_h: float, eta_c: float, eta_d: float) -> Block:
    """Columns c_j (J n), d_j (J n), e_j (J (n + 1)) from `first_col`; rows tying them to the
    LP's c, d and e columns (`cols`: where those start) and each segment's energy balance.
    The LP's own energy rows are then implied and left out (lp.py)."""
    c0, d0, e0 = cols
    n_seg = len(costs)
    cj0, dj0 = first_col, first_col + n_seg * n
    ej0 = dj0 + n_seg * n
    n_col = n_seg * (3 * n + 1)
    cost = np.zeros(n_col)
    cost[n * n_seg : 2 * n * n_seg] = np.repeat(np.asarray(costs, dtype=np.float64) * dt_h, n)
    lower = np.zeros(n_col)
    upper = np.full(n_col, np.inf)
    e_local = 2 * n * n_seg + np.arange(n_seg)[:, None] * (n + 1) + np.arange(n + 1)[None, :]
    upper[e_local] = seg.size_kwh[:, None]
    lower[e_local[:, 0]] = upper[e_local[:, 0]] = seg.initial_kwh

    t = np.arange(n)
    j = np.arange(n_seg)
    # c_t - sum_j c_jt = 0 and d_t - sum_j d_jt = 0
    sum_c = np.concatenate([c0 + t[:, None], cj0 + j[None, :] * n + t[:, None]], axis=1)
    sum_d = np.concatenate([d0 + t[:, None], dj0 + j[None, :] * n + t[:, None]], axis=1)
    sum_val = np.tile(np.concatenate([[1.0], -np.ones(n_seg)]), (n, 1))
    # e_{j,t+1} - e_{j,t} - eta_c dt c_jt + dt / eta_d d_jt = 0
    jj, tt = np.repeat(j, n), np.tile(t, n_seg)
    bal = np.stack([ej0 + jj * (n + 1) + tt + 1, ej0 + jj * (n + 1) + tt, cj0 + jj * n + tt, dj0 + jj * n + tt], axis=1)
    bal_val = np.tile([1.0, -1.0, -eta_c * dt_h, dt_h / eta_d], (n_seg * n, 1))
    # e_t - sum_j e_jt = base, t = 1..n (t = 0: both fixed to agree)
    link = np.concatenate([e0 + t[:, None] + 1, ej0 + j[None, :] * (n + 1) + t[:, None] + 1], axis=1)
    rows = [(sum_c, sum_val), (sum_d, sum_val), (bal, bal_val), (link, sum_val)]
    zeros = np.zeros(2 * n + n_seg * n)
    return Block(
        cost=cost, lower=lower, upper=upper,
        row_lower=np.concatenate([zeros, np.full(n, seg.base_kwh)]),
        row_upper=np.concatenate([zeros, np.full(n, seg.base_kwh)]),
        widths=np.concatenate([np.full(idx.shape[0], idx.shape[1]) for idx, _ in rows]).astype(np.int64),
        index=np.concatenate([idx.ravel() for idx, _ in rows]).astype(np.int64),
        value=np.concatenate([val.ravel() for _, val in rows]),
    )


def wear_from_columns(costs: Sequence[float], col: FloatArray, n: int, dt_h: float) -> float:
    """The segment part of the wear cost from a solution whose last columns are `segment_block`'s."""
    n_seg = len(costs)
    if n_seg == 0:
        return 0.0
    start = col.size - n_seg * (3 * n + 1) + n_seg * n
    d_j = np.clip(col[start : start + n_seg * n], 0.0, None).reshape(n_seg, n)
    return float(np.sum(np.asarray(costs, dtype=np.float64) * d_j.sum(axis=1)) * dt_h)


@dataclass(frozen=True)
class WearPrice:
    """What the planner charges per kWh discharged: a flat part and, by depth, the segments'
    (`costs`, top first, over soc_min..soc_max). The backtest prices a run's wear with it."""

    flat_per_kwh: float
    costs: tuple[float, ...] = ()
    soc_min: float = 0.0
    soc_max: float = 1.0

    def per_step(self, discharged_kwh: FloatArray, soc_before: FloatArray, soc_after: FloatArray) -> FloatArray:
        """The wear of each step's discharge as the LP prices that SoC path from its first
        step (`segment_cost_per_kwh`): the flat part and the segments it is drawn from."""
        per_kwh = self.flat_per_kwh + segment_cost_per_kwh(self.costs, soc_before, soc_after, self.soc_min,
                                                           self.soc_max)
        out: FloatArray = discharged_kwh * per_kwh
        return out


def segment_cost_per_kwh(costs: Sequence[float], soc_before: FloatArray, soc_after: FloatArray, soc_min: float,
                         soc_max: float) -> FloatArray:
    """Per kWh discharged in each step, the segments' cost as the LP charges it for this SoC
    path. Nothing in the LP ties a segment to a SoC level once the plan starts: a charge may
    go into any segment with room, so the LP puts it in the cheapest (the top), and a
    discharge draws the cheapest energy first. The path's cheapest allocation, the LP's own,
    is then the greedy one: the segments filled from the bottom at the first step
    (`Segments.of`), each rise into the top-most segment with room, each drop from the
    top-most with energy. A cycle low in the window (10 % -> 50 % -> 10 %) thus costs what
    the same depth costs from the top, not the deep segments the SoC passed through. A
    step that did not fall pays the top-most segment with energy."""
    c = np.asarray(costs, dtype=np.float64)
    n = np.asarray(soc_before).size
    out = np.zeros(n)
    if c.size == 0 or n == 0:
        return out
    seg = Segments.of(1.0, soc_min, soc_max, float(soc_before[0]), c.size)
    size = [float(x) for x in seg.size_kwh]  # in SoC, top first
    fill = [float(x) for x in seg.initial_kwh]
    for t in range(n):
        move = float(soc_after[t]) - float(soc_before[t])
        if move < 0:
            need, paid = -move, 0.0
            for j in range(c.size):
                take = min(need, fill[j])
                fill[j] -= take
                need -= take
                paid += take * c[j]
            # below the window's bottom: the bottom segment widens (as a plan starting there)
            size[-1] += need
            out[t] = (paid + need * c[-1]) / -move
            continue
        for j in range(c.size):  # a rise fills the top-most segments with room
            take = min(move, size[j] - fill[j])
            fill[j] += take
            move -= take
        size[0] += move  # above the window's top: the top segment widens
        fill[0] += move
        out[t] = c[next((j for j in range(c.size) if fill[j] > 1e-12), c.size - 1)]
    return out
