"""The controller's site file: one YAML document validated by pydantic.

A bad file raises `ConfigError` whose message names the field and the problem; the CLI
prints it and exits non-zero without a traceback. The device sections are shared with the
simulator (ems/topology.py); the `simulation:` section is the simulator's alone
(sim_devices/config.py) and is kept here unparsed.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from ems.feeds.settings import PriceFeedConfig, RealtimePriceFeedConfig, WeatherFeedConfig, realtime_mismatch
from ems.fleet.settings import FleetLinkConfig
from ems.ha.settings import HaConfig
from ems.microgrid_config import MicrogridConfig
from ems.model.errors import ConfigError
from ems.planning.depth_wear import MAX_SEGMENTS, check_costs
from ems.secret_source import read_secret
from ems.topology import (
    MAX_S,
    MAX_W,
    BessUnitConfig,
    Fraction,
    ModbusEndpoint,
    MqttConfig,
    RacksConfig,
    SiteDevices,
    Strict,
    read_yaml_mapping,
    validated,
)
from policies import ride_through

__all__ = ["BessUnitConfig", "ConfigError", "ModbusEndpoint", "MqttConfig", "RacksConfig"]


class ControlConfig(Strict):
    period_s: float = Field(default=1.0, ge=0.01, le=60)
    setpoint_deadband_w: float = Field(default=1000.0, ge=0, le=MAX_W, description="skip writes smaller than this")
    meter_stale_after_s: float = Field(default=3.0, gt=0, le=MAX_S)
    bess_stale_after_s: float = Field(default=3.0, gt=0, le=MAX_S)
    meter_invalid_hold_s: float = Field(
        default=30.0, ge=0, le=MAX_S, description="without a trusted meter, hold the last setpoint this long, then 0 W")
    meter_frozen_s: float = Field(default=30.0, ge=0, le=MAX_S,
                                  description="the exact same meter power this long: frozen (0: off)")
    meter_max_abs_w: float | None = Field(default=None, gt=0, le=MAX_W,
                                          description="beyond: implausible (default from the site)")
    bms_soc_max_c_rate: float = Field(default=2.0, gt=0, description="fastest plausible SoC change, in C")
    status_every_periods: int = Field(default=1, ge=1)


class PeakShavingConfig(Strict):
    enabled: bool = True
    grid_import_cap_w: float = Field(gt=0, le=MAX_W, description="hold grid import at or under this")
    recharge_below_w: float = Field(ge=0, le=MAX_W, description="recharge while import is under this")
    peak_hold_s: float = Field(default=0.0, ge=0, le=MAX_S, description="shave the max of the recent load")

    @model_validator(mode="after")
    def _threshold_below_cap(self) -> PeakShavingConfig:
        if self.recharge_below_w > self.grid_import_cap_w:
            raise ValueError("recharge_below_w must not exceed grid_import_cap_w")
        return self


class BatteryLimitsConfig(Strict):
    soc_min: Fraction = 0.10
    soc_max: Fraction = 0.95
    ramp_w_per_s: float | None = Field(default=None, gt=0, le=MAX_W, description="site ramp limit")
    unit_ramp_w_per_s: float | None = Field(default=None, gt=0, le=MAX_W, description="per-unit ramp limit (envelope)")
    temp_derate_start_c: float = Field(default=45.0, description="full power up to this module temperature")
    temp_max_c: float = Field(default=55.0, description="no power at or above this module temperature")

    @model_validator(mode="after")
    def _ordered(self) -> BatteryLimitsConfig:
        if self.soc_min >= self.soc_max:
            raise ValueError("soc_min must be below soc_max")
        if self.temp_derate_start_c >= self.temp_max_c:
            raise ValueError("temp_derate_start_c must be below temp_max_c")
        return self


class PvLocationConfig(Strict):
    """The PV array's place, for the sun's path over it."""

    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180)
    altitude_m: float = Field(default=0.0, ge=-500, le=9000)


class ArbitrageConfig(Strict):
    """Plan against the tariff with an LP and follow the plan (policies/arbitrage.py)."""

    enabled: bool = True
    tariff: Path = Field(description="OpenEI URDB rate JSON (see docs/tariffs.md)")
    prices_csv: Path | None = Field(default=None, description="dynamic prices (timestamp,price_per_kwh)")
    timezone: str = Field(default="UTC", description="IANA zone of the tariff's wall-clock schedules")
    planning_interval_s: float = Field(default=900.0, ge=60, le=86_400, description="re-plan this often")
    step_s: int = Field(default=900, ge=60, le=3600, description="planning step; must divide 3600")
    horizon_h: float = Field(default=24.0, ge=1, le=168)
    wear_cost_per_kwh: float = Field(default=0.01, ge=0, description="charged per kWh discharged")
    wear_depth_cost_per_kwh: list[float] = Field(
        default_factory=list, max_length=MAX_SEGMENTS,
        description="per SoC segment from the top of the battery's window down, a further cost per kWh drawn "
                    "from it: wear that grows with the depth of discharge (ems/planning/depth_wear.py; "
                    "`ems backtest` with economics.ageing suggests values)")
    reserve_soc: Fraction = Field(default=0.0, description="never discharge below this for money")
    charge_efficiency: float = Field(default=0.95, gt=0, le=1)
    discharge_efficiency: float = Field(default=0.95, gt=0, le=1)
    allow_export: bool = False
    max_plan_age_s: float = Field(default=7200.0, gt=0, le=MAX_S, description="older plans are not followed")
    # forecast and rolling-horizon hedges, see docs/backtest.md for what each does and why
    forecast_envelope_days: int = Field(default=1, ge=0, le=14, description="plan on max(weekly, last days)")
    forecast_correction_tau_s: float = Field(default=43200.0, ge=0, le=MAX_S,
                                             description="how long the last hour's offset from its profile lasts")
    hold_value_per_kwh_h: float = Field(default=0.002, ge=0, description="LP preference for a charged battery")
    over_peak_cost_per_kwh: float = Field(default=0.02, ge=0,
                                          description="LP preference for charging under the billed peak")
    charge_peak_weight: float = Field(default=1.0, ge=0, le=10,
                                      description="share of the demand rate charged on a peak that charging makes")
    demand_per_day: bool = Field(default=True, description="shave every day as if it set the monthly peak")
    replan_soc_deviation: Fraction | None = Field(default=0.05, description="re-plan early when SoC is this far off")
    pv_location: PvLocationConfig | None = Field(
        default=None, description="where the PV is: its forecast then follows the clear sky there (ems/pv_forecast.py)")
    reuse_lp: bool = Field(default=True, description="keep the LP between solves and update it in place "
                                                     "(false: build it anew for every plan, the old path)")
    # the learned load forecast (ems/load_model.py, docs/backtest.md "Forecast")
    forecast_model: Literal["profile", "learned", "learned_envelope"] = Field(
        default="profile", description="profile: same hour of week; learned: gradient boosting on the day so far; "
                                       "learned_envelope: the higher of the two")
    cap_on_p90: bool = Field(default=False, description="plan on the learned forecast's P90 (the demand cap held "
                                                        "against the upper quantile); needs forecast_model: learned")
    temperature_csv: Path | None = Field(default=None, description="timestamp,°C in the tariff's local time: "
                                                                   "the learned forecast's weather input")
    # market prices and a weather forecast fetched live (ems/feeds/, docs/feeds.md)
    price_feed: PriceFeedConfig | None = Field(default=None, description="day-ahead prices: entsoe, nordpool "
                                               "or caiso (replace or add to the tariff's energy charge)")
    realtime_price_feed: RealtimePriceFeedConfig | None = Field(
        default=None, description="real-time prices laid over the day-ahead ones where they are known: "
                                  "entsoe (intraday auctions) or caiso (RTPD, RTM)")
    weather_feed: WeatherFeedConfig | None = Field(default=None, description="Open-Meteo forecast: temperature "
                                                   "for the learned load model, irradiance for the PV forecast")

    @model_validator(mode="after")
    def _step_divides_hour(self) -> ArbitrageConfig:
        if self.cap_on_p90 and self.forecast_model == "profile":
            raise ValueError("cap_on_p90 needs forecast_model: learned or learned_envelope "
                             "(the P90 is the learned model's)")
        if 3600 % self.step_s:
            raise ValueError("step_s must divide 3600 (tariff schedules are hourly)")
        if (why := realtime_mismatch(self.price_feed, self.realtime_price_feed)) is not None:
            raise ValueError(why)
        if (why := check_costs(self.wear_depth_cost_per_kwh)) is not None:
            raise ValueError(f"wear_depth_cost_per_kwh: {why}")
        if self.horizon_h * 3600 < self.step_s:
            raise ValueError("horizon_h must hold at least one step")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not a known IANA time zone") from None
        return self


class SmoothingConfig(Strict):
    """Keep training swings off the grid (policies/smoothing.py, policies/gpu_smoothing.py): a
    fast loop moves the battery around the period's setpoint; GPU floors and ramps when the
    battery cannot hold the swing alone."""

    enabled: bool = True
    rate_hz: float = Field(default=20.0, ge=1, le=50, description="ticks a second of the fast loop")
    tau_s: float = Field(default=20.0, gt=0, le=3600,
                         description="low-pass time constant of the grid target: slower than the swings")
    lead_ticks: float = Field(default=1.0, ge=0, le=5,
                              description="answer the load this many ticks ahead: the loop's read-to-write latency")
    predict_s: float = Field(default=1.0, ge=0, le=2,
                             description="load history the predictor of the load `lead_ticks` ahead weighs "
                             "(0: linear extrapolation of the last change)")
    predict_fit_s: float = Field(default=30.0, ge=1, le=120,
                                 description="history the predictor is fitted on (once a second, within the "
                                 "tick: the bounds keep a fit to ~10 ms): at least 4 x predict_s")
    gpu: bool = Field(default=True, description="GPU power floors and ramps as the lever after the battery")
    gpu_floor_fraction: Fraction = Field(default=0.7, description="of a rack's nameplate, held while a job runs")
    gpu_ramp_w_per_s: float = Field(default=2000.0, gt=0, le=MAX_W, description="per rack")
    gpu_release_after_s: float = Field(default=300.0, ge=0, le=MAX_S)
    job_ramp_share: Fraction = Field(
        default=0.5, description="of the grid's ramp limit an announced job start or stop may use where the battery "
        "cannot take it and its racks ramp instead (0: job steps are not ramped)")
    job_ramp_lead_s: float = Field(default=5.0, ge=0, le=600,
                                   description="racks are told to ramp this long before an announced step")
    filler: bool = Field(default=False, description="the filler load (the site's `filler` device) as the last "
                         "lever: burns what the battery cannot absorb of a drop; costs its energy")

    @model_validator(mode="after")
    def _fit_holds_history(self) -> SmoothingConfig:
        if self.predict_fit_s < 4 * self.predict_s:
            raise ValueError("predict_fit_s must be at least 4 x predict_s (the fit needs more rows than taps)")
        return self


def _no_credentials(url: str) -> str:
    """A URL the status and the metrics may show (unauthenticated): no user or password in it;
    a secret lives in its own variable or file, never the site file."""
    if "@" in urlsplit(url).netloc:
        raise ValueError("must not carry a user or password (user:password@host): the status and the metrics "
                         "show this URL (the VTN's credentials: the client secret, or the certificate)")
    return url


class OpenAdrConfig(Strict):
    """An OpenADR 2.0b VEN (ems/openadr_ven.py) polling the program's VTN."""

    vtn_url: str = Field(pattern=r"^https?://[^\s]+$", description="the VTN's base URL (…/OpenADR2/Simple/2.0b)")
    ven_name: str = Field(min_length=1, max_length=200)
    ven_id: str | None = Field(default=None, max_length=200, description="default: the one the VTN assigns")
    opt_in: bool = Field(default=True, description="opt in to events the site can act on (false: opt out of all)")
    simple_levels: dict[int, Fraction] = Field(
        default_factory=lambda: {1: 0.10, 2: 0.25, 3: 0.50},
        description="SIMPLE signal level -> share of the baseline to cut (level 0: normal operation)")
    power_scale_w: float = Field(default=1000.0, gt=0, description="W per unit of a power payload without a unit")
    report_every_s: float = Field(default=10.0, ge=1, le=3600, description="telemetry offered at this rate")
    cert: Path | None = Field(default=None, description="PEM certificate to sign messages (none: unsigned)")
    key: Path | None = None
    vtn_fingerprint: str | None = None
    ca_file: Path | None = None

    _vtn_url = field_validator("vtn_url")(_no_credentials)


class OpenAdr3Config(Strict):
    """An OpenADR 3.0.1 VEN (ems/openadr3_ven.py) polling the VTN's REST API for its programs' events."""

    vtn_url: str = Field(pattern=r"^https?://[^\s]+[^/\s]$", description="the VTN's base URL (…/openadr3/3.0.1)")
    token_url: str = Field(pattern=r"^https?://[^\s]+$", description="the OAuth2 token endpoint (client credentials)")
    client_id: str = Field(min_length=1, max_length=200)
    client_secret_env: str | None = Field(default=None, description="env variable holding the client secret")
    client_secret_file: Path | None = Field(default=None, description="or a file holding it (never the site file)")
    programs: list[str] = Field(min_length=1, max_length=16, description="programName(s) whose events the site follows")
    ven_name: str = Field(min_length=1, max_length=128, description="the site's VEN name: an event targeted at "
                          "VEN_NAMEs without it is another site's; the clientName of its reports")
    targets: dict[str, list[str]] = Field(
        default_factory=dict, max_length=8,
        description="what else names the site in an event's targets (type -> values, e.g. GROUP: [north]): an "
        "event whose targets of the site's types all name others is another site's")
    poll_every_s: float = Field(default=30.0, ge=1, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="a poll (or a round of reports) longer "
                             "than this is abandoned and counted")
    reports: bool = Field(default=True, description="post the site's import and flexibility while an event is in force")
    report_every_s: float = Field(default=60.0, ge=1, le=3600, description="at most this often (at the poll's rate)")
    simple_levels: dict[int, Fraction] = Field(
        default_factory=lambda: {1: 0.10, 2: 0.25, 3: 0.50},
        description="SIMPLE level -> share of the baseline to cut (level 0: normal operation)")
    power_scale_w: float = Field(default=1000.0, gt=0, description="W per unit of a power payload without units")

    _urls = field_validator("vtn_url", "token_url")(_no_credentials)

    @field_validator("targets")
    @classmethod
    def _target_types(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for kind, values in v.items():
            if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", kind) or kind == "VEN_NAME":
                raise ValueError(f"{kind!r}: a target type in capitals (GROUP, RESOURCE_NAME, ...); "
                                 "VEN_NAME is ven_name")
            if not values or len(values) > 64 or not all(0 < len(x) <= 128 for x in values):
                raise ValueError(f"{kind}: 1 to 64 values of 1 to 128 characters")
        return v

    @model_validator(mode="after")
    def _one_secret(self) -> OpenAdr3Config:
        if (self.client_secret_env is None) == (self.client_secret_file is None):
            raise ValueError("the client secret needs exactly one of client_secret_env and client_secret_file")
        return self

    def client_secret(self) -> str:
        """The client secret, read now (a missing one is a ConfigError naming the field)."""
        secret = read_secret("policies.demand_response.openadr3", ("client_secret_env", self.client_secret_env),
                             ("client_secret_file", self.client_secret_file))
        assert secret is not None  # exactly one of the two is set (the validator above)
        return secret


class LoadTargetConfig(Strict):
    """The load-target channel (ems/load_target.py): `grid.loadtarget.set` requests over MQTT
    (`PREFIX/grid/loadtarget/set`) and the operator API, following DSX Flex."""

    mqtt: bool = Field(default=True, description="take requests on PREFIX/grid/loadtarget/set")
    secret_env: str | None = Field(default=None, description="env variable holding the JWS HS256 shared secret; "
                                   "with a secret every request's data must be signed")
    secret_file: Path | None = None
    max_age_s: float = Field(default=300.0, gt=0, le=86400, description="refuse a request whose time is further off")
    status_every_s: float = Field(default=10.0, ge=1, le=3600, description="status while an event runs")

    def secret(self) -> bytes | None:
        """The shared secret, read now (a missing one is a ConfigError naming the field)."""
        secret = read_secret("policies.demand_response.load_target", ("secret_env", self.secret_env),
                             ("secret_file", self.secret_file))
        return None if secret is None else secret.encode()


class ProgramBaselineConfig(Strict):
    """The program's baseline of an event that asks a reduction and brings no baseline
    (ems/dr_baseline.py): N similar days, computed from the planner's load history."""

    rule: Literal["caiso_10in10", "pjm_high4of5", "nyiso_high5of10"] = Field(
        default="caiso_10in10", description="the program's rule (docs/demand-response.md)")
    holidays: list[date] = Field(default_factory=list, max_length=1000,
                                 description="days counted as weekend days, as the program's calendar says")


class DemandResponseConfig(Strict):
    """Demand response (policies/demand_response.py, docs/demand-response.md): events hold
    grid import at or under a target; the battery first, then GPU racks by flex tier."""

    enabled: bool = True
    flex_tiers: dict[str, int] = Field(
        default_factory=dict, description="row -> flex tier 0-4 (0 never throttled, 1 up to 10 % of its "
        "throughput, 2 up to 25 %, 3 up to 50 %, 4 may pause)")
    default_flex_tier: int = Field(default=0, ge=0, le=4, description="the tier of rows flex_tiers does not name")
    precharge_s: float = Field(default=3600.0, ge=0, le=MAX_S, description="charge for an event this long before it")
    precharge_soc: Fraction = Field(default=0.95, description="the SoC the pre-charge aims for")
    margin_fraction: float = Field(default=0.03, ge=0, le=0.5, description="aim this share under the target")
    baseline_s: float = Field(default=900.0, gt=0, le=MAX_S,
                              description="the site's own baseline: its import averaged over this before an event")
    penalty_per_kwh: float = Field(default=0.0, ge=0, le=1e6, description="what the program charges per kWh "
                                   "imported over an event's target where the event names none (the planner weighs it)")
    baseline: ProgramBaselineConfig | None = None
    openadr: OpenAdrConfig | None = None
    openadr3: OpenAdr3Config | None = None
    load_target: LoadTargetConfig | None = None

    @model_validator(mode="after")
    def _tiers_in_range(self) -> DemandResponseConfig:
        bad = {row: t for row, t in self.flex_tiers.items() if not 0 <= t <= 4}
        if bad:
            raise ValueError(f"flex_tiers must be 0-4: {bad}")
        if self.openadr is not None and self.openadr3 is not None:
            # two programs' events in one book: which one the site owes where they overlap is a contract question
            raise ValueError("openadr (2.0b) and openadr3 name two VTNs: configure one")
        return self


class PoliciesConfig(Strict):
    battery: BatteryLimitsConfig = BatteryLimitsConfig()
    peak_shaving: PeakShavingConfig | None = None
    arbitrage: ArbitrageConfig | None = None
    smoothing: SmoothingConfig | None = None
    demand_response: DemandResponseConfig | None = None

    @model_validator(mode="after")
    def _reserve_within_window(self) -> PoliciesConfig:
        a = self.arbitrage
        if a is not None and a.reserve_soc > self.battery.soc_max:
            raise ValueError("arbitrage.reserve_soc must not exceed battery.soc_max")
        return self


class AgeingConfig(Strict):
    """The LFP ageing model in place of a flat degradation (ems/backtest/ageing.py)."""

    temperature_c: float = Field(default=25.0, ge=-20, le=60, description="cell temperature the HVAC holds")
    end_of_life_soh: Fraction = Field(default=0.7, description="replace the battery at the end of a year below this")
    replacement_cost: float | None = Field(default=None, ge=0, description="cost of a replacement (default: capex)")


class EconomicsConfig(Strict):
    """What the battery costs, for `ems backtest`'s payback, NPV, IRR and LCOS (money in the
    tariff's currency)."""

    capex: float = Field(ge=0, description="installed cost at year 0")
    om_per_year: float = Field(default=0.0, ge=0)
    discount_rate: float = Field(default=0.07, ge=0, lt=1)
    lifetime_years: int = Field(default=15, ge=1, le=50)
    degradation_per_year: Fraction = Field(default=0.02, description="loss of usable energy per year")
    end_of_life_cost: float = Field(default=0.0, description="decommissioning (negative: salvage)")
    ageing: AgeingConfig | None = Field(default=None, description="LFP ageing from the run's dispatch; "
                                                                  "replaces degradation_per_year")


class ReserveConfig(Strict):
    """Backup energy kept for an outage: the critical load for `bridge_s` (until the genset
    carries it), on top of the hardware floor `soc_floor`."""

    critical_load_w: float = Field(gt=0, le=MAX_W)
    bridge_s: float = Field(default=600.0, gt=0, le=MAX_S)
    discharge_efficiency: float = Field(default=0.95, gt=0, le=1)
    soc_floor: Fraction = 0.05


class GensetPolicyConfig(Strict):
    start_after_s: float = Field(default=0.0, ge=0, le=MAX_S, description="start only if the outage outlasts this")
    min_run_s: float = Field(default=600.0, ge=0, le=MAX_S, description="never stop before this much running")
    charge_battery_w: float = Field(default=0.0, ge=0, le=MAX_W,
                                    description="extra genset output to recharge the battery")


class RideThroughRegionConfig(Strict):
    """While the signal is in [low_pu, high_pu], stay connected for ride_s (null: indefinitely);
    with ride_s_at_high the allowance runs linearly from ride_s at low_pu to it at high_pu."""

    low_pu: float = Field(ge=0, le=10)
    high_pu: float = Field(ge=0, le=10)
    ride_s: float | None = Field(default=None, ge=0, le=MAX_S)
    ride_s_at_high: float | None = Field(default=None, ge=0, le=MAX_S)

    @model_validator(mode="after")
    def _ordered(self) -> RideThroughRegionConfig:
        if self.low_pu > self.high_pu:
            raise ValueError("low_pu must not exceed high_pu")
        if self.ride_s_at_high is not None and self.ride_s is None:
            raise ValueError("ride_s_at_high needs ride_s")
        return self

    def region(self) -> ride_through.Region:
        return ride_through.Region(self.low_pu, self.high_pu, self.ride_s, self.ride_s_at_high)


def _regions(curve: ride_through.Curve) -> list[RideThroughRegionConfig]:
    return [RideThroughRegionConfig(low_pu=r.low, high_pu=r.high, ride_s=r.ride_s, ride_s_at_high=r.ride_s_at_high)
            for r in curve]


class RideThroughConfig(Strict):
    """The voltage and frequency ride-through curves (per unit of nominal; IEEE 1547-2018
    category II by default). A disturbance inside them keeps the site connected; beyond them
    the site islands. A curve of its continuous region alone islands on any excursion."""

    voltage_pu: list[RideThroughRegionConfig] = Field(
        default_factory=lambda: _regions(ride_through.CATEGORY_II_VOLTAGE), min_length=1)
    frequency_pu: list[RideThroughRegionConfig] = Field(
        default_factory=lambda: _regions(ride_through.CATEGORY_II_FREQUENCY), min_length=1)

    @model_validator(mode="after")
    def _nominal_is_continuous(self) -> RideThroughConfig:
        for name, curve in (("voltage_pu", self.voltage_pu), ("frequency_pu", self.frequency_pu)):
            if ride_through.allowance_s(tuple(r.region() for r in curve), 1.0) is not None:
                raise ValueError(f"{name}: 1.0 pu (nominal) must lie in a region with no ride_s (continuous)")
        return self

    def curves(self) -> tuple[ride_through.Curve, ride_through.Curve]:
        return tuple(r.region() for r in self.voltage_pu), tuple(r.region() for r in self.frequency_pu)


class FailoverConfig(Strict):
    enabled: bool = True
    budget_s: float = Field(default=0.020, gt=0, le=MAX_S, description="grid loss -> last device commanded")
    detect_poll_s: float = Field(default=0.002, gt=0, le=1.0)
    nominal_voltage_v: float = Field(default=230.0, gt=0, le=1e6)
    nominal_frequency_hz: float = Field(default=50.0, gt=0, le=1e3)
    ride_through: RideThroughConfig = RideThroughConfig()
    debounce_samples: int = Field(default=2, ge=1, le=1000,
                                  description="consecutive samples beyond the ride-through curve (V, f)")
    shed_order: list[str] = Field(default_factory=list, description="rows capped first .. last; critical rows last")
    min_cap_fraction: Fraction = Field(default=0.25, description="lowest cap a rack can be given")
    island_loading: Fraction = Field(default=0.9, description="plan to load the BESS up to this share")
    overhead_fraction: float = Field(default=0.25, ge=0, le=2, description="cooling etc. as a share of racks")
    reserve: ReserveConfig | None = None
    genset: GensetPolicyConfig = GensetPolicyConfig()
    reconnect_stable_s: float = Field(default=300.0, ge=0, le=MAX_S)
    cap_release_s: float = Field(default=60.0, ge=0, le=MAX_S, description="caps ramp back to nameplate over this")


class GridConnectionConfig(Strict):
    """What the site's grid connection allows at the point of connection, enforced on every
    setpoint (policies/grid_limits.py): import up to its rating, export up to the contract."""

    import_limit_w: float | None = Field(default=None, gt=0, le=MAX_W, description="the connection's rating")
    export_limit_w: float | None = Field(
        default=0.0, ge=0, le=MAX_W, description="0: no export (the default); none (null): no limit")
    ramp_limit_w: float | None = Field(default=None, gt=0, le=MAX_W,
                                       description="the most grid import may change within ramp_window_s")
    ramp_window_s: float = Field(default=60.0, gt=0, le=MAX_S)
    oscillation_limit_w_rms: float | None = Field(
        default=None, gt=0, le=MAX_W, description="RMS of grid import in oscillation_band_hz (reported against)")
    oscillation_band_hz: tuple[float, float] = (0.1, 20.0)

    @model_validator(mode="after")
    def _band(self) -> GridConnectionConfig:
        lo, hi = self.oscillation_band_hz
        if not 0 < lo < hi:
            raise ValueError("oscillation_band_hz must be (low, high) with 0 < low < high")
        return self


class LoggingConfig(Strict):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class StateConfig(Strict):
    """Where the controller keeps what must survive a restart (event log, ...)."""

    dir: Path | None = Field(default=None, description="None keeps everything in memory")
    persist_every_s: float = Field(default=5.0, gt=0, le=MAX_S, description="how often controller state is saved")


class RateLimit(Strict):
    """A token bucket per client (keyed by the TCP peer's address) and one for all clients together."""

    per_client_per_s: float = Field(gt=0, le=100_000)
    per_client_burst: int = Field(ge=1, le=100_000)
    total_per_s: float = Field(gt=0, le=100_000)
    total_burst: int = Field(ge=1, le=100_000)


class HttpLimits(Strict):
    """What any client may ask of the operator server (docs/operator.md): beyond a rate, 429
    with Retry-After. Defaults are generous for the dashboard and a Prometheus scrape."""

    reads: RateLimit = RateLimit(per_client_per_s=20, per_client_burst=60, total_per_s=200, total_burst=400)
    heavy_reads: RateLimit = Field(  # /api/events, /metrics, /api/snapshot, /api/history
        default=RateLimit(per_client_per_s=2, per_client_burst=10, total_per_s=10, total_burst=30))
    actions: RateLimit = RateLimit(per_client_per_s=2, per_client_burst=10, total_per_s=5, total_burst=20)
    streams_per_client: int = Field(default=4, ge=1, le=10_000, description="open /api/stream per client")
    streams_total: int = Field(default=32, ge=1, le=100_000)
    clients_tracked: int = Field(default=4096, ge=16, le=1_000_000, description="per-client buckets kept (LRU)")
    # the action queue is the controller's: these two are read from its site file's http section
    action_queue: int = Field(default=16, ge=1, le=1000, description="actions waiting for the next period")
    actions_per_period: int = Field(default=4, ge=1, le=100, description="applied at the start of one period")
    action_timeout_s: float = Field(default=5.0, gt=0, le=600,
                                    description="real seconds an action waits for the control loop; then 503")
    server_cpu_share: float = Field(default=0.25, gt=0, le=1,
                                    description="of one core, at most, for the server's thread (1: no pacing)")


class HttpConfig(Strict):
    """The operator server (dashboard, API, metrics), off unless enabled. Its token is never here:
    it comes from the environment variable `token_env` or the file `token_file` (ems/operator/auth.py)."""

    enabled: bool = False
    host: str = Field(default="127.0.0.1", description="bind address; loopback unless you mean it")
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    token_env: str = Field(default="EMS_HTTP_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    token_file: Path | None = Field(default=None, description="lines of `token` or `name:token`")
    overrides_file: Path | None = Field(default=None, description="default: state.dir/overrides.json")
    max_force_s: float = Field(default=4 * 3600.0, gt=0, le=MAX_S, description="longest forced mode (site seconds)")
    stream_interval_s: float = Field(default=0.5, ge=0.05, le=10, description="dashboard update, real seconds")
    limits: HttpLimits = HttpLimits()


class SiteConfig(SiteDevices):
    control: ControlConfig = ControlConfig()
    policies: PoliciesConfig = PoliciesConfig()
    grid_connection: GridConnectionConfig = GridConnectionConfig()
    logging: LoggingConfig = LoggingConfig()
    state: StateConfig = StateConfig()
    http: HttpConfig = HttpConfig()  # operator server (dashboard, API, metrics): off unless enabled
    failover: FailoverConfig | None = None
    simulation: dict[str, Any] | None = Field(default=None, description="the simulated plant (sim_devices/config.py)")
    economics: EconomicsConfig | None = None
    microgrid: MicrogridConfig | None = None  # off-grid or weak-grid operation (docs/off-grid.md)
    ha: HaConfig | None = None  # active/standby with a lease in NATS JetStream (docs/ha.md)
    fleet: FleetLinkConfig | None = None  # status, events, history to the fleet on JetStream (docs/fleet.md)

    @model_validator(mode="after")
    def _shed_rows_exist(self) -> SiteConfig:
        if self.failover is not None:
            unknown = set(self.failover.shed_order) - set(self.racks.row_ids())
            if unknown:
                raise ValueError(f"failover.shed_order names unknown rows: {sorted(unknown)}")
        if self.microgrid is not None and (unknown := set(self.microgrid.shed_order) - set(self.racks.row_ids())):
            raise ValueError(f"microgrid.shed_order names unknown rows: {sorted(unknown)}")
        dr = self.policies.demand_response
        if dr is not None and (unknown := set(dr.flex_tiers) - set(self.racks.row_ids())):
            raise ValueError(f"policies.demand_response.flex_tiers names unknown rows: {sorted(unknown)}")
        sm = self.policies.smoothing
        if sm is not None and sm.filler and self.filler is None:
            raise ValueError("policies.smoothing.filler needs a filler device (the site file's `filler` section)")
        check_microgrid(self.microgrid, self.grid_connection, self.policies)
        return self


def is_off_grid(cfg: SiteConfig) -> bool:
    """No grid at all (`microgrid.mode: off_grid`): the battery forms the island, always."""
    return cfg.microgrid is not None and cfg.microgrid.mode == "off_grid"


def meter_frozen_s(cfg: SiteConfig) -> float:
    """The frozen-meter check's time; off-grid the meter at the open PCC reads 0 W for ever: no check."""
    return 0.0 if is_off_grid(cfg) else cfg.control.meter_frozen_s


def check_microgrid(mg: MicrogridConfig | None, grid: GridConnectionConfig, policies: PoliciesConfig) -> None:
    """A weak grid needs its import limit; an off-grid site has no grid to trade on."""
    if mg is not None and mg.mode == "weak_grid" and grid.import_limit_w is None:
        raise ValueError("microgrid.mode weak_grid needs grid_connection.import_limit_w")
    if mg is not None and mg.mode == "off_grid" and policies.arbitrage is not None and policies.arbitrage.enabled:
        raise ValueError("policies.arbitrage: an off_grid site has no grid to buy from or sell to "
                         "(remove the section, or set enabled: false)")


def parse_config(data: object, source: str = "<config>") -> SiteConfig:
    return validated(SiteConfig, data, source)


def load_config(path: str | Path) -> SiteConfig:
    data = read_yaml_mapping(path)
    if "bess_units" not in data and "battery_units" in data:  # else: meter, bess_units, racks missing...
        raise ConfigError(f"{path}: a backtest file (battery_units), not a site file: `ems backtest` and `ems size` "
                          "take it; a site file names the meter, bess_units and racks (config/hil-site.yaml)")
    return parse_config(data, str(path))
