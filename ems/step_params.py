"""The site file's policies as the period step's parameters (ems/period.py).

One function for the live loop and the backtest, so both run a site file's policies with
the same numbers: the battery window and ramp limits, the reserve (arbitrage's share and
the failover section's outage reserve), peak shaving and arbitrage.
"""

from __future__ import annotations

from typing import Protocol

from ems.config import (
    ControlConfig,
    DemandResponseConfig,
    FailoverConfig,
    GridConnectionConfig,
    PoliciesConfig,
    RacksConfig,
)
from ems.envelope import EnvelopeParams
from ems.microgrid_config import MicrogridConfig
from ems.period import StepParams
from policies import arbitrage, battery_limits, demand_response, grid_limits, grid_ramp, peak_shaving, reserve


class SitePolicies(Protocol):
    """What a site file (ems/config.py) and a backtest file (ems/backtest/config.py) both say."""

    @property
    def policies(self) -> PoliciesConfig: ...

    @property
    def control(self) -> ControlConfig: ...

    @property
    def failover(self) -> FailoverConfig | None: ...

    @property
    def grid_connection(self) -> GridConnectionConfig: ...

    @property
    def microgrid(self) -> MicrogridConfig | None: ...


def step_params(cfg: SitePolicies) -> StepParams:
    policies, control, failover, g = cfg.policies, cfg.control, cfg.failover, cfg.grid_connection
    b = policies.battery
    ps = None if policies.peak_shaving is None or not policies.peak_shaving.enabled else policies.peak_shaving
    a = None if policies.arbitrage is None or not policies.arbitrage.enabled else policies.arbitrage
    fr = None if failover is None or not failover.enabled else failover.reserve
    outage = None if fr is None else reserve.OutageReserve(fr.critical_load_w, fr.bridge_s, fr.discharge_efficiency,
                                                           fr.soc_floor)
    eff_in, eff_out = (0.96, 0.96) if a is None else (a.charge_efficiency, a.discharge_efficiency)
    hold_s = 0.0 if ps is None else ps.peak_hold_s
    return StepParams(
        limits=battery_limits.BatteryLimitsParams(b.soc_min, b.soc_max, b.ramp_w_per_s),
        envelope=EnvelopeParams(b.soc_min, b.soc_max, 0.0, b.unit_ramp_w_per_s, b.temp_derate_start_c, b.temp_max_c,
                                eff_in, eff_out),
        reserve=reserve.ReserveParams(0.0 if a is None else a.reserve_soc, outage, eff_in, eff_out),
        grid=grid_limits.GridLimitsParams(g.import_limit_w, g.export_limit_w, control.meter_invalid_hold_s),
        peak=None if ps is None else peak_shaving.PeakShavingParams(
            ps.grid_import_cap_w, ps.recharge_below_w, ps.peak_hold_s, control.meter_invalid_hold_s),
        arbitrage=None if a is None else arbitrage.ArbitrageParams(
            a.max_plan_age_s, a.charge_efficiency, a.discharge_efficiency),
        grid_ramp=None if g.ramp_limit_w is None else grid_ramp.GridRampParams(g.ramp_limit_w, g.ramp_window_s),
        peak_hold_s=hold_s,
        meter_invalid_hold_s=control.meter_invalid_hold_s,
        microgrid=None if cfg.microgrid is None else cfg.microgrid.params(g.import_limit_w),
        # a backtest file has no racks: no GPU lever there, the battery alone
        dr=dr_params(policies.demand_response, racks if isinstance(racks := getattr(cfg, "racks", None), RacksConfig)
                     else None),
    )


def dr_params(dr: DemandResponseConfig | None, racks: RacksConfig | None) -> demand_response.DrParams | None:
    if dr is None or not dr.enabled:
        return None
    critical = frozenset() if racks is None else frozenset(racks.critical_rows)
    return demand_response.DrParams(dict(dr.flex_tiers), dr.default_flex_tier, critical,
                                    dr.precharge_s, dr.precharge_soc, dr.margin_fraction, baseline_tau_s=dr.baseline_s)
