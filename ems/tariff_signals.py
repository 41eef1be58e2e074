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


def _energy(tariff: Tariff, cal: Calendar, month_kwh: float) -> tuple[FloatArray, FloatArray]:
    n = cal.t_s.size
    buy = np.zeros(n)
    sell = np.zeros(n)
    dyn = tariff.dynamic_prices
    if tariff.energy_periods and (dyn is None or dyn.mode == "add"):
        period = energy_period(tariff, cal)
        rates = np.array([_energy_tier_rates(p, month_kwh) for p in tariff.energy_periods])
        buy = rates[period, 0]
        # net metering: an exported kWh cancels an imported one of the same period
        sell = buy.copy() if tariff.metering == "net_metering" else rates[period, 1]
    if dyn is not None:
        dyn_buy = _aligned(dyn, dyn.buy_per_kwh, cal)
        dyn_sell = np.zeros(n) if dyn.sell_per_kwh is None else _aligned(dyn, dyn.sell_per_kwh, cal)
        if dyn.mode == "replace":
            buy, sell = dyn_buy, dyn_sell
        else:
            buy = buy + dyn_buy
            sell = sell + dyn_sell
    # never sell above the buy price: the LP would buy to sell at once (unbounded)
    return buy, np.minimum(sell, buy)


def _groups(columns: list[IntArray]) -> tuple[IntArray, IntArray]:
    """(group index per step, first step of each group) for the distinct rows of columns,
    numbered in the rows' lexicographic order. The columns are packed into one int64 key
    per step (mixed radix, in that order), so one 1-D unique does it: a row-wise unique
    cost a planner a tenth of a millisecond per call."""
    key = np.zeros(columns[0].size, dtype=np.int64)
    for col in columns:
        c = np.asarray(col, dtype=np.int64)
        if c.size:
            lo = int(c.min())
            key = key * (int(c.max()) - lo + 1) + (c - lo)
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
    cal = calendar(start, step_s, n_steps)
    buy, sell = _energy(tariff, cal, month_kwh)

    tou_group = np.full(n_steps, -1, dtype=np.int64)
    tou_keys: list[TouKey] = []
    tou_rates: list[float] = []
    split = [cal.day] if per_day else []
    if tariff.demand_periods:
        period = demand_period(tariff, cal)
        tou_group, first = _groups([cal.year, cal.month, period, *split])
        tou_keys = [(int(cal.year[i]), int(cal.month[i]), int(period[i])) for i in first]
        tou_rates = [marginal_demand_rate(tariff.demand_periods[p], reference_peak_kw) for _, _, p in tou_keys]

    flat_group = np.full(n_steps, -1, dtype=np.int64)
    flat_keys: list[MonthKey] = []
    flat_rates: list[float] = []
    if tariff.flat_demand_periods:
        flat_group, first = _groups([cal.year, cal.month, *split])
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
