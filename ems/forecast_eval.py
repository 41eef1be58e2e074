"""Walk-forward evaluation of the load forecasts (`ems forecast-eval`).

Over a load series, a forecast is issued at every `issue_every_s` (the top of each hour by
default) for the next `horizon_steps`, from the history before it only; the learned model
(ems/load_model.py) is refitted every `refit_days` on the history before the refit, as the
planner does. Each is compared with

* the naive forecast: ems/forecast.py's same hour of the week over the last 4 weeks,
  without the planner's hedges (`envelope_days=0`, no near-term correction);
* the planner's configured forecast: the same with the envelope over yesterday and the
  last hour's correction fading over 12 h (config/backtest-site.yaml).

Scores: MAE over every (issue, lead) whose target is in the window (weekday afternoons
12-20 h by default, where the month's peaks are), skill = 1 - MAE / MAE naive, and the
share of targets at or below the P90 (coverage; 0.9 is right).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ems.forecast import DAY_S, load_forecast
from ems.load_model import FloatArray, IntArray, LoadModel, TemperatureSeries

_EPOCH = datetime(1970, 1, 1)
WARMUP_DAYS = 28


@dataclass(frozen=True)
class ForecastScores:
    window: str
    forecasts: int  # issue times scored
    targets: int  # (issue, lead) pairs in the window
    mae_naive_kw: float
    mae_configured_kw: float
    mae_model_kw: float
    skill_vs_naive: float  # 1 - MAE model / MAE naive
    skill_vs_configured: float
    p90_coverage: float  # share of targets <= P90
    skill_by_lead_h: dict[str, float]  # skill vs naive for leads [0,1), [1,3), [3,6), [6,12), [12,24) h
    fit_s: float  # total model fitting time
    predict_ms_per_forecast: float
    fits: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def local_seconds(dt: datetime) -> float:
    return (dt - _EPOCH).total_seconds()


def afternoon_mask(target_local_s: FloatArray) -> np.ndarray:
    """Weekday (Mon-Fri) targets with local hour in [12, 20)."""
    hour = (target_local_s % DAY_S) / 3600.0
    dow = ((target_local_s // DAY_S) + 3) % 7
    return (dow < 5) & (hour >= 12) & (hour < 20)


def walk_forward(series_w: FloatArray, start_local_s: float, step_s: float, first_issue: int, *,
                 horizon_steps: int = 96, issue_every_s: float = 3600.0, refit_days: float = 7.0,
                 temperature: TemperatureSeries | None = None, train_weeks: int = 8, max_iter: int = 100,
                 configured_envelope_days: int = 1, configured_tau_s: float = 43200.0) -> ForecastScores:
    """Score the three forecasts on `series_w` (naive local time from `start_local_s`),
    issuing from index `first_issue` (the steps before it are history only)."""
    per_day = round(DAY_S / step_s)
    horizon_steps = min(horizon_steps, per_day)  # the model's "yesterday" needs the lead under a day
    every = max(1, round(issue_every_s / step_s))
    first = first_issue + (-(first_issue + round(start_local_s / step_s)) % every)
    issues: IntArray = np.arange(first, series_w.size - horizon_steps + 1, every, dtype=np.int64)
    model = LoadModel(step_s, horizon_steps=horizon_steps, train_weeks=train_weeks, refit_s=refit_days * DAY_S,
                      temperature=temperature, max_iter=max_iter)
    p50 = np.zeros((issues.size, horizon_steps))
    p90 = np.zeros((issues.size, horizon_steps))
    have = np.zeros(issues.size, dtype=bool)
    naive = np.zeros((issues.size, horizon_steps))
    configured = np.zeros((issues.size, horizon_steps))
    fit_s = predict_s = 0.0
    block = max(1, round(refit_days * per_day / every))
    for b in range(0, issues.size, block):
        chunk = issues[b: b + block]
        t0 = time.perf_counter()
        model.fit(series_w[: chunk[0]], start_local_s + chunk[0] * step_s)
        t1 = time.perf_counter()
        fit_s += t1 - t0
        if model.models is not None:
            lo, hi = model.forecast_many(series_w[: chunk[-1]], start_local_s, chunk, horizon_steps)
            p50[b: b + chunk.size], p90[b: b + chunk.size] = lo, hi
            have[b: b + chunk.size] = True
        predict_s += time.perf_counter() - t1
        for i, k in enumerate(chunk):
            hist = series_w[max(0, k - 4 * 7 * per_day - per_day): k]
            naive[b + i] = load_forecast(hist, step_s, horizon_steps, envelope_days=0, correction_tau_s=0.0)
            configured[b + i] = load_forecast(hist, step_s, horizon_steps, envelope_days=configured_envelope_days,
                                              correction_tau_s=configured_tau_s)
    issues, naive, configured, p50, p90 = issues[have], naive[have], configured[have], p50[have], p90[have]
    lead = np.arange(horizon_steps)
    target = issues[:, None] + lead[None, :]
    actual = series_w[target]
    mask = afternoon_mask(start_local_s + target.astype(np.float64) * step_s)

    def mae(f: FloatArray, m: np.ndarray = mask) -> float:
        return float(np.abs(f - actual)[m].mean()) / 1000.0 if m.any() else math.nan

    m_naive, m_model = mae(naive), mae(p50)
    by_lead: dict[str, float] = {}
    lead_h = lead * step_s / 3600.0
    for lo_h, hi_h in ((0, 1), (1, 3), (3, 6), (6, 12), (12, 24)):
        sel = mask & ((lead_h >= lo_h) & (lead_h < hi_h))[None, :]
        if sel.any():
            by_lead[f"{lo_h}-{hi_h}"] = round(1.0 - mae(p50, sel) / mae(naive, sel), 4)
    n_targets = int(mask.sum())
    return ForecastScores(
        window="weekdays 12-20 h", forecasts=int(issues.size), targets=n_targets,
        mae_naive_kw=m_naive, mae_configured_kw=mae(configured), mae_model_kw=m_model,
        skill_vs_naive=1.0 - m_model / m_naive, skill_vs_configured=1.0 - m_model / mae(configured),
        p90_coverage=float((actual <= p90)[mask].mean()) if n_targets else math.nan,
        skill_by_lead_h=by_lead, fit_s=fit_s,
        predict_ms_per_forecast=1e3 * predict_s / max(1, issues.size), fits=model.fits,
    )


def evaluate_year(load_csv: Path, *, load_scale: float = 1.0, step_s: int = 900, temperature_csv: Path | None = None,
                  series_start: datetime | None = None, days: float | None = None,
                  horizon_h: float = 24.0) -> ForecastScores:
    """The walk-forward scores on a load file as `ems backtest` reads it: a typical year lends
    its last 4 weeks as history before its start (wrapped), as the backtest's planner gets."""
    from ems.backtest.errors import BacktestInputError
    from ems.backtest.series import read_power_csv, resample

    load = resample(read_power_csv(load_csv, scale=load_scale, start=series_start), step_s)
    warm = WARMUP_DAYS * round(DAY_S / step_s)
    values = load.values_w
    year = values.size * step_s >= 364 * DAY_S  # a typical year: its last weeks stand before its start
    scored = values.size if year else values.size - warm
    if days is not None and round(days * DAY_S / step_s) > scored:  # it scored what there was, said nothing
        raise BacktestInputError(f"--days {days:g}: {load_csv} has {max(scored, 0) * step_s / DAY_S:.4g} days to "
                                 f"score" + ("" if year else f" after its first {WARMUP_DAYS} (history)"))
    if year:
        run = values if days is None else values[: round(days * DAY_S / step_s)]
        series = np.concatenate([values[-warm:], run])
        start_s = local_seconds(load.start) - warm * step_s
    else:  # the first 4 weeks are history only
        series = values if days is None else values[: warm + round(days * DAY_S / step_s)]
        start_s = local_seconds(load.start)
    if series.size <= warm + DAY_S / step_s:
        raise BacktestInputError(f"{load_csv}: {WARMUP_DAYS} days of history and a day to score are needed")
    temp = None if temperature_csv is None else read_temperature_csv(temperature_csv, series_start)
    return walk_forward(series, start_s, float(step_s), warm, horizon_steps=round(horizon_h * 3600 / step_s),
                        temperature=temp)


def read_temperature_csv(path: Path, series_start: datetime | None = None) -> TemperatureSeries:
    """`timestamp,°C` rows (naive local time, constant step) or one value a line for a whole
    year from `series_start` (the load's layouts, ems/backtest/series.py)."""
    from ems.backtest.series import read_power_csv

    # the power reader's layouts and checks; values in W scale by 1, so they are °C as read
    s = read_power_csv(path, unit="w", start=series_start)
    return TemperatureSeries(local_seconds(s.start), float(s.step_s), s.values_w)


def afternoon_mae_skill(load_csv: Path, load_scale: float = 1000.0, *, days: float | None = None,
                        temperature_csv: Path | None = None) -> float:
    """The benchmark's figure (issue 15): 1 - MAE(model P50) / MAE(naive same hour of week)
    on weekday afternoons 12-20 h, walk-forward over the load file at 15 min."""
    return evaluate_year(load_csv, load_scale=load_scale, days=days, temperature_csv=temperature_csv).skill_vs_naive
