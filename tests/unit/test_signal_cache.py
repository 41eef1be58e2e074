"""The planner's faster request path gives the requests the per-step computation gives.

`SignalCache` (the tariff signals' calendar part computed once a span, sliced per plan)
against `tariff_signals` computed for each window alone, over rolling windows, jumps,
month and year ends, dynamic prices, a demand ratchet and a tariff swapped in between;
the load forecast's one-gather seasonal means against the season-by-season sums; the
load history's numpy buffer against a bounded deque; and a rolling planner's requests
against requests built from scratch at each step. Equal means bit for bit.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ems.demand import DemandMeter
from ems.forecast import DAY_S, WEEK_S, load_forecast
from ems.planning.builder import BatteryNow, PlanBuilder, PlannerSettings
from ems.planning.history import StepHistory
from ems.tariff import PriceSeries, load_urdb
from ems.tariff.model import DemandLookback, Tariff
from ems.tariff_signals import SignalCache, TariffSignals, tariff_signals

URDB = Path(__file__).resolve().parents[3] / "shared" / "data" / "tariffs" / "sam_urdbv7.json"
STEP_S = 900


@pytest.fixture(scope="module")
def tariff() -> Tariff:
    if not URDB.exists():
        pytest.skip("shared data not present")
    return load_urdb(URDB)


def _same(a: TariffSignals, b: TariffSignals) -> None:
    for f in fields(TariffSignals):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


def _windows(rng: np.random.Generator, t0: datetime, count: int) -> list[tuple[datetime, int]]:
    """Rolling windows (one step on), with jumps ahead and back and other lengths among them."""
    out = []
    k = 0
    for _ in range(count):
        r = rng.random()
        if r < 0.1:
            k += int(rng.integers(1, 2000))  # a jump (the loop was away), maybe past the span
        elif r < 0.15:
            k = max(0, k - int(rng.integers(1, 500)))  # back (a clock step)
        else:
            k += 1
        n = 96 if rng.random() < 0.8 else int(rng.integers(1, 300))
        out.append((t0 + timedelta(seconds=k * STEP_S), n))
    return out


@pytest.mark.parametrize("per_day", [True, False])
def test_the_cache_gives_the_signals_of_each_window_alone(tariff: Tariff, per_day: bool) -> None:
    rng = np.random.default_rng(15)
    cache = SignalCache(span_steps=400)  # short spans: many renewals at odd places
    prices = PriceSeries(start=datetime(2018, 12, 20), step_s=3600,
                         buy_per_kwh=tuple(rng.uniform(0.05, 0.4, 24 * 20).round(3)), mode="add")
    dynamic = tariff.model_copy(update={"dynamic_prices": prices})
    ratchet = tariff.model_copy(update={"lookback": DemandLookback(percent=0.8, range_months=11)})
    past = {(2018, 11): 3900.0, (2018, 12): 4100.0}
    for i, (start, n) in enumerate(_windows(rng, datetime(2018, 12, 27, 10), 600)):
        t = (tariff, dynamic, ratchet)[(i // 150) % 3]  # a new tariff object now and then
        kw = {"month_kwh": float(rng.choice([50.0, 2e6])), "reference_peak_kw": float(rng.uniform(10, 5000)),
              "per_day": per_day, "past_peaks_kw": past}
        _same(cache.signals(t, start, STEP_S, n, **kw), tariff_signals(t, start, STEP_S, n, **kw))


def test_a_new_tariff_object_every_plan_gets_its_own_signals(tariff: Tariff) -> None:
    """A live price feed hands the planner a new tariff (new prices) for every plan."""
    rng = np.random.default_rng(21)
    cache = SignalCache()
    for start, n in _windows(rng, datetime(2018, 7, 30, 20), 60):
        prices = PriceSeries(start=start, step_s=STEP_S, buy_per_kwh=tuple(rng.uniform(0.05, 0.4, n).round(4)),
                             mode="replace")
        t = tariff.model_copy(update={"dynamic_prices": prices})
        kw = {"month_kwh": 2e6, "reference_peak_kw": 4000.0, "per_day": True}
        _same(cache.signals(t, start, STEP_S, n, **kw), tariff_signals(t, start, STEP_S, n, **kw))


def _seasonal_mean_by_season(history: np.ndarray, offsets: npt.NDArray[np.int64], season: int,
                             seasons: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-season sums the one-gather form replaced."""
    h = history.size
    total = np.zeros(offsets.size)
    count = np.zeros(offsets.size)
    for k in range(1, seasons + 1):
        idx = h + offsets - k * season
        ok = (idx >= 0) & (idx < h)
        total[ok] += history[idx[ok]]
        count[ok] += 1
    found = count > 0
    return np.divide(total, count, out=np.zeros(offsets.size), where=found), found


def _forecast_by_season(history: np.ndarray, n: int, weeks: int, days: int, envelope_days: int,
                        tau_s: float) -> np.ndarray:
    day, week = DAY_S // STEP_S, WEEK_S // STEP_S

    def profile(hist: np.ndarray, offsets: npt.NDArray[np.int64]) -> np.ndarray:
        w, fw = _seasonal_mean_by_season(hist, offsets, week, weeks)
        d, fd = _seasonal_mean_by_season(hist, offsets, day, days)
        p = np.where(fw, w, np.where(fd, d, hist[-1] if hist.size else 0.0))
        if envelope_days > 0:
            r, fr = _seasonal_mean_by_season(hist, offsets % day, day, envelope_days)
            p = np.where(fr, np.maximum(p, r), p)
        return p

    ahead = profile(history, np.arange(n, dtype=np.int64))
    window = min(history.size, 4)
    if history.size == 0 or tau_s <= 0:
        return ahead
    recent = np.arange(-window, 0, dtype=np.int64)
    then = profile(history[:-window], recent + window) if history.size > window else history[-window:]
    offset_w = float(history[-window:].mean() - then.mean())
    return ahead + offset_w * np.exp(-(np.arange(n) + 0.5) * STEP_S / tau_s)


def test_the_forecast_gathers_what_the_season_by_season_sums_gave() -> None:
    rng = np.random.default_rng(3)
    for size in [0, 1, 3, 5, 50, 96, 97, 500, 672, 700, 2689, 3000]:
        history = rng.uniform(1e6, 4e6, size)
        for envelope_days, tau_s in [(0, 0.0), (1, 4 * 3600.0), (2, 3600.0)]:
            n = int(rng.integers(1, 200))
            got = load_forecast(history, STEP_S, n, weeks=4, days=7, envelope_days=envelope_days,
                                correction_tau_s=tau_s)
            want = _forecast_by_season(history, n, 4, 7, envelope_days, tau_s)
            assert np.array_equal(got, want), (size, envelope_days)


class _DequeHistory:
    """The history as it was kept before: a bounded deque, read with fromiter."""

    def __init__(self, step_s: float, keep_steps: int) -> None:
        self.step_s = step_s
        self.values: deque[float] = deque(maxlen=keep_steps)
        self._bin: int | None = None
        self._sum_ws = 0.0
        self._time_s = 0.0

    def observe(self, t_s: float, power_w: float, dt_s: float) -> None:
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
        b = math.floor(t_s / self.step_s + 1e-9)
        if self._bin is not None and b > self._bin:
            self._close(b)
        return np.fromiter(self.values, dtype=np.float64, count=len(self.values))


def test_the_history_buffer_keeps_what_a_bounded_deque_kept() -> None:
    rng = np.random.default_rng(5)
    for keep in (1, 37, 200):
        h, ref = StepHistory(STEP_S, keep), _DequeHistory(STEP_S, keep)
        t = 0.0
        for _ in range(3000):
            # sub-step observations, gaps (some longer than the window), reads now and then
            t += 60.0 * int(rng.integers(1, 16)) if rng.random() < 0.98 else STEP_S * int(rng.integers(2, 300))
            w = float(rng.uniform(0, 5e6))
            h.observe(t, w, 60.0)
            ref.observe(t, w, 60.0)
            if rng.random() < 0.3:
                assert np.array_equal(h.complete_until(t), ref.complete_until(t)), (keep, t)


def test_a_rolling_planner_builds_the_requests_it_would_build_from_scratch(tariff: Tariff) -> None:
    """One builder asked every step (its signals cached) against a new builder per step, both
    fed the same load: the same problem, field by field."""
    settings = PlannerSettings(step_s=STEP_S, horizon_steps=96, soc_min=0.05, soc_max=0.95, reserve_soc=0.2,
                               charge_efficiency=0.96, discharge_efficiency=0.96, wear_cost_per_kwh=0.01,
                               terminal_soc=0.5, envelope_days=1)
    rng = np.random.default_rng(9)
    t0 = (datetime(2018, 7, 20) - datetime(1970, 1, 1)).total_seconds()
    load = 3e6 + 1e6 * np.sin(np.arange(96 * 16) * 2 * np.pi / 96) + rng.normal(0, 1e5, 96 * 16)
    rolling = PlanBuilder(tariff, settings)
    meter = DemandMeter(tariff)
    battery = BatteryNow(0.5, 4e6, 2e6, 2e6)
    checked = 0
    for k, w in enumerate(load):
        t = t0 + (k + 1) * STEP_S
        rolling.observe(t, STEP_S, float(w))
        meter.add(float(w), STEP_S, t)
        if k < 96 * 14 or k % 3:  # two weeks of history, then every third step to the month's end
            continue
        fresh = PlanBuilder(tariff, settings)
        for j in range(k + 1):
            fresh.observe(t0 + (j + 1) * STEP_S, STEP_S, float(load[j]))
        now = t + 37.0
        a = rolling.request(now, battery, meter).problem
        b = fresh.request(now, battery, meter).problem
        for f in fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, np.ndarray):
                assert np.array_equal(x, y), f.name
            else:
                assert x == y, f.name
        checked += 1
    assert checked > 30
