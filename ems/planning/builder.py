"""From the load so far to the next plan's problem, and from a solved plan to the policies' view.

Synchronous and clock-free: time comes in as naive local seconds (tariff wall-clock time
as seconds since 1970-01-01T00:00). The planning runner (ems/planning/runner.py) drives it
for the live loop and the backtest alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

import numpy as np

from ems.dr_baseline import BaselineRule, program_baseline
from ems.forecast import DAY_S, WEEK_S, FloatArray, load_forecast, pv_forecast
from ems.load_model import LoadModel, TemperatureSeries
from ems.model.dr import DrEvent
from ems.model.plan import PlanView
from ems.model.snapshot import SiteSnapshot
from ems.planning.dr_terms import dr_terms
from ems.planning.history import StepHistory
from ems.planning.lp import Plan, PlanError, PlanProblem
from ems.pv_forecast import SiteLocation, SkyAt, pv_clear_sky_forecast
from ems.tariff.calendar import MonthKey, TouKey, local_datetime
from ems.tariff.model import Tariff
from ems.tariff_signals import SignalCache, TariffSignals


class NotEnoughHistory(PlanError):
    """Less than `min_history_h` of load history: a plan would rest on a guess."""


class PeaksSoFar(Protocol):
    """This billing month's demand peaks so far (the site's demand meter, ems/demand.py)."""

    def peak_kw(self, key: MonthKey) -> float: ...

    def tou_peak_kw(self, key: TouKey) -> float: ...

    def past_peaks_kw(self) -> Mapping[MonthKey, float]: ...


@dataclass(frozen=True)
class PlannerSettings:
    step_s: float
    horizon_steps: int
    soc_min: float
    soc_max: float
    reserve_soc: float
    charge_efficiency: float
    discharge_efficiency: float
    wear_cost_per_kwh: float
    allow_export: bool = False
    wear_depth_cost_per_kwh: tuple[float, ...] = ()  # by SoC segment, top first (depth_wear.py)
    history_weeks: int = 4
    min_history_h: float = 24.0
    envelope_days: int = 1
    correction_tau_s: float = 4 * 3600.0  # how long the last hour's offset from its profile lasts
    terminal_soc: float | None = None
    forecast_margin: float = 0.0  # plan for this much more load than forecast (share)
    hold_value_per_kwh_h: float = 0.0  # LP preference for a charged battery (see lp.py)
    over_peak_cost_per_kwh: float = 0.0  # LP preference for charging under the billed peak (see lp.py)
    charge_peak_weight: float = 0.0  # demand rate share on a peak that charging makes (see lp.py)
    replan_soc_deviation: float | None = 0.05  # re-plan early when SoC is off the plan by this
    demand_per_day: bool = True  # see ems/tariff_signals.py
    forecast_model: str = "profile"  # "learned": ems/load_model.py's P50 for the first day ahead;
    # "learned_envelope": the higher of that and the profile
    cap_on_p90: bool = False  # plan on the learned P90: the demand cap held against the upper quantile
    temperature: TemperatureSeries | None = None  # the learned model's weather input, where given
    pv_location: SiteLocation | None = None  # PV ahead from the clear sky there (else: the same time of day)
    dr_margin_fraction: float = 0.0  # demand response: plan the targets this share under, as the step aims
    dr_penalty_per_kwh: float = 0.0  # what a kWh over a target costs where the event names no penalty
    dr_baseline: BaselineRule | None = None  # the program's baseline of a reduction (ems/dr_baseline.py)
    dr_holidays: frozenset[date] = field(default_factory=frozenset)  # days the baseline counts as weekend days


@dataclass(frozen=True)
class BatteryNow:
    """The battery as the planner sees it now (available units only)."""

    soc: float
    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float


@dataclass(frozen=True)
class PlanRequest:
    problem: PlanProblem
    signals: TariffSignals
    start_local_s: float  # start of step 0
    dr_event_ids: tuple[str, ...] = ()  # the demand-response events the plan plans for


class PlanBuilder:
    """The load history and, from it, the next plan's problem (synchronous, clock-free)."""

    def __init__(self, tariff: Tariff, settings: PlannerSettings) -> None:
        self.tariff = tariff
        self.s = settings
        keep = settings.history_weeks * round(WEEK_S / settings.step_s) + 1
        self.naive_keep = keep
        self.model: LoadModel | None = None
        if settings.forecast_model in ("learned", "learned_envelope"):
            self.model = LoadModel(settings.step_s, weeks=settings.history_weeks,
                                   horizon_steps=min(settings.horizon_steps, round(DAY_S / settings.step_s)),
                                   temperature=settings.temperature)
            keep = max(keep, self.model.keep_steps)  # the model trains on weeks more
        self.load = StepHistory(settings.step_s, keep)
        self.pv = StepHistory(settings.step_s, keep)  # where a PV inverter is metered (the site file's pv:)
        self.pv_metered = False
        self._signals = SignalCache()  # the calendar's part of the tariff signals, a span at a time
        self.sky: SkyAt | None = None  # a weather forecast's irradiance for the PV ahead (ems/feeds/), else clear sky
        self.dr_days: set[date] = set()  # days with a DR event: not "similar days" for a baseline
        # a backtest's diagnostic only (`known_load_ahead_h`): the true net load over the first
        # steps of a window, laid over the forecast, to price what a better forecast is worth
        self.known_ahead: Callable[[float, FloatArray], FloatArray] | None = None

    def observe(self, t_s: float, dt_s: float, net_load_w: float, pv_w: float | None = None) -> None:
        """The load the site would draw without the battery (net of PV: what the meter and
        the battery say) over (t_s - dt_s, t_s], and the metered PV output over it."""
        self.load.observe(t_s, net_load_w, dt_s)
        if pv_w is not None:
            self.pv.observe(t_s, pv_w, dt_s)
            self.pv_metered = True

    def history_state(self) -> dict[str, Any] | None:
        """The load (and metered PV) history to keep across a restart."""
        load = self.load.state()
        return None if load is None else {"load": load, "pv": self.pv.state() if self.pv_metered else None}

    def restore_history(self, saved: object, now_local_s: float, max_gap_s: float) -> bool:
        """A previous run's history (see StepHistory.restore); True where the load's was taken."""
        if not isinstance(saved, dict) or not self.load.restore(saved.get("load"), now_local_s, max_gap_s):
            return False
        self.pv_metered = self.pv.restore(saved.get("pv"), now_local_s, max_gap_s)
        return True

    def _net_forecast(self, history: np.ndarray, start: float, n: int) -> np.ndarray:
        """Net load ahead. With PV metered for long enough, the gross load (net + PV) and PV are
        forecast apart (each with its own season: the load's week, the sun's day) and
        netted; else the net load's history alone."""
        s = self.s

        def ahead(h: np.ndarray) -> np.ndarray:
            naive = load_forecast(h[-self.naive_keep:], s.step_s, n, weeks=s.history_weeks,
                                  envelope_days=s.envelope_days, correction_tau_s=s.correction_tau_s)
            return naive if self.model is None else self._learned(h, start, naive)

        pv_hist = self.pv.complete_until(start) if self.pv_metered else np.zeros(0)
        m = min(pv_hist.size, history.size)
        if m * s.step_s < s.min_history_h * 3600.0:
            return ahead(history)
        return ahead(history[-m:] + pv_hist[-m:]) - self._pv_ahead(pv_hist[-m:], start, n)

    def _pv_ahead(self, pv_hist: np.ndarray, start: float, n: int) -> FloatArray:
        """The clear sky at the site scaled by what was measured, where the site says where it is
        (and the PV has given something in daylight); else the same time of day as before."""
        s = self.s
        if s.pv_location is not None:
            sky = pv_clear_sky_forecast(pv_hist, start, s.step_s, n, s.pv_location, sky_at=self.sky)
            if sky is not None:
                return sky
        return pv_forecast(pv_hist, s.step_s, n)

    def _learned(self, history: np.ndarray, start: float, naive: np.ndarray) -> np.ndarray:
        """The learned forecast over its first day (P50, or P90 with `cap_on_p90`), the naive
        one beyond it and until the model has had enough history to fit."""
        assert self.model is not None
        if not self.model.update(history, start):
            return naive
        m = min(naive.size, self.model.horizon_steps)
        q = self.model.forecast(history, start, m)
        if q is None:
            return naive
        out = naive.copy()
        out[:m] = q.p90_w if self.s.cap_on_p90 else q.p50_w
        if self.s.forecast_model == "learned_envelope":  # the profile's hedges kept: never below it
            out = np.maximum(out, naive)
        result: np.ndarray = out
        return result

    def program_baseline_w(self, now_local_s: float, start_local_s: float, end_local_s: float) -> float | None:
        """The program's baseline of an event's window from the load history until now, or
        until the window's start where that is earlier (None: no rule configured, or not
        enough similar days yet)."""
        rule = self.s.dr_baseline
        if rule is None:
            return None
        history = self.load.complete_until(min(start_local_s, now_local_s))
        end = self.load.end_s
        if end is None:
            return None
        days = self.dr_days - {local_datetime(start_local_s).date()}
        b = program_baseline(history, end, self.s.step_s, start_local_s, end_local_s, rule, days, self.s.dr_holidays)
        return None if b is None else b.baseline_w

    def request(self, now_local_s: float, battery: BatteryNow, peaks: PeaksSoFar,
                max_steps: int | None = None, dr_events: Sequence[DrEvent] = (),
                dr_offset_s: float = 0.0) -> PlanRequest:
        """The next plan's problem. `dr_events`: the demand-response events the site acts on,
        in wall-clock time `dr_offset_s` behind the local clock."""
        s = self.s
        start = math.floor(now_local_s / s.step_s + 1e-9) * s.step_s
        n = s.horizon_steps if max_steps is None else max(1, min(s.horizon_steps, max_steps))
        history = self.load.complete_until(start)
        if history.size * s.step_s < s.min_history_h * 3600.0:
            raise NotEnoughHistory(f"{history.size * s.step_s / 3600.0:.1f} h of load history, "
                                   f"{s.min_history_h:g} h needed before planning")
        net_w = self._net_forecast(history, start, n)
        net_w = np.where(net_w > 0, net_w * (1.0 + s.forecast_margin), net_w)
        if self.known_ahead is not None:
            net_w = self.known_ahead(start, net_w)
        self.dr_days.update(local_datetime(e.start_s + dr_offset_s).date() for e in dr_events)
        if len(self.dr_days) > 400:  # bounded: a baseline looks back weeks, not years
            self.dr_days = set(sorted(self.dr_days)[-366:])
        dr = dr_terms(dr_events, dr_offset_s, start, s.step_s, net_w,
                      lambda _, a, b: self.program_baseline_w(now_local_s, a, b),
                      s.dr_margin_fraction, s.dr_penalty_per_kwh)
        start_dt = local_datetime(start)
        month_key = (start_dt.year, start_dt.month)
        recent = history[-self.naive_keep:]
        mean_kw = float(recent.mean()) / 1000.0 if recent.size else float(net_w.mean()) / 1000.0
        ref_peak_kw = max(peaks.peak_kw(month_key), float(net_w.max()) / 1000.0)
        past = peaks.past_peaks_kw() if self.tariff.lookback is not None else None
        sig = self._signals.signals(self.tariff, start_dt, s.step_s, n,
                                    month_kwh=max(mean_kw, 0.0) * 730.0, reference_peak_kw=ref_peak_kw,
                                    per_day=s.demand_per_day, past_peaks_kw=past)
        has_tou = bool(sig.tou_keys)
        has_flat = bool(sig.flat_keys)
        problem = PlanProblem(
            step_s=s.step_s, net_load_w=net_w,
            import_price_per_kwh=sig.import_price_per_kwh, export_price_per_kwh=sig.export_price_per_kwh,
            capacity_wh=battery.capacity_wh, soc_initial=min(max(battery.soc, 0.0), 1.0),
            max_charge_w=battery.max_charge_w, max_discharge_w=battery.max_discharge_w,
            soc_min=s.soc_min, soc_max=s.soc_max, reserve_soc=max(s.reserve_soc, s.soc_min),
            charge_efficiency=s.charge_efficiency, discharge_efficiency=s.discharge_efficiency,
            wear_cost_per_kwh=s.wear_cost_per_kwh, wear_depth_cost_per_kwh=s.wear_depth_cost_per_kwh,
            demand_charge_per_kw=sig.tou_rates_per_kw.tolist() if has_tou else 0.0,
            peak_so_far_kw=[peaks.tou_peak_kw(k) for k in sig.tou_keys] if has_tou else 0.0,
            demand_period=sig.tou_group if has_tou else None,
            flat_group=sig.flat_group if has_flat else None,
            flat_demand_charge_per_kw=sig.flat_rates_per_kw.tolist() if has_flat else 0.0,
            # below the ratchet's floor a lower peak saves nothing: the floor counts as billed already
            flat_peak_so_far_kw=[max(peaks.peak_kw(k), floor) for k, floor
                                 in zip(sig.flat_keys, sig.flat_floor_kw, strict=True)] if has_flat else 0.0,
            allow_export=s.allow_export, soc_final_min=self._terminal_soc(battery, n),
            hold_value_per_kwh_h=s.hold_value_per_kwh_h, over_peak_cost_per_kwh=s.over_peak_cost_per_kwh,
            charge_peak_weight=s.charge_peak_weight,
            dr_target_w=dr.target_w, dr_over_cost_per_kwh=dr.over_cost_per_kwh,
        )
        return PlanRequest(problem, sig, start, dr.event_ids)

    def _terminal_soc(self, battery: BatteryNow, n: int) -> float | None:
        """At least the SoC now, and at least `terminal_soc` where the horizon allows the
        charge: energy left at the end of the horizon is worth something after it (the
        next peak), which a finite horizon does not see."""
        s = self.s
        if s.terminal_soc is None:
            return None
        now = min(max(battery.soc, 0.0), 1.0)
        reachable = now + battery.max_charge_w * s.charge_efficiency * n * s.step_s / 3600.0 / battery.capacity_wh
        return max(min(now, s.soc_max), min(s.terminal_soc, s.soc_max, reachable))


def plan_view(req: PlanRequest, plan: Plan, now_local_s: float, now_mono_s: float) -> PlanView:
    """The plan in the site's monotonic time, as the arbitrage policy reads it."""
    return PlanView(
        made_at_s=now_mono_s,
        start_s=now_mono_s - (now_local_s - req.start_local_s),
        step_s=req.problem.step_s,
        soc=tuple(plan.soc.tolist()),  # tolist: Python floats at C speed (a plan every period)
        battery_w=tuple(plan.battery_w.tolist()),
        grid_w=tuple(plan.grid_w.tolist()),
        import_cap_w=tuple(plan.import_cap_w(req.problem).tolist()),
        expected_savings=plan.expected_savings,
        dr_event_ids=req.dr_event_ids,
    )


def battery_from_snapshot(snap: SiteSnapshot) -> BatteryNow | None:
    """The available units as one battery; power at the PCS rating (the BMS's allowed power
    moves with SoC and temperature, the LP's SoC window stands in for that)."""
    units = [u for u in snap.units if u.available and u.bms is not None and u.pcs is not None]
    capacity = sum(u.bms.capacity_wh for u in units if u.bms is not None)
    if capacity <= 0:
        return None
    stored = sum(u.bms.soc * u.bms.capacity_wh for u in units if u.bms is not None)
    rated = sum(u.pcs.rated_power_w for u in units if u.pcs is not None)
    return BatteryNow(stored / capacity, capacity, rated, rated)
