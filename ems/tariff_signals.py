"""A `Tariff` (and optional dynamic prices) as the planner's per-step signals.

The LP is linear, a bill is not quite: monthly kWh tiers and demand tiers make the
price of one more kWh or kW depend on the month's totals. For a horizon we use the
marginal rate: the energy tier the month's expected consumption falls in, and the
demand tier the reference peak falls in (for a multi-MW site: the top tiers). Net
metering nets export against import of the same period, so export is worth the import
rate there; net billing pays the tier's sell rate.

Demand charges become LP demand groups: one per (billing month, TOU demand period) and
one per billing month for the flat charge, keyed so that the caller can give each its
peak so far. With `per_day=True` each day is its own group (still keyed by its month
and period, so several groups share a key and each starts from the month's peak so
far): a rolling plan then shaves every day as if that day set the bill, instead of
sizing today's cap on a forecast of a later day that may well be wrong. Times are naive
local wall-clock time (tariff time, see docs/tariffs.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from ems.tariff.bill import ratchet_floors_kw
from ems.tariff.calendar import Calendar, MonthKey, TouKey, calendar, demand_period, energy_period, tariff_seconds
from ems.tariff.model import DemandPeriod, EnergyPeriod, PriceSeries, Tariff

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TariffSignals:
    import_price_per_kwh: FloatArray
    export_price_per_kwh: FloatArray
    tou_group: IntArray  # per step: index into tou_keys/tou_rates_per_kw, -1 none
    tou_keys: tuple[TouKey, ...]  # per group (keys repeat across days with per_day)
    tou_rates_per_kw: FloatArray
    flat_group: IntArray  # per step: index into flat_keys/flat_rates_per_kw, -1 none
    flat_keys: tuple[MonthKey, ...]
    flat_rates_per_kw: FloatArray
    flat_floor_kw: FloatArray  # per flat group: the demand ratchet's floor from past months (0: none)


def _energy_tier_rates(period: EnergyPeriod, month_kwh: float) -> tuple[float, float]:
    """(buy, sell) of the tier that the month's consumption falls in."""
    for tier in period.tiers:
        if tier.max_kwh is None or month_kwh < tier.max_kwh:
            return tier.rate_per_kwh, tier.sell_per_kwh
    last = period.tiers[-1]
    return last.rate_per_kwh, last.sell_per_kwh


def marginal_demand_rate(period: DemandPeriod, peak_kw: float) -> float:
    """Charge per kW of the demand tier that `peak_kw` falls in."""
    for tier in period.tiers:
        if tier.max_kw is None or peak_kw < tier.max_kw:
            return tier.charge_per_kw
    return period.tiers[-1].charge_per_kw


def _aligned(prices: PriceSeries, values: tuple[float, ...], cal: Calendar) -> FloatArray:
    """Price per step; before the series its first price holds, after it its last."""
    p0 = tariff_seconds(prices.start)
    idx = np.clip((cal.t_s - p0) // prices.step_s, 0, len(values) - 1)
    return np.asarray(values, dtype=np.float64)[idx]


@dataclass(frozen=True)
class _Timeline:
    """What a window's signals take from the calendar alone (not from the month's kWh or the
    reference peak): per step the energy and demand periods, the dynamic prices, and the
    keys that number the demand groups. Computed once for a span and sliced per plan."""

    cal: Calendar
    energy_period: IntArray | None  # None: no TOU energy rates apply
    dyn_buy: FloatArray | None  # None: no dynamic prices
    dyn_sell: FloatArray | None
    demand_period: IntArray | None  # None: no TOU demand charges
    tou_key: IntArray  # per step: (year, month, period[, day]) packed, lexicographic order kept
    flat_key: IntArray  # per step: (year, month[, day]) packed

    def window(self, a: int, b: int) -> _Timeline:
        c = self.cal
        cal = Calendar(t_s=c.t_s[a:b], day=c.day[a:b], year=c.year[a:b], month=c.month[a:b], hour=c.hour[a:b],
                       weekend=c.weekend[a:b])

        def cut(x: npt.NDArray[Any] | None) -> Any:
            return None if x is None else x[a:b]

        return _Timeline(cal, cut(self.energy_period), cut(self.dyn_buy), cut(self.dyn_sell),
                         cut(self.demand_period), self.tou_key[a:b], self.flat_key[a:b])


def _timeline(tariff: Tariff, cal: Calendar, per_day: bool) -> _Timeline:
    dyn = tariff.dynamic_prices
    energy = None
    if tariff.energy_periods and (dyn is None or dyn.mode == "add"):
        energy = energy_period(tariff, cal)
    dyn_buy = dyn_sell = None
    if dyn is not None:
        dyn_buy = _aligned(dyn, dyn.buy_per_kwh, cal)
        dyn_sell = np.zeros(cal.t_s.size) if dyn.sell_per_kwh is None else _aligned(dyn, dyn.sell_per_kwh, cal)
    split = [cal.day] if per_day else []
    period = demand_period(tariff, cal) if tariff.demand_periods else None
    tou_key = _pack([cal.year, cal.month, period, *split]) if period is not None else np.zeros(0, dtype=np.int64)
    flat_key = _pack([cal.year, cal.month, *split]) if tariff.flat_demand_periods else np.zeros(0, dtype=np.int64)
    return _Timeline(cal, energy, dyn_buy, dyn_sell, period, tou_key, flat_key)


def _energy(tariff: Tariff, tl: _Timeline, month_kwh: float) -> tuple[FloatArray, FloatArray]:
    n = tl.cal.t_s.size
    buy = np.zeros(n)
    sell = np.zeros(n)
    dyn = tariff.dynamic_prices
    if tl.energy_period is not None:
        rates = np.array([_energy_tier_rates(p, month_kwh) for p in tariff.energy_periods])
        buy = rates[tl.energy_period, 0]
        # net metering: an exported kWh cancels an imported one of the same period
        sell = buy.copy() if tariff.metering == "net_metering" else rates[tl.energy_period, 1]
    if dyn is not None:
        assert tl.dyn_buy is not None and tl.dyn_sell is not None
        if dyn.mode == "replace":
            buy, sell = tl.dyn_buy, tl.dyn_sell
        else:
            buy = buy + tl.dyn_buy
            sell = sell + tl.dyn_sell
    # never sell above the buy price: the LP would buy to sell at once (unbounded)
    return buy, np.minimum(sell, buy)


def _pack(columns: list[IntArray]) -> IntArray:
    """The columns packed into one int64 key per step (mixed radix, in that order): keys sort
    as the rows do lexicographically, so one 1-D unique numbers the distinct rows (a
    row-wise unique cost a planner a tenth of a millisecond per call)."""
    key = np.zeros(columns[0].size, dtype=np.int64)
    for col in columns:
        c = np.asarray(col, dtype=np.int64)
        if c.size:
            lo = int(c.min())
            key = key * (int(c.max()) - lo + 1) + (c - lo)
    return key


def _groups(key: IntArray) -> tuple[IntArray, IntArray]:
    """(group index per step, first step of each group) for the distinct keys, numbered in
    the keys' order (the rows' lexicographic order)."""
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), first


def tariff_signals(tariff: Tariff, start: datetime, step_s: float, n_steps: int, *,
                   month_kwh: float, reference_peak_kw: float, per_day: bool = False,
                   past_peaks_kw: Mapping[MonthKey, float] | None = None) -> TariffSignals:
    """Signals for `n_steps` steps from `start` (naive local time).

    `month_kwh` picks the energy tier (the month's expected consumption);
    `reference_peak_kw` picks the demand tier (e.g. the peak so far or forecast).
    With a demand ratchet (`tariff.lookback`) a month's flat peak is also billed, at the
    lookback percent, in each later month it looks back on: its rate here carries those
    months' rates too (assuming the ratchet binds there: an upper estimate, a month whose
    own peak is higher pays that), and `past_peaks_kw` (closed months' peaks) gives each
    month the floor the ratchet already sets.
    """
    return _signals(tariff, _timeline(tariff, calendar(start, step_s, n_steps), per_day), month_kwh=month_kwh,
                    reference_peak_kw=reference_peak_kw, past_peaks_kw=past_peaks_kw)


class SignalCache:
    """`tariff_signals` for a planner's overlapping windows: what the calendar alone gives
    (periods, dynamic prices, group keys) is computed for `span_steps` at a time and sliced
    per window, the rest (tiers by the month's kWh and the reference peak) per call. The
    same signals as `tariff_signals` (tests/unit/test_signal_cache.py); a new tariff object
    (e.g. new dynamic prices), step or `per_day` starts anew, with the window alone until
    the same tariff comes again."""

    def __init__(self, span_steps: int = 8 * 96) -> None:
        self.span_steps = span_steps
        self._key: tuple[int, float, bool] | None = None
        self._tariff: Tariff | None = None  # held so that its id stays its own
        self._t0_s = 0
        self._tl: _Timeline | None = None

    def signals(self, tariff: Tariff, start: datetime, step_s: float, n_steps: int, *, month_kwh: float,
                reference_peak_kw: float, per_day: bool = False,
                past_peaks_kw: Mapping[MonthKey, float] | None = None) -> TariffSignals:
        t_s = tariff_seconds(start)
        key = (id(tariff), step_s, per_day)
        tl = self._tl
        a = round((t_s - self._t0_s) / step_s) if tl is not None else -1
        if (tl is None or key != self._key or tariff is not self._tariff or a < 0
                or self._t0_s + a * step_s != t_s or a + n_steps > tl.cal.t_s.size
                or tl.cal.t_s[a] != t_s):
            # a span from this window's start (the group keys' radix is the span's: same order);
            # for a tariff not seen before only the window: a live price feed hands the
            # planner a new tariff object for every plan
            steps = max(n_steps, self.span_steps) if tariff is self._tariff else n_steps
            tl = self._tl = _timeline(tariff, calendar(start, step_s, steps), per_day)
            self._key, self._tariff, self._t0_s, a = key, tariff, t_s, 0
        return _signals(tariff, tl.window(a, a + n_steps), month_kwh=month_kwh,
                        reference_peak_kw=reference_peak_kw, past_peaks_kw=past_peaks_kw)


def _signals(tariff: Tariff, tl: _Timeline, *, month_kwh: float, reference_peak_kw: float,
             past_peaks_kw: Mapping[MonthKey, float] | None) -> TariffSignals:
    cal = tl.cal
    n_steps = cal.t_s.size
    buy, sell = _energy(tariff, tl, month_kwh)

    tou_group = np.full(n_steps, -1, dtype=np.int64)
    tou_keys: list[TouKey] = []
    tou_rates: list[float] = []
    if tl.demand_period is not None:
        period = tl.demand_period
        tou_group, first = _groups(tl.tou_key)
        tou_keys = [(int(cal.year[i]), int(cal.month[i]), int(period[i])) for i in first]
        tou_rates = [marginal_demand_rate(tariff.demand_periods[p], reference_peak_kw) for _, _, p in tou_keys]

    flat_group = np.full(n_steps, -1, dtype=np.int64)
    flat_keys: list[MonthKey] = []
    flat_rates: list[float] = []
    if tariff.flat_demand_periods:
        flat_group, first = _groups(tl.flat_key)
        flat_keys = [(int(cal.year[i]), int(cal.month[i])) for i in first]
        flat_rates = [marginal_demand_rate(tariff.flat_demand_periods[tariff.flat_demand_months[m - 1]],
                                           reference_peak_kw) + _ratchet_rate(tariff, y, m, reference_peak_kw)
                      for y, m in flat_keys]
    floors = np.zeros(len(flat_keys))
    if tariff.lookback is not None and flat_keys:
        keys = np.array([(y - 1970) * 12 + m - 1 for y, m in flat_keys], dtype=np.int64)
        # the months ahead are not known: only the closed months' peaks set a floor
        floors = ratchet_floors_kw(tariff, keys, np.zeros(keys.size), dict(past_peaks_kw or {}))
    return TariffSignals(
        import_price_per_kwh=buy, export_price_per_kwh=sell,
        tou_group=tou_group, tou_keys=tuple(tou_keys), tou_rates_per_kw=np.array(tou_rates, dtype=np.float64),
        flat_group=flat_group, flat_keys=tuple(flat_keys), flat_rates_per_kw=np.array(flat_rates, dtype=np.float64),
        flat_floor_kw=floors,
    )


def _ratchet_rate(tariff: Tariff, year: int, month: int, peak_kw: float) -> float:
    """What one more kW of month (year, month)'s flat peak costs in the later months a
    demand ratchet bills it in: the lookback percent of each such month's flat rate."""
    lb = tariff.lookback
    if lb is None or not tariff.flat_demand_periods:
        return 0.0
    if lb.range_months > 0:
        later = range(month + 1, month + 1 + lb.range_months)  # may run into next year (month > 12)
    elif lb.months[month - 1]:
        later = range(month + 1, 13)  # the rest of the year the flagged month sets its ratchet for
    else:
        return 0.0
    return lb.percent * sum(
        marginal_demand_rate(tariff.flat_demand_periods[tariff.flat_demand_months[(m - 1) % 12]], peak_kw)
        for m in later)
