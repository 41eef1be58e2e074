"""A site file's arbitrage section as the planner's settings and tariff."""

from __future__ import annotations

from datetime import UTC, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from ems.backtest.errors import BacktestInputError
from ems.config import GridConnectionConfig, PoliciesConfig, SiteConfig
from ems.dr_baseline import PRESETS
from ems.forecast_eval import read_temperature_csv
from ems.load_model import TemperatureSeries
from ems.model.errors import ConfigError
from ems.planning.builder import PlannerSettings
from ems.pv_forecast import SiteLocation
from ems.tariff import TariffError, load_price_csv, load_urdb
from ems.tariff.model import Tariff


def load_tariff(tariff_path: str | Path, prices_csv: str | Path | None = None) -> Tariff:
    """A URDB tariff, with a dynamic price CSV attached when given; errors as ConfigError."""
    try:
        tariff = load_urdb(tariff_path)
        if prices_csv is not None:
            tariff = tariff.model_copy(update={"dynamic_prices": load_price_csv(prices_csv)})
    except TariffError as exc:
        raise ConfigError(f"tariff: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"tariff: cannot read {tariff_path}: {exc.strerror}") from None
    return tariff


def may_export(policies: PoliciesConfig, grid: GridConnectionConfig) -> bool:
    """The plan may export only where arbitrage allows it and the connection does too."""
    a = policies.arbitrage
    return a is not None and a.allow_export and grid.export_limit_w != 0.0


def planner_settings(policies: PoliciesConfig, grid: GridConnectionConfig) -> PlannerSettings | None:
    a = policies.arbitrage
    if a is None or not a.enabled:
        return None
    b = policies.battery
    dr = policies.demand_response if policies.demand_response is not None and policies.demand_response.enabled else None
    return PlannerSettings(
        step_s=float(a.step_s), horizon_steps=max(1, round(a.horizon_h * 3600 / a.step_s)),
        soc_min=b.soc_min, soc_max=b.soc_max, reserve_soc=a.reserve_soc,
        charge_efficiency=a.charge_efficiency, discharge_efficiency=a.discharge_efficiency,
        wear_cost_per_kwh=a.wear_cost_per_kwh, wear_depth_cost_per_kwh=tuple(a.wear_depth_cost_per_kwh),
        allow_export=may_export(policies, grid),
        envelope_days=a.forecast_envelope_days, hold_value_per_kwh_h=a.hold_value_per_kwh_h,
        over_peak_cost_per_kwh=a.over_peak_cost_per_kwh, correction_tau_s=a.forecast_correction_tau_s,
        charge_peak_weight=a.charge_peak_weight,
        demand_per_day=a.demand_per_day, replan_soc_deviation=a.replan_soc_deviation,
        pv_location=None if a.pv_location is None else SiteLocation(
            a.pv_location.latitude_deg, a.pv_location.longitude_deg, a.pv_location.altitude_m, a.timezone),
        forecast_model=a.forecast_model, cap_on_p90=a.cap_on_p90,
        temperature=None if a.temperature_csv is None else load_temperature(a.temperature_csv),
        dr_margin_fraction=0.0 if dr is None else dr.margin_fraction,
        dr_penalty_per_kwh=0.0 if dr is None else dr.penalty_per_kwh,
        dr_baseline=None if dr is None or dr.baseline is None else PRESETS[dr.baseline.rule],
        dr_holidays=frozenset() if dr is None or dr.baseline is None else frozenset(dr.baseline.holidays),
    )


def load_temperature(path: str | Path) -> TemperatureSeries:
    """A temperature CSV for the learned forecast; errors as ConfigError naming the field."""
    try:
        return read_temperature_csv(Path(path))
    except BacktestInputError as exc:
        raise ConfigError(f"policies.arbitrage.temperature_csv: {exc}") from None


def site_tariff(cfg: SiteConfig) -> tuple[Tariff | None, tzinfo]:
    """The site's tariff and its time zone, as its arbitrage section names them (None and UTC
    without one: the demand meter then keeps a flat month peak in UTC)."""
    a = cfg.policies.arbitrage
    if a is None or not a.enabled:
        return None, UTC
    return load_tariff(a.tariff, a.prices_csv), ZoneInfo(a.timezone)
