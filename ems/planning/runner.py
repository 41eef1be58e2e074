"""From what the site did to the next plan: history, peaks so far, problem, plan view.

`PlanBuilder` is synchronous and clock-free (time comes in as naive local seconds, i.e.
tariff wall-clock time as seconds since 1970-01-01T00:00): the backtester calls it in
fast time, `LivePlanner` wraps it for the control loop and solves off the event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import structlog

from ems.config import PoliciesConfig, SiteConfig
from ems.demand import DemandMeter
from ems.forecast import WEEK_S, load_forecast, pv_forecast
from ems.model.errors import ConfigError
from ems.model.snapshot import SiteSnapshot
from ems.planning.lp import Plan, PlanError, PlanProblem, plan_dispatch
from ems.tariff import TariffError, load_price_csv, load_urdb
from ems.tariff.calendar import MonthKey, TouKey, local_datetime, local_seconds
from ems.tariff.model import Tariff
from ems.tariff_signals import TariffSignals, tariff_signals
from policies.arbitrage import PlanView

log = structlog.get_logger("ems.planner")


class NotEnoughHistory(PlanError):
    """Less than `min_history_h` of load history: a plan would rest on a guess."""


class StepHistory:
    """Averages of a power over clock-aligned steps, the newest last (a bounded window).

    A step with no observation (the loop was down) repeats the previous step's value."""

    def __init__(self, step_s: float, keep_steps: int) -> None:
        self.step_s = step_s
        self.values: deque[float] = deque(maxlen=keep_steps)
        self._bin: int | None = None
        self._sum_ws = 0.0
        self._time_s = 0.0

    def observe(self, t_s: float, power_w: float, dt_s: float) -> None:
        """`power_w` averaged over (t_s - dt_s, t_s]; attributed to the step holding t_s - dt_s."""
        b = math.floor((t_s - dt_s) / self.step_s + 1e-9)
        if self._bin is None:
            self._bin = b
        elif b > self._bin:
            self._close(b)
        self._sum_ws += power_w * dt_s
        self._time_s += dt_s

    def _close(self, new_bin: int) -> None:
        if self._time_s > 0:
            self.values.append(self._sum_ws / self._time_s)
        gap = new_bin - (new_bin if self._bin is None else self._bin) - 1
        if self.values:
            for _ in range(min(gap, self.values.maxlen or gap)):
                self.values.append(self.values[-1])
        self._bin, self._sum_ws, self._time_s = new_bin, 0.0, 0.0

    def complete_until(self, t_s: float) -> np.ndarray:
        """The completed steps, as an array, once every step before `t_s` is closed."""
        b = math.floor(t_s / self.step_s + 1e-9)
        if self._bin is not None and b > self._bin:
            self._close(b)
        return np.fromiter(self.values, dtype=np.float64, count=len(self.values))


class PeakTracker:
    """The planner's view of the demand meter (ems/demand.py), fed naive tariff time: this
    billing month's peaks so far in kW, per TOU demand period and flat."""

    def __init__(self, tariff: Tariff) -> None:
        self.meter = DemandMeter(tariff)

    def observe(self, t_s: float, grid_w: float, dt_s: float) -> None:
        self.meter.add(grid_w, dt_s, t_s)

    @property
    def tou(self) -> dict[TouKey, float]:
        m = self.meter
        if m.month_key is None:
            return {}
        return {(*m.month_key, p): w / 1000.0 for p, w in enumerate(m.tou_peaks_w)}

    @property
    def flat(self) -> dict[MonthKey, float]:
        m = self.meter
        return {} if m.month_key is None else {m.month_key: m.month_peak_w / 1000.0}

    def month_peak_kw(self, key: MonthKey) -> float:
        return self.meter.peak_kw(key)


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


class PlanBuilder:
    def __init__(self, tariff: Tariff, settings: PlannerSettings) -> None:
        self.tariff = tariff
        self.s = settings
        keep = settings.history_weeks * round(WEEK_S / settings.step_s) + 1
        self.load = StepHistory(settings.step_s, keep)
        self.pv: StepHistory | None = None
        self.peaks = PeakTracker(tariff)

    def observe(self, t_s: float, dt_s: float, *, net_load_w: float | None, grid_w: float | None,
                pv_w: float | None = None) -> None:
        """Feed one period: the load the site would draw without the battery (net of PV,
        or gross with `pv_w` given separately) and the metered grid power."""
        if net_load_w is not None:
            self.load.observe(t_s, net_load_w, dt_s)
        if pv_w is not None:
            if self.pv is None:
                self.pv = StepHistory(self.s.step_s, self.load.values.maxlen or 1)
            self.pv.observe(t_s, pv_w, dt_s)
        if grid_w is not None:
            self.peaks.observe(t_s, grid_w, dt_s)

    def request(self, now_local_s: float, battery: BatteryNow, max_steps: int | None = None) -> PlanRequest:
        s = self.s
        start = math.floor(now_local_s / s.step_s + 1e-9) * s.step_s
        n = s.horizon_steps if max_steps is None else max(1, min(s.horizon_steps, max_steps))
        history = self.load.complete_until(start)
        if history.size * s.step_s < s.min_history_h * 3600.0:
            raise NotEnoughHistory(f"{history.size * s.step_s / 3600.0:.1f} h of load history, "
                                   f"{s.min_history_h:g} h needed before planning")
        net_w = load_forecast(history, s.step_s, n, weeks=s.history_weeks, envelope_days=s.envelope_days,
                              correction_tau_s=s.correction_tau_s)
        if self.pv is not None:
            net_w = net_w - pv_forecast(self.pv.complete_until(start), s.step_s, n)
        net_w = np.where(net_w > 0, net_w * (1.0 + s.forecast_margin), net_w)
        start_dt = local_datetime(start)
        month_key = (start_dt.year, start_dt.month)
        mean_kw = float(history.mean()) / 1000.0 if history.size else float(net_w.mean()) / 1000.0
        ref_peak_kw = max(self.peaks.month_peak_kw(month_key), float(net_w.max()) / 1000.0)
        sig = tariff_signals(self.tariff, start_dt, s.step_s, n,
                             month_kwh=max(mean_kw, 0.0) * 730.0, reference_peak_kw=ref_peak_kw,
                             per_day=s.demand_per_day)
        has_tou = bool(sig.tou_keys)
        has_flat = bool(sig.flat_keys)
        problem = PlanProblem(
            step_s=s.step_s, net_load_w=net_w,
            import_price_per_kwh=sig.import_price_per_kwh, export_price_per_kwh=sig.export_price_per_kwh,
            capacity_wh=battery.capacity_wh, soc_initial=min(max(battery.soc, 0.0), 1.0),
            max_charge_w=battery.max_charge_w, max_discharge_w=battery.max_discharge_w,
            soc_min=s.soc_min, soc_max=s.soc_max, reserve_soc=max(s.reserve_soc, s.soc_min),
            charge_efficiency=s.charge_efficiency, discharge_efficiency=s.discharge_efficiency,
            wear_cost_per_kwh=s.wear_cost_per_kwh,
            demand_charge_per_kw=sig.tou_rates_per_kw.tolist() if has_tou else 0.0,
            peak_so_far_kw=[self.peaks.tou.get(k, 0.0) for k in sig.tou_keys] if has_tou else 0.0,
            demand_period=sig.tou_group if has_tou else None,
            flat_group=sig.flat_group if has_flat else None,
            flat_demand_charge_per_kw=sig.flat_rates_per_kw.tolist() if has_flat else 0.0,
            flat_peak_so_far_kw=[self.peaks.flat.get(k, 0.0) for k in sig.flat_keys] if has_flat else 0.0,
            allow_export=s.allow_export, soc_final_min=self._terminal_soc(battery, n),
            hold_value_per_kwh_h=s.hold_value_per_kwh_h, over_peak_cost_per_kwh=s.over_peak_cost_per_kwh,
            charge_peak_weight=s.charge_peak_weight,
        )
        return PlanRequest(problem, sig, start)

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


def replan_due(view: PlanView | None, now_s: float, soc: float, last_s: float | None,
               interval_s: float, soc_deviation: float | None, step_s: float) -> bool:
    """Time for a new plan: none yet, the interval is over, or (at most once a planning
    step) the site's SoC has drifted from the plan by more than `soc_deviation`, which
    says the forecast is wrong now (waiting for the next hour can drain the battery)."""
    if last_s is None or now_s - last_s >= interval_s:
        return True
    if view is None or soc_deviation is None or now_s - last_s < step_s:
        return False
    k = view.step_at(now_s)
    if k is None:
        return True
    frac = (now_s - view.start_s - k * view.step_s) / view.step_s
    planned = view.soc[k] + frac * (view.soc[k + 1] - view.soc[k])
    return abs(soc - planned) > soc_deviation


def plan_view(req: PlanRequest, plan: Plan, now_local_s: float, now_mono_s: float) -> PlanView:
    """The plan in the site's monotonic time, as the arbitrage policy reads it."""
    return PlanView(
        made_at_s=now_mono_s,
        start_s=now_mono_s - (now_local_s - req.start_local_s),
        step_s=req.problem.step_s,
        soc=tuple(float(x) for x in plan.soc),
        battery_w=tuple(float(x) for x in plan.battery_w),
        grid_w=tuple(float(x) for x in plan.grid_w),
        import_cap_w=tuple(float(x) for x in plan.import_cap_w(req.problem)),
        expected_savings=plan.expected_savings,
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


def planner_settings(policies: PoliciesConfig) -> PlannerSettings | None:
    a = policies.arbitrage
    if a is None or not a.enabled:
        return None
    b = policies.battery
    return PlannerSettings(
        step_s=float(a.step_s), horizon_steps=max(1, round(a.horizon_h * 3600 / a.step_s)),
        soc_min=b.soc_min, soc_max=b.soc_max, reserve_soc=a.reserve_soc,
        charge_efficiency=a.charge_efficiency, discharge_efficiency=a.discharge_efficiency,
        wear_cost_per_kwh=a.wear_cost_per_kwh, allow_export=a.allow_export,
        envelope_days=a.forecast_envelope_days, hold_value_per_kwh_h=a.hold_value_per_kwh_h,
        over_peak_cost_per_kwh=a.over_peak_cost_per_kwh, correction_tau_s=a.forecast_correction_tau_s,
        charge_peak_weight=a.charge_peak_weight,
        demand_per_day=a.demand_per_day, replan_soc_deviation=a.replan_soc_deviation,
    )


def live_planner(cfg: SiteConfig) -> LivePlanner | None:
    """The planner for `ems run`, or None when arbitrage is not configured."""
    a = cfg.policies.arbitrage
    settings = planner_settings(cfg.policies)
    if a is None or settings is None:
        return None
    builder = PlanBuilder(load_tariff(a.tariff, a.prices_csv), settings)
    return LivePlanner(builder, a.planning_interval_s, ZoneInfo(a.timezone))


class LivePlanner:
    """Re-plans every `interval_s` of site time, solving in a worker thread.

    The control period never waits for a solve: it starts one when due and picks the
    result up in a later period. A failed solve is logged once per kind of failure and
    leaves the previous plan in place (it goes stale, and arbitrage stands down)."""

    def __init__(self, builder: PlanBuilder, interval_s: float, zone: ZoneInfo) -> None:
        self.builder = builder
        self.interval_s = interval_s
        self.zone = zone
        self.last_started_s: float | None = None
        self.task: asyncio.Task[Plan] | None = None
        self.pending: tuple[PlanRequest, float, float] | None = None
        self.view: PlanView | None = None
        self.request: PlanRequest | None = None
        self.plan: Plan | None = None
        self.solves = 0
        self.failures = 0
        self.last_error: str | None = None

    def step(self, snap: SiteSnapshot) -> PlanView | None:
        """One control period: record the site's load and import, pick up a finished solve
        (returned, for the arbitrage policy), start the next one when due."""
        local_s = local_seconds(snap.wall_s, self.zone)
        grid_w = None if snap.meter is None else snap.meter.grid_power_w
        self.builder.observe(local_s, snap.period_s, net_load_w=snap.site_load_w, grid_w=grid_w)
        view = self.collect()
        battery = battery_from_snapshot(snap)
        if battery is not None and self.due(snap.now_s, battery.soc):
            self.start(local_s, snap.now_s, battery)
        return view

    def due(self, now_mono_s: float, soc: float | None = None) -> bool:
        """No solve running and `replan_due` says so (the backtest uses the same rule);
        without a SoC only the interval counts."""
        if self.task is not None:
            return False
        s = self.builder.s
        deviation = None if soc is None else s.replan_soc_deviation
        return replan_due(self.view, now_mono_s, soc or 0.0, self.last_started_s, self.interval_s,
                          deviation, s.step_s)

    def start(self, now_local_s: float, now_mono_s: float, battery: BatteryNow) -> None:
        try:
            req = self.builder.request(now_local_s, battery)
        except PlanError as exc:
            self._failed(exc)
            self.last_started_s = now_mono_s
            return
        self.last_started_s = now_mono_s
        self.pending = (req, now_local_s, now_mono_s)
        self.task = asyncio.create_task(asyncio.to_thread(plan_dispatch, req.problem), name="planner")

    def collect(self) -> PlanView | None:
        """The new plan's view if a solve finished since the last call, else None."""
        if self.task is None or not self.task.done() or self.pending is None:
            return None
        task, (req, local_s, mono_s) = self.task, self.pending
        self.task = self.pending = None
        try:
            plan = task.result()
        except Exception as exc:  # any failure of a solve leaves arbitrage to go stale, never the loop
            self._failed(exc)
            return None
        self.solves += 1
        if self.last_error is not None:
            log.info("planner recovered")
            self.last_error = None
        self.request, self.plan = req, plan
        self.view = plan_view(req, plan, local_s, mono_s)
        return self.view

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.last_error != type(exc).__name__:
            log.warning("planning failed", error=str(exc), kind=type(exc).__name__)
        self.last_error = type(exc).__name__

    def summary(self, now_mono_s: float, now_local_s: float, hours: int = 6) -> dict[str, object]:
        """The current plan for operators: hourly schedule ahead and expected savings."""
        out: dict[str, object] = {"solves": self.solves, "failures": self.failures, "error": self.last_error}
        v, plan = self.view, self.plan
        if v is None or plan is None:
            return out | {"plan": None}
        k0 = v.step_at(now_mono_s) or 0
        per_h = max(1, round(3600.0 / v.step_s))
        rows = []
        for h in range(hours):
            a, b = k0 + h * per_h, k0 + (h + 1) * per_h
            if a >= len(v.battery_w):
                break
            power = np.mean(v.battery_w[a:b])
            start = local_datetime(now_local_s + (v.start_s + a * v.step_s - now_mono_s))
            cap_w = min(v.import_cap_w[a:b])
            rows.append({"start": start.isoformat(timespec="minutes"), "battery_w": round(float(power), 1),
                         "soc_end": round(v.soc[min(b, len(v.soc) - 1)], 4),
                         "import_cap_w": round(cap_w, 1) if math.isfinite(cap_w) else None})
        return out | {"plan": {
            "age_s": round(now_mono_s - v.made_at_s, 1),
            "expected_savings": round(v.expected_savings, 2),
            "expected_cost": round(plan.expected_cost, 2),
            "solve_time_ms": round(plan.solve_time_s * 1e3, 1),
            "schedule": rows,
        }}
