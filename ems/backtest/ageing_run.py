"""The backtest's dispatch through the LFP ageing model: SoH over the lifetime and the wear
cost per kWh by depth of discharge (ems/backtest/ageing.py has the model)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ems.backtest.ageing import AgeingPath, daily_dod, simulate_years, wear_cost_per_kwh
from ems.backtest.engine import Trace
from ems.config import AgeingConfig

YEAR_S = 365 * 86_400
DOD_TABLE = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class Lifetime:
    path: AgeingPath
    temperature_c: float
    end_of_life_soh: float
    effective_dod: float  # each day's SoC swing, weighted by the day's discharged energy
    c_rate: float  # mean |power| while cycling / capacity
    wear_by_dod: dict[float, float]  # per kWh discharged
    wear_at_run_dod: float
    tiled: bool  # a run shorter than a year was repeated to make one
    wear_by_segment: tuple[float, ...] = ()  # the planner's `wear_depth_cost_per_kwh` from the model

    def summary(self) -> dict[str, Any]:
        p = self.path
        return {
            "model": "BLAST-Lite Lfp_Gr_250AhPrismatic (ported, ems/backtest/ageing.py)",
            "temperature_c": self.temperature_c, "end_of_life_soh": self.end_of_life_soh,
            "soh_10y": p.soh_10y, "calendar_share_10y": p.calendar_share_10y,
            "soh_by_year": list(p.soh_by_year), "soh_before_replacement": list(p.soh_before_replacement),
            "replacement_years": list(p.replacement_years), "efc_per_year": p.efc_per_year,
            "effective_dod": self.effective_dod, "c_rate": self.c_rate,
            "wear_cost_per_kwh_by_dod": {f"{k:g}": v for k, v in self.wear_by_dod.items()},
            "wear_cost_per_kwh_at_run_dod": self.wear_at_run_dod, "year_tiled_from_shorter_run": self.tiled,
            "wear_depth_cost_per_kwh": list(self.wear_by_segment),
        }


def lifetime_ageing(trace: Trace, cfg: AgeingConfig, lifetime_years: int, capex: float,
                    soc_window: tuple[float, float] = (0.0, 1.0), segments: int = 4) -> Lifetime:
    """Age a new battery over the lifetime with the run's SoC repeated year after year (a
    run shorter than a year is repeated to a year first: say so in the report). Also the
    planner's wear by depth: `segments` equal parts of `soc_window` (soc_min, soc_max)."""
    step = trace.step_s
    soc = np.concatenate([[trace.soc_initial], trace.soc])
    year_steps = YEAR_S // step
    tiled = soc.size - 1 < year_steps
    soc = np.resize(soc, year_steps + 1) if tiled else soc[: year_steps + 1]
    path = simulate_years(soc, step, lifetime_years, cfg.temperature_c, cfg.end_of_life_soh)
    dis_wh = np.maximum(trace.battery_w, 0.0) * step / 3600.0
    per_day = max(1, 86_400 // step)
    days = dis_wh.size // per_day
    dod = daily_dod(np.concatenate([[trace.soc_initial], trace.soc])[: days * per_day + 1], step)[:days]
    day_dis = dis_wh[: days * per_day].reshape(days, per_day).sum(axis=1) if days else np.zeros(0)
    eff_dod = float(np.average(dod, weights=day_dis)) if day_dis.sum() > 0 else 0.0
    moving = np.abs(trace.battery_w) > 0.01 * max(float(np.abs(trace.battery_w).max()), 1.0)
    c_rate = float(np.abs(trace.battery_w[moving]).mean() / trace.capacity_wh) if moving.any() else 0.0
    replacement = (capex if cfg.replacement_cost is None else cfg.replacement_cost) / (trace.capacity_wh / 1000.0)

    def wear(d: float) -> float:
        return wear_cost_per_kwh(d, c_rate=c_rate, temperature_c=cfg.temperature_c,
                                 efc_per_year=path.efc_per_year, lifetime_years=lifetime_years,
                                 replacement_cost_per_kwh=replacement, end_of_life_soh=cfg.end_of_life_soh)

    return Lifetime(path, cfg.temperature_c, cfg.end_of_life_soh, eff_dod, c_rate,
                    {d: wear(d) for d in DOD_TABLE}, wear(eff_dod), tiled,
                    segment_costs(wear, soc_window[1] - soc_window[0], segments))


def segment_costs(wear: Callable[[float], float], window: float, segments: int) -> tuple[float, ...]:
    """Per kWh drawn from each depth segment (top first), from the model's cost per kWh of a
    cycle of depth D, A(D): a cycle to D costs D A(D) per kWh of capacity, so the segment from
    D1 to D2 adds (D2 A(D2) - D1 A(D1)) / (D2 - D1) per kWh: the marginal cost of depth
    (B. Xu et al. 2018, depth_wear.py). Never falling with depth, as the LP needs."""
    edges = np.linspace(0.0, window, segments + 1)
    total = [d * wear(d) if d > 0 else 0.0 for d in edges]
    out = [(total[j + 1] - total[j]) / (edges[j + 1] - edges[j]) for j in range(segments)] if window > 0 else []
    return tuple(float(x) for x in np.maximum.accumulate(out)) if out else ()
