"""Where each step's power went on an off-grid or weak-grid site, in the backtest.

The period step dispatches the gensets and asks the battery for the balance; the plant
says what the battery did. What is left is physics: off-grid, a shortfall is load not
served and a surplus curtails PV; on a weak grid, the grid takes the rest within its
import and export limits, and beyond them the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ems.period import StepResult
from policies import genset_dispatch
from policies.microgrid import MicrogridParams, Mode

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MicrogridTrace:
    """Per step (averages over the step) and totals at the end."""

    mode: str
    load_w: FloatArray  # the site's load before PV
    pv_w: FloatArray  # what PV could give
    genset_w: FloatArray  # every genset together
    gensets_on: npt.NDArray[np.int16]  # gensets commanded on (starting to running)
    unserved_w: FloatArray
    curtailed_w: FloatArray  # PV curtailed
    surplus_w: FloatArray  # a surplus beyond what PV could curtail (gensets at their minimum, say)
    fuel_l: float
    engine_h: float
    starts: int
    below_min_load_h: float
    per_genset: dict[str, dict[str, float]]
    events: dict[str, int]  # start and stop reasons, counted


@dataclass
class MicrogridAccount:
    params: MicrogridParams
    export_limit_w: float | None
    genset_now_w: float = 0.0
    _genset: list[float] = field(default_factory=list)
    _on: list[int] = field(default_factory=list)
    _unserved: list[float] = field(default_factory=list)
    _curtailed: list[float] = field(default_factory=list)
    _surplus: list[float] = field(default_factory=list)
    _events: dict[str, int] = field(default_factory=dict)

    def settle(self, net_w: float, pv_w: float, battery_w: float, result: StepResult) -> float:
        """The step's grid power (0 off-grid), booking what was not served or curtailed."""
        mg = result.microgrid
        genset_w = 0.0 if mg is None else mg.dispatch.total_w
        if mg is not None:
            self._on.append(len(mg.dispatch.commanded_on))
            for e in mg.dispatch.events:
                self._events[e.reason.name] = self._events.get(e.reason.name, 0) + 1
        else:
            self._on.append(0)
        self.genset_now_w = genset_w
        residual = net_w - battery_w - genset_w
        if self.params.mode is Mode.OFF_GRID:
            grid, lo, hi = 0.0, 0.0, 0.0
        else:
            grid = residual
            hi = self.params.import_limit_w
            lo = -math.inf if self.export_limit_w is None else -self.export_limit_w
        unserved = max(residual - hi, 0.0)
        surplus = max(lo - residual, 0.0)
        curtailed = min(surplus, max(pv_w, 0.0))
        self._genset.append(genset_w)
        self._unserved.append(unserved)
        self._curtailed.append(curtailed)
        self._surplus.append(surplus - curtailed)
        if self.params.mode is not Mode.OFF_GRID:
            grid = min(max(residual, lo), hi)
        return grid

    def trace(self, load_w: FloatArray, pv_w: FloatArray, state: genset_dispatch.DispatchState) -> MicrogridTrace:
        litres, hours, starts = genset_dispatch.fleet_totals(state)
        specs = self.params.dispatch.gensets
        per = {g.genset_id: {"fuel_l": u.fuel_l, "engine_h": u.run_s / 3600.0, "loaded_h": u.loaded_s / 3600.0,
                             "starts": float(u.starts), "below_min_load_h": u.below_min_load_s / 3600.0}
               for g, u in zip(specs, state.units, strict=False)}
        return MicrogridTrace(
            mode=self.params.mode.value, load_w=load_w, pv_w=pv_w,
            genset_w=np.array(self._genset, dtype=np.float64), gensets_on=np.array(self._on, dtype=np.int16),
            unserved_w=np.array(self._unserved, dtype=np.float64),
            curtailed_w=np.array(self._curtailed, dtype=np.float64),
            surplus_w=np.array(self._surplus, dtype=np.float64),
            fuel_l=litres, engine_h=hours, starts=starts,
            below_min_load_h=math.fsum(u.below_min_load_s for u in state.units) / 3600.0,
            per_genset=per, events=dict(self._events))
