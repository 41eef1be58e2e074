"""Bill engine: a grid power series under a `Tariff` -> monthly bill by component.

Vectorised with numpy; the only Python loops run over billing months and tiers. The
conventions follow NREL SAM's ``Utilityrate5`` (see docs/tariffs.md), so SAM is an
independent reference for the arithmetic (tests/crosscheck/test_bill_vs_sam.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import numpy as np
import numpy.typing as npt

from ems.tariff.calendar import Calendar, calendar_at, demand_period, energy_period, local_seconds_array, tariff_seconds
from ems.tariff.model import (
    DemandPeriod,
    EnergyPeriod,
    PriceSeries,
    Tariff,
    TariffError,
)

__all__ = ["Bill", "BillInputError", "MonthlyBill", "check_prices_cover", "compute_bill"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Stand-in for "no upper bound": finite, so clip(x, lo, hi) - lo stays exact (0) for the
# padding tiers of periods that have fewer tiers than others.
_OPEN = 1e300


class BillInputError(TariffError):
    """The series handed to the bill engine is unusable (shape, step, time range)."""


@dataclass(frozen=True)
class MonthlyBill:
    """Charges for one billing (calendar) month; money in the tariff's currency.

    ``energy`` is the net energy charge (``energy_import - export_credit``), as SAM reports it.
    ``total`` = energy + demand_tou + demand_flat + fixed + minimum - true_up_credit.
    """

    year: int
    month: int
    import_kwh: float
    export_kwh: float
    peak_kw: float
    tou_peak_kw: tuple[float, ...]
    energy_import: float
    export_credit: float
    demand_tou: float
    demand_flat: float
    fixed: float
    minimum: float
    true_up_credit: float
    nm_surplus_kwh: float
    ratchet_kw: float = 0.0  # the demand ratchet's floor; the flat charge bills max(peak_kw, this)

    @property
    def energy(self) -> float:
        return self.energy_import - self.export_credit

    @property
    def total(self) -> float:
        return (
            self.energy
            + self.demand_tou
            + self.demand_flat
            + self.fixed
            + self.minimum
            - self.true_up_credit
        )


@dataclass(frozen=True)
class Bill:
    """Monthly bills in time order, with sums over the whole span."""

    months: tuple[MonthlyBill, ...]

    def _sum(self, name: str) -> float:
        return float(sum(getattr(m, name) for m in self.months))

    @property
    def energy(self) -> float:
        return self._sum("energy")

    @property
    def export_credit(self) -> float:
        return self._sum("export_credit")

    @property
    def demand_tou(self) -> float:
        return self._sum("demand_tou")

    @property
    def demand_flat(self) -> float:
        return self._sum("demand_flat")

    @property
    def fixed(self) -> float:
        return self._sum("fixed")

    @property
    def minimum(self) -> float:
        return self._sum("minimum")

    @property
    def true_up_credit(self) -> float:
        return self._sum("true_up_credit")

    @property
    def total(self) -> float:
        return self._sum("total")


@dataclass(frozen=True)
class _Span:
    """The billed series: its calendar (tariff time, ems/tariff/calendar.py) and billing months."""

    cal: Calendar
    step_s: int
    month_idx: IntArray  # per sample: 0 = first billed month
    month_keys: IntArray  # per billed month: months since 1970-01


def compute_bill(
    tariff: Tariff,
    grid_power_kw: npt.ArrayLike,
    *,
    start: datetime | np.datetime64 | None = None,
    step_s: int | None = None,
    timestamps: npt.ArrayLike | None = None,
    zone: tzinfo | None = None,
    demand_history_kw: Mapping[tuple[int, int], float] | None = None,
) -> Bill:
    """Bill ``grid_power_kw`` (average kW per step; > 0 import, < 0 export) under ``tariff``.

    Time is given either as ``start`` + ``step_s`` or as regular ``timestamps`` (each the
    start of its step). ``step_s`` must divide 3600. Without ``zone`` times are naive local
    wall-clock time (tariff time), regular in that clock. With ``zone`` they are instants
    (aware, or naive UTC), regular in real time, and the calendar is the zone's wall clock,
    DST included: the hour that autumn repeats is billed twice, in its local hour, the one
    that spring skips not at all, as a utility's meter sees it.
    Billing months are the calendar months the series touches; partial months are billed
    without proration.

    A demand ratchet (``tariff.lookback``) looks back on monthly peaks: the series' own, and
    before it ``demand_history_kw`` ((year, month) -> peak kW). Without that history a series
    of exactly 12 months is taken as a year that repeats (NREL REopt's convention: January
    looks back on the same series' December); otherwise months before the series count as 0.
    """
    power = np.asarray(grid_power_kw, dtype=np.float64)
    if power.ndim != 1 or power.size == 0:
        raise BillInputError("grid_power_kw must be a non-empty 1-D series")
    if not np.all(np.isfinite(power)):
        raise BillInputError("grid_power_kw contains NaN or infinite values")
    span = _span(power.size, start=start, step_s=step_s, timestamps=timestamps, zone=zone)
    n_months = span.month_keys.size
    dt_h = span.step_s / 3600.0
    e_import = np.maximum(power, 0.0) * dt_h
    e_export = np.maximum(-power, 0.0) * dt_h

    import_kwh = _sum_by(span.month_idx, e_import, n_months)
    export_kwh = _sum_by(span.month_idx, e_export, n_months)

    energy_import = np.zeros(n_months)
    export_credit = np.zeros(n_months)
    nm_surplus = np.zeros(n_months)
    dyn = tariff.dynamic_prices
    if (dyn is None or dyn.mode == "add") and tariff.energy_periods:
        period = energy_period(tariff, span.cal)
        if tariff.metering == "net_metering":
            energy_import, nm_surplus = _net_metering(tariff, span, period, e_import - e_export)
        else:
            energy_import, export_credit = _net_billing(
                tariff.energy_periods, span, period, e_import, e_export
            )
    if dyn is not None:
        buy, sell = _align_prices(dyn, span)
        energy_import = energy_import + _sum_by(span.month_idx, e_import * buy, n_months)
        if sell is not None:
            export_credit = export_credit + _sum_by(span.month_idx, e_export * sell, n_months)

    peak_kw, tou_peak_kw, demand_tou, demand_flat, ratchet = _demand(tariff, span, power, demand_history_kw)
    true_up = _true_up_credit(tariff, span, import_kwh - export_kwh)

    fixed = np.full(n_months, tariff.fixed_monthly)
    minimum = _minimum(
        tariff, span, energy_import - export_credit + demand_tou + demand_flat + fixed
    )

    months = []
    for i, key in enumerate(span.month_keys):
        months.append(
            MonthlyBill(
                year=1970 + int(key) // 12,
                month=int(key) % 12 + 1,
                import_kwh=float(import_kwh[i]),
                export_kwh=float(export_kwh[i]),
                peak_kw=float(peak_kw[i]),
                tou_peak_kw=tuple(float(x) for x in tou_peak_kw[i]),
                energy_import=float(energy_import[i]),
                export_credit=float(export_credit[i]),
                demand_tou=float(demand_tou[i]),
                demand_flat=float(demand_flat[i]),
                fixed=float(fixed[i]),
                minimum=float(minimum[i]),
                true_up_credit=float(true_up[i]),
                nm_surplus_kwh=float(nm_surplus[i]),
                ratchet_kw=float(ratchet[i]),
            )
        )
    return Bill(months=tuple(months))


def _sum_by(index: IntArray, weights: FloatArray, length: int) -> FloatArray:
    """Sum ``weights`` per ``index`` bucket (float result, ``length`` buckets)."""
    return np.bincount(index, weights, length).astype(np.float64, copy=False)


# --- calendar ---------------------------------------------------------------------------


def _span(
    n: int,
    *,
    start: datetime | np.datetime64 | None,
    step_s: int | None,
    timestamps: npt.ArrayLike | None,
    zone: tzinfo | None,
) -> _Span:
    if timestamps is not None:
        if start is not None:
            raise BillInputError("give either timestamps or start + step_s, not both")
        ts = _as_datetime64(timestamps, "timestamps", zone)
        if ts.shape != (n,):
            raise BillInputError(f"timestamps has {ts.size} entries, grid_power_kw has {n}")
        t_s = ts.astype(np.int64)
        if n >= 2:
            steps = np.diff(t_s)
            if steps[0] <= 0 or np.any(steps != steps[0]):
                raise BillInputError("timestamps must be strictly increasing at a constant step")
            if step_s is not None and step_s != int(steps[0]):
                raise BillInputError("step_s does not match the spacing of timestamps")
            step_s = int(steps[0])
        elif step_s is None:
            raise BillInputError("a single timestamp needs step_s")
    else:
        if start is None or step_s is None:
            raise BillInputError("give timestamps, or start and step_s")
        t0 = _as_datetime64(np.asarray([start]), "start", zone)[0].astype(np.int64)
        t_s = t0 + np.arange(n, dtype=np.int64) * int(step_s)
    if step_s <= 0 or 3600 % step_s != 0:
        raise BillInputError(f"step_s={step_s} must divide 3600 (schedules are hourly)")

    cal = calendar_at(t_s if zone is None else local_seconds_array(t_s, zone))
    # a billing month never goes back (a DST switch back over midnight on the 1st stays in the new month)
    month_abs = np.maximum.accumulate(cal.months)
    first = int(month_abs[0])
    return _Span(
        cal=cal,
        step_s=int(step_s),
        month_idx=(month_abs - first).astype(np.int64),
        month_keys=np.arange(first, int(month_abs[-1]) + 1, dtype=np.int64),
    )


def _as_datetime64(values: npt.ArrayLike, field: str, zone: tzinfo | None) -> npt.NDArray[np.datetime64]:
    arr = np.asarray(values)
    if arr.dtype == object and any(getattr(v, "tzinfo", None) is not None for v in arr.ravel()):
        if zone is None:
            raise BillInputError(f"{field} must be naive local wall-clock time, not tz-aware (or give zone)")
        arr = np.asarray([v if v.tzinfo is None else v.astimezone(UTC).replace(tzinfo=None) for v in arr.ravel()])
    try:
        return arr.astype("datetime64[s]")
    except (TypeError, ValueError) as exc:
        raise BillInputError(f"{field} cannot be read as datetimes") from exc


# --- tiers ------------------------------------------------------------------------------


def _energy_tiers(
    periods: Sequence[EnergyPeriod],
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(lo, hi, buy, sell) as [period, tier] arrays; short periods padded with empty tiers."""
    n_t = max(len(p.tiers) for p in periods)
    lo = np.full((len(periods), n_t), _OPEN)
    hi = np.full((len(periods), n_t), _OPEN)
    buy = np.zeros((len(periods), n_t))
    sell = np.zeros((len(periods), n_t))
    for i, p in enumerate(periods):
        prev = 0.0
        for j, tier in enumerate(p.tiers):
            lo[i, j] = prev
            hi[i, j] = _OPEN if tier.max_kwh is None else tier.max_kwh
            buy[i, j] = tier.rate_per_kwh
            sell[i, j] = tier.sell_per_kwh
            prev = hi[i, j]
    return lo, hi, buy, sell


def _demand_charge(demand_kw: float, period: DemandPeriod) -> float:
    """Tiered charge: each kW block billed at its own rate (SAM's block demand tiers)."""
    charge = 0.0
    lo = 0.0
    for tier in period.tiers:
        hi = _OPEN if tier.max_kw is None else tier.max_kw
        charge += (min(max(demand_kw, lo), hi) - lo) * tier.charge_per_kw
        lo = hi
    return charge


# --- energy -----------------------------------------------------------------------------


def _net_metering(
    tariff: Tariff, span: _Span, period: IntArray, e_net_import: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """SAM ur_metering_option 0: monthly net kWh per TOU period, surplus kWh rolls over.

    Within a month each period's energy is netted; a period with net import is billed,
    the monthly kWh tier limits shared across periods pro rata to their net import. A
    period's net surplus is carried to the next month (kWh) into the period that holds the
    same time of day (SAM matches on the weekday schedule at 00:00, 05:00, 11:00, 17:00; a
    surplus period absent from those hours is not carried). Carry-over stops after the
    true-up month. Returns (energy charge, surplus kWh carried out) per month.
    """
    n_months = span.month_keys.size
    n_p = len(tariff.energy_periods)
    lo, hi, buy, _ = _energy_tiers(tariff.energy_periods)
    surplus_in = _sum_by(span.month_idx * n_p + period, -e_net_import, n_months * n_p)
    surplus_in = surplus_in.reshape(n_months, n_p)
    wd = np.asarray(tariff.energy_weekday_schedule, dtype=np.int64)
    rollover_hours = (0, 5, 11, 17)

    charges = np.zeros(n_months)
    carried = np.zeros(n_months)
    prev_surplus = np.zeros(n_p)
    prev_moy = -1
    for i, key in enumerate(span.month_keys):
        moy = int(key) % 12
        net = surplus_in[i].copy()  # SAM sign: > 0 surplus (export), < 0 use
        if i > 0 and prev_moy != tariff.nm_true_up_month - 1:
            src_map = [int(wd[prev_moy, h]) for h in rollover_hours]
            dst_map = [int(wd[moy, h]) for h in rollover_hours]
            for p in np.flatnonzero(prev_surplus > 0):
                if int(p) in src_map:
                    net[dst_map[src_map.index(int(p))]] += prev_surplus[p]
        use = np.maximum(-net, 0.0)
        surplus = np.maximum(net, 0.0)
        total = use.sum()
        if total > 0:
            in_tier = np.clip(total, lo, hi) - lo  # [period, tier] kWh of the month in tier
            charges[i] = float(np.sum((use / total)[:, None] * in_tier * buy))
        prev_surplus = surplus
        carried[i] = surplus.sum()
        prev_moy = moy
    return charges, carried


def _net_billing(
    periods: Sequence[EnergyPeriod],
    span: _Span,
    period: IntArray,
    e_import: FloatArray,
    e_export: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """SAM ur_metering_option 2: every step's import bought, export sold, no carry-over.

    Tiers apply to the month's running total (import and export separately), in time order:
    a step's kWh fall in the tiers its cumulative monthly total crosses, priced with the
    tiers of the step's own period.
    """
    lo, hi, buy, sell = _energy_tiers(periods)
    n_months = span.month_keys.size
    out = []
    for energy, rate in ((e_import, buy), (e_export, sell)):
        cum = np.cumsum(energy)
        month_start = np.searchsorted(span.month_idx, np.arange(n_months))
        offset = np.concatenate(([0.0], cum))[month_start]
        after = cum - offset[span.month_idx]
        before = after - energy
        cost = np.zeros(energy.size)
        for t in range(lo.shape[1]):
            lo_t, hi_t = lo[period, t], hi[period, t]
            kwh = np.clip(after, lo_t, hi_t) - np.clip(before, lo_t, hi_t)
            cost += kwh * rate[period, t]
        out.append(_sum_by(span.month_idx, cost, n_months))
    return out[0], out[1]


def check_prices_cover(prices: PriceSeries, start: datetime, step_s: int, n_steps: int) -> None:
    """Before a run: the dynamic prices cover `n_steps` of `step_s` from `start` (naive tariff
    time) at a step that is a multiple of it, as the bill of that run will need; the error says
    what they cover and what was asked."""
    if prices.step_s % step_s:
        raise BillInputError(f"the prices' step ({prices.step_s} s) must be a multiple of the run's ({step_s} s)")
    p0, t0 = tariff_seconds(prices.start), tariff_seconds(start)
    p_end = p0 + len(prices.buy_per_kwh) * prices.step_s
    if t0 < p0 or t0 + (n_steps - 1) * step_s >= p_end:
        end = prices.start + timedelta(seconds=len(prices.buy_per_kwh) * prices.step_s)
        raise BillInputError(f"the prices cover {prices.start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}, the run "
                             f"{start:%Y-%m-%d %H:%M} to {start + timedelta(seconds=n_steps * step_s):%Y-%m-%d %H:%M}")


def _align_prices(prices: PriceSeries, span: _Span) -> tuple[FloatArray, FloatArray | None]:
    """Price per bill step; the price series must cover the span at a step that fits."""
    p_step = prices.step_s
    if p_step % span.step_s != 0:
        raise BillInputError(
            f"dynamic price step ({p_step} s) must be a multiple of the bill step ({span.step_s} s)"
        )
    p0 = tariff_seconds(prices.start)
    idx = (span.cal.t_s - p0) // p_step
    if idx[0] < 0 or idx[-1] >= len(prices.buy_per_kwh):
        raise BillInputError("dynamic_prices do not cover the billed time span")
    buy = np.asarray(prices.buy_per_kwh, dtype=np.float64)[idx]
    sell = None
    if prices.sell_per_kwh is not None:
        sell = np.asarray(prices.sell_per_kwh, dtype=np.float64)[idx]
    return buy, sell


# --- demand -----------------------------------------------------------------------------


def _demand(
    tariff: Tariff, span: _Span, power_kw: FloatArray, history_kw: Mapping[tuple[int, int], float] | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Peaks and charges per month: (flat peak, TOU peaks [month, period], TOU, flat charge,
    the ratchet's floor on the flat demand).

    The demand measure is the average import over clock-aligned intervals of
    ``demand_interval_s`` (partial intervals at the ends average what is there); with a
    step at or above the interval, each step's average is the measure.
    """
    n_months = span.month_keys.size
    interval = tariff.demand_interval_s
    if span.step_s >= interval:
        avg_kw, first = power_kw, np.arange(power_kw.size)
    else:
        if interval % span.step_s != 0:
            raise BillInputError(
                f"demand_interval_s={interval} is not a multiple of the step ({span.step_s} s)"
            )
        block = span.cal.t_s // interval
        first = np.flatnonzero(np.concatenate(([True], block[1:] != block[:-1])))
        counts = np.diff(np.append(first, power_kw.size))
        avg_kw = np.add.reduceat(power_kw, first) / counts
    b_month = span.month_idx[first]

    peak = np.zeros(n_months)
    np.maximum.at(peak, b_month, avg_kw)  # starts at 0: export never sets a peak

    n_dp = max(len(tariff.demand_periods), 1)
    tou_peak = np.zeros((n_months, n_dp))
    demand_tou = np.zeros(n_months)
    if tariff.demand_periods:
        b_period = demand_period(tariff, span.cal)[first]  # an interval's period is its start's
        flat_peak = np.zeros(n_months * n_dp)
        np.maximum.at(flat_peak, b_month * n_dp + b_period, avg_kw)
        tou_peak = flat_peak.reshape(n_months, n_dp)
        for i in range(n_months):
            demand_tou[i] = sum(
                _demand_charge(float(tou_peak[i, p]), dp)
                for p, dp in enumerate(tariff.demand_periods)
            )
    else:
        tou_peak = np.zeros((n_months, 0))

    ratchet = ratchet_floors_kw(tariff, span.month_keys, peak, history_kw)
    demand_flat = np.zeros(n_months)
    if tariff.flat_demand_periods:
        for i, key in enumerate(span.month_keys):
            structure = tariff.flat_demand_periods[tariff.flat_demand_months[int(key) % 12]]
            demand_flat[i] = _demand_charge(max(float(peak[i]), float(ratchet[i])), structure)
    return peak, tou_peak, demand_tou, demand_flat, ratchet


def ratchet_floors_kw(tariff: Tariff, month_keys: IntArray, peak_kw: FloatArray,
                      history_kw: Mapping[tuple[int, int], float] | None = None) -> FloatArray:
    """Per month (months since 1970-01), the ratchet's floor on the billed flat demand: the
    lookback percent of the highest peak looked back on (0 without a ratchet). Peaks come
    from `peak_kw` (one per month key), then `history_kw`; see `compute_bill` for 12 months
    without history."""
    lb = tariff.lookback
    floors = np.zeros(month_keys.size)
    if lb is None:
        return floors
    known = {int(k): float(p) for k, p in zip(month_keys, peak_kw, strict=True)}
    history = {(y - 1970) * 12 + m - 1: float(p) for (y, m), p in (history_kw or {}).items()}
    keys = [int(k) for k in month_keys]
    cyclic = history_kw is None and len(keys) == 12 and keys == list(range(keys[0], keys[0] + 12))

    def peak_of(key: int) -> float:
        if key in known:
            return known[key]
        if key in history:
            return history[key]
        if cyclic:  # the same month of the repeating year
            return known.get(keys[0] + (key - keys[0]) % 12, 0.0)
        return 0.0

    for i, key in enumerate(keys):
        if lb.range_months > 0:
            looked = [peak_of(key - j) for j in range(1, lb.range_months + 1)]
        else:  # the flagged months of the calendar year
            first = key - key % 12
            looked = [peak_of(first + m) for m in range(12) if lb.months[m]]
        floors[i] = lb.percent * max(looked, default=0.0)
    return floors


# --- fixed, minimum, true-up -------------------------------------------------------------


def _minimum(tariff: Tariff, span: _Span, bill_before_min: FloatArray) -> FloatArray:
    """SAM: monthly minimum tops each month up; the annual one tops up December.

    A month's bill counts as max(0, bill) for both tests (a credit month is not negative).
    The annual minimum compares the sum of a calendar year's billed months, settled in
    December; a span without December gets no annual adjustment.
    """
    minimum = np.zeros(bill_before_min.size)
    year_sum: dict[int, float] = {}
    for i, key in enumerate(span.month_keys):
        year, moy = int(key) // 12, int(key) % 12
        mon_bill = max(float(bill_before_min[i]), 0.0)
        if mon_bill < tariff.minimum_monthly:
            minimum[i] += tariff.minimum_monthly - mon_bill
        year_sum[year] = year_sum.get(year, 0.0) + mon_bill
        if moy == 11 and year_sum[year] < tariff.minimum_annual:
            minimum[i] += tariff.minimum_annual - year_sum[year]
    return minimum


def _true_up_credit(tariff: Tariff, span: _Span, net_import_kwh: FloatArray) -> FloatArray:
    """Net metering: monthly-net surplus kWh accumulated to the true-up month, paid there."""
    credit = np.zeros(net_import_kwh.size)
    if tariff.metering != "net_metering" or tariff.nm_yearend_sell_per_kwh == 0.0:
        return credit
    cumulative = 0.0
    for i, key in enumerate(span.month_keys):
        moy = int(key) % 12
        if moy == tariff.nm_true_up_month % 12:  # first month after the true-up
            cumulative = 0.0
        cumulative = max(cumulative - float(net_import_kwh[i]), 0.0)
        if moy == tariff.nm_true_up_month - 1:
            credit[i] = cumulative * tariff.nm_yearend_sell_per_kwh
    return credit
