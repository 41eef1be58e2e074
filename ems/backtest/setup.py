"""What a backtest ran with, in the terms a report states them: the site, the battery, how
often the controller decided and planned, and the money inputs. The report describes the
run from this, so it says what actually ran (after `--peak-shaving-only`), not what the
site file holds."""

from __future__ import annotations

from dataclasses import dataclass

from ems.backtest.config import BacktestConfig
from ems.backtest.financials import Economics
from ems.planning.depth_wear import WearPrice


@dataclass(frozen=True)
class Setup:
    site: str
    units: int
    capacity_kwh: float  # usable nameplate (capacity x SoH), all units
    rated_power_kw: float  # all units
    round_trip_efficiency: float
    soc_min: float
    soc_max: float
    reserve_soc: float  # the floor the step keeps (arbitrage's reserve, the outage reserve)
    step_s: int  # one period step per step
    planning_interval_s: float | None  # None: no planner ran
    horizon_h: float | None
    fixed_cap_kw: float | None  # peak shaving's configured cap (in force while no plan is fresh)
    foresight_step_s: int | None  # None: no perfect-foresight bound
    wear_cost_per_kwh: float
    economics: Economics | None
    wear_depth_cost_per_kwh: tuple[float, ...] = ()  # by SoC segment, top first (depth_wear.py)


def setup_of(cfg: BacktestConfig, step_s: int, reserve_soc: float, foresight_step_s: int | None,
             wear: WearPrice, economics: Economics | None) -> Setup:
    """`cfg` as it ran: arbitrage already removed for a peak-shaving-only run."""
    units = cfg.battery_units
    arb, ps = cfg.policies.arbitrage, cfg.policies.peak_shaving
    plan = arb if arb is not None and arb.enabled else None
    # one efficiency pair for the report: the plant's per unit, weighted by capacity
    total_wh = sum(u.capacity_wh for u in units)
    rte = sum(u.charge_efficiency * u.discharge_efficiency * u.capacity_wh for u in units) / total_wh
    return Setup(
        site=cfg.site, units=len(units), capacity_kwh=sum(u.capacity_wh * u.soh for u in units) / 1000.0,
        rated_power_kw=sum(u.rated_power_w for u in units) / 1000.0, round_trip_efficiency=rte,
        soc_min=cfg.policies.battery.soc_min, soc_max=cfg.policies.battery.soc_max, reserve_soc=reserve_soc,
        step_s=step_s, planning_interval_s=None if plan is None else plan.planning_interval_s,
        horizon_h=None if plan is None else plan.horizon_h,
        fixed_cap_kw=ps.grid_import_cap_w / 1000.0 if ps is not None and ps.enabled else None,
        foresight_step_s=foresight_step_s, wear_cost_per_kwh=wear.flat_per_kwh, economics=economics,
        wear_depth_cost_per_kwh=wear.costs,
    )
