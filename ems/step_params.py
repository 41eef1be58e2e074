"""The site file's policies as the period step's parameters (ems/period.py).

One function for the live loop and the backtest, so both run a site file's policies with
the same numbers: the battery window and ramp limits, the reserve (arbitrage's share and
the failover section's outage reserve), peak shaving and arbitrage.
"""

from __future__ import annotations

from ems.config import ControlConfig, FailoverConfig, PoliciesConfig
from ems.envelope import EnvelopeParams
from ems.period import StepParams
from policies import arbitrage, battery_limits, peak_shaving, reserve


def step_params(policies: PoliciesConfig, control: ControlConfig, failover: FailoverConfig | None) -> StepParams:
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
        envelope=EnvelopeParams(b.soc_min, b.soc_max, 0.0, b.unit_ramp_w_per_s, b.temp_derate_start_c, b.temp_max_c),
        reserve=reserve.ReserveParams(0.0 if a is None else a.reserve_soc, outage, eff_in, eff_out),
        peak=None if ps is None else peak_shaving.PeakShavingParams(
            ps.grid_import_cap_w, ps.recharge_below_w, ps.peak_hold_s, control.meter_invalid_hold_s),
        arbitrage=None if a is None else arbitrage.ArbitrageParams(
            a.max_plan_age_s, a.charge_efficiency, a.discharge_efficiency),
        peak_hold_s=hold_s,
        meter_invalid_hold_s=control.meter_invalid_hold_s,
    )
