"""The demand meter (ems/demand.py): intervals, months and TOU periods in tariff time, wall-clock
steps, persistence, and agreement with the bill engine on the same series."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from ems.demand import DemandMeter, DemandMeterError, MonthPeaks
from ems.state_store import StateStore
from ems.tariff import DemandPeriod, DemandTier, Tariff, compute_bill, load_urdb
from ems.tariff.calendar import local_seconds_array

URDB = Path(__file__).resolve().parents[3] / "shared" / "data" / "tariffs" / "sam_urdbv7.json"
LA = ZoneInfo("America/Los_Angeles")
T0 = 1_767_225_600.0  # 2026-01-01T00:00Z


@pytest.fixture(scope="module")
def tariff() -> Tariff:
    # 900 s demand intervals; TOU demand period 0 = weekday 15:00-20:00, 1 otherwise; flat demand
    if not URDB.exists():
        pytest.skip("shared data not present")
    return load_urdb(URDB)


def test_interval_average_and_month_peak() -> None:
    d = DemandMeter(interval_s=900)
    for k in range(900):
        d.add(1_000_000.0, 1.0, T0 + k + 1)  # first interval: 1 MW, closes on the next sample
    assert d.month_peak_w == 0.0 and d.current_average_w == pytest.approx(1e6)
    d.add(0.0, 1.0, T0 + 901)
    assert d.month_peak_w == pytest.approx(1_000_000.0)
    assert d.month == "2026-01" and d.month_key == (2026, 1) and d.peak_kw((2026, 1)) == pytest.approx(1000.0)


def test_wall_clock_step_back_does_not_reopen_or_double_count() -> None:
    d = DemandMeter(interval_s=900)
    for k in range(600):
        d.add(600_000.0, 1.0, T0 + k + 1)
    for k in range(300):  # NTP steps the wall clock back one hour mid-interval
        d.add(600_000.0, 1.0, T0 - 3600 + 601 + k)
    assert d.clock_steps_back == 300 and d.interval_start_s == T0
    d.add(0.0, 0.0, T0 + 901)  # the wall clock is right again: the interval closes
    assert d.month_peak_w == pytest.approx(600_000.0)  # 900 s of 600 kW, not more


def test_wall_clock_step_forward_closes_the_interval() -> None:
    d = DemandMeter(interval_s=900)
    for k in range(450):
        d.add(1_000_000.0, 1.0, T0 + k + 1)
    d.add(200_000.0, 1.0, T0 + 7200 + 1)  # jumps two hours ahead
    # the closed interval averages the time it saw, as the bill does with a partial interval
    assert d.month_peak_w == pytest.approx(1_000_000.0)
    assert d.interval_start_s == T0 + 7200 and d.current_average_w == pytest.approx(200_000.0)


def test_a_stalled_loop_does_not_read_as_zero_import() -> None:
    d = DemandMeter(interval_s=900)
    d.add(500_000.0, 300.0, T0 + 300)
    d.add(500_000.0, 60.0, T0 + 900)  # 540 s not seen: the average is of what was seen
    d.add(0.0, 0.0, T0 + 901)
    assert d.month_peak_w == pytest.approx(500_000.0)


def test_export_and_bad_samples_add_nothing() -> None:
    d = DemandMeter(interval_s=900)
    d.add(-300_000.0, 450.0, T0 + 450)
    d.add(float("nan"), 450.0, T0 + 899)
    assert d.current_average_w == 0.0
    d.add(100_000.0, 1.0, T0 + 900)
    assert d.current_average_w == pytest.approx(100_000.0 / 451)


def test_new_month_resets_the_peak_and_keeps_the_last_one() -> None:
    d = DemandMeter(interval_s=900)
    feb = 1_769_904_000.0  # 2026-02-01T00:00Z
    d.add(2e6, 900.0, feb - 900)
    d.add(1e5, 900.0, feb + 900)  # closes January's last interval, opens February
    assert d.month == "2026-02" and d.month_peak_w == 0.0
    assert d.previous == MonthPeaks((2026, 1), 2e6, ())
    assert d.peak_kw((2026, 1)) == pytest.approx(2000.0) and d.peak_kw((2025, 12)) == 0.0


def test_months_follow_the_zone() -> None:
    ny = DemandMeter(zone=ZoneInfo("America/New_York"))
    utc = DemandMeter()
    feb_utc = 1_769_904_000.0  # 2026-02-01T00:00Z is 2026-01-31T19:00 in New York
    for d in (ny, utc):
        d.add(1e6, 900.0, feb_utc + 900)
    assert (ny.month, utc.month) == ("2026-01", "2026-02")
    ny.add(1e6, 900.0, feb_utc + 5 * 3600 + 900)  # New York's midnight
    assert ny.month == "2026-02" and ny.previous is not None and ny.previous.peak_w == pytest.approx(1e6)


def test_intervals_align_on_the_local_clock() -> None:
    # India is UTC+05:30: hourly intervals start at half past the UTC hour
    d = DemandMeter(zone=ZoneInfo("Asia/Kolkata"), interval_s=3600)
    d.add(1e6, 1800.0, T0 + 1800)
    d.add(0.0, 1800.0, T0 + 3600)
    assert d.interval_start_s == T0 + 1800 and d.month_peak_w == pytest.approx(1e6)


def test_autumn_repeats_an_hour_as_two_intervals_in_meter_and_bill(tariff) -> None:
    # 2018-11-04 in Los Angeles: 01:00-02:00 happens twice (PDT, then PST); a Sunday: period 1
    t0 = datetime(2018, 11, 4, 0, 0, tzinfo=LA).timestamp()
    n = 4 * 12  # 4 real hours at 5 min: 00:00 PDT .. 02:55 PST
    kw = np.zeros(n)
    kw[12:15] = 1000.0  # the first 01:00-01:15 (PDT); the second one (PST, samples 24-26) stays 0
    meter = DemandMeter(tariff, LA)
    for k in range(n):
        meter.add(kw[k] * 1e3, 300.0, t0 + (k + 1) * 300)
    meter.add(0.0, 0.0, t0 + n * 300 + 900)
    bill = compute_bill(tariff, kw, start=datetime.fromtimestamp(t0, UTC), step_s=300, zone=LA).months[0]
    assert bill.peak_kw == pytest.approx(1000.0) and bill.tou_peak_kw == pytest.approx((0.0, 1000.0))
    assert meter.peak_kw((2018, 11)) == pytest.approx(1000.0)  # not 500: the two hours are not folded
    assert meter.tou_peak_kw((2018, 11, 1)) == pytest.approx(1000.0) and meter.tou_peak_kw((2018, 11, 0)) == 0.0


def _one_am_tariff() -> Tariff:
    """TOU demand period 1 from 01:00 to 02:00 every day, 0 otherwise."""
    table = tuple(tuple(1 if h == 1 else 0 for h in range(24)) for _ in range(12))
    p = DemandPeriod(tiers=(DemandTier(charge_per_kw=1.0),))
    return Tariff(demand_periods=(p, p), demand_weekday_schedule=table, demand_weekend_schedule=table)


@pytest.mark.parametrize("day", [datetime(2018, 3, 11), datetime(2018, 11, 4)])
def test_the_interval_before_a_dst_switch_is_in_its_starting_hour(day) -> None:
    # 01:45-02:00 is the last interval before the switch (to 03:00 PDT in spring, back to
    # 01:00 PST in autumn): it is billed in hour 1, although its end is read in the new offset
    tariff = _one_am_tariff()
    t0 = day.replace(tzinfo=LA).timestamp()  # local midnight
    kw = np.full(36, 100.0)
    kw[21:24] = 1200.0  # 01:45-02:00 (the 22nd to 24th 5-min samples after midnight)
    meter = DemandMeter(tariff, LA)
    months = _meter_months(meter, kw, t0 + 300.0 * np.arange(kw.size), 300.0)
    bill = compute_bill(tariff, kw, start=datetime.fromtimestamp(t0, UTC), step_s=300, zone=LA).months[0]
    assert bill.tou_peak_kw == pytest.approx((100.0, 1200.0))
    assert np.asarray(months[(day.year, day.month)].tou_peaks_w) / 1e3 == pytest.approx((100.0, 1200.0))


# --- agreement with the bill ---------------------------------------------------------------

# (start, end) in Los Angeles: each spans a month's end and a DST switch; both start 5 min into
# an interval (a partial first interval, which both average over what is there)
WINDOWS = {
    "autumn": (datetime(2018, 10, 29, 0, 5), datetime(2018, 11, 7)),
    "spring": (datetime(2018, 3, 8, 0, 5), datetime(2018, 4, 3)),
}
# local 15-min intervals set by hand (naive local start, occurrence of a repeated hour, kW)
SPIKES = {
    "autumn": [(datetime(2018, 10, 31, 23, 45), 0, 5000.0),  # October's peak by local months, not UTC's
               (datetime(2018, 11, 4, 1, 0), 0, 4000.0),  # the first 01:00 of the repeated hour
               (datetime(2018, 11, 4, 1, 15), 1, 3800.0),  # the second 01:15
               (datetime(2018, 11, 5, 14, 45), 0, 3500.0)],  # Mon 14:45 PST: period 1 (15:45 under PDT: 0)
    "spring": [(datetime(2018, 3, 31, 23, 45), 0, 5000.0),
               (datetime(2018, 3, 11, 1, 45), 0, 4000.0),  # just before the skipped hour
               (datetime(2018, 3, 12, 20, 0), 0, 3500.0)],  # Mon 20:00 PDT: period 1 (19:00 under PST: 0)
}


def _series(window: str) -> tuple[float, np.ndarray]:
    start, end = WINDOWS[window]
    t0, t1 = start.replace(tzinfo=LA).timestamp(), end.replace(tzinfo=LA).timestamp()
    n = int((t1 - t0) // 300)
    rng = np.random.default_rng(42)
    kw = 800.0 + 300.0 * rng.standard_normal(n)
    kw[rng.random(n) < 0.03] = -400.0  # some export
    local = local_seconds_array(t0 + 300.0 * np.arange(n), LA)
    for at, occurrence, value in SPIKES[window]:
        a = (at - datetime(1970, 1, 1)).total_seconds()
        inside = np.flatnonzero((local >= a) & (local < a + 900))
        runs = np.split(inside, np.flatnonzero(np.diff(inside) > 1) + 1)
        kw[runs[occurrence]] = value
    return t0, kw


def _meter_months(meter: DemandMeter, kw: np.ndarray, times_s: np.ndarray, step_s: float) -> dict:
    """Feed step by step (each sample ends step_s after its start); each month's final peaks."""
    months: dict = {}
    for k in range(kw.size):
        meter.add(kw[k] * 1e3, step_s, times_s[k] + step_s)
        if meter.previous is not None:
            months[meter.previous.month] = meter.previous
    meter.add(0.0, 0.0, times_s[-1] + step_s + meter.interval_s)  # closes the last interval
    last = meter.peaks()
    assert last is not None
    months[last.month] = last
    return months


@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_meter_agrees_with_the_bill_across_month_end_and_dst(tariff, window) -> None:
    t0, kw = _series(window)
    times = t0 + 300.0 * np.arange(kw.size)
    months = _meter_months(DemandMeter(tariff, LA), kw, times, 300.0)
    bill = compute_bill(tariff, kw, start=datetime.fromtimestamp(t0, UTC), step_s=300, zone=LA)
    assert [(m.year, m.month) for m in bill.months] == sorted(months)
    for m in bill.months:
        mine = months[(m.year, m.month)]
        assert mine.peak_w / 1e3 == pytest.approx(m.peak_kw, rel=1e-12)
        assert np.asarray(mine.tou_peaks_w) / 1e3 == pytest.approx(m.tou_peak_kw, rel=1e-12)
    first = bill.months[0]
    assert first.peak_kw == pytest.approx(5000.0)  # the spike at local 23:45 on the month's last day
    if window == "autumn":
        assert bill.months[1].tou_peak_kw == pytest.approx((bill.months[1].tou_peak_kw[0], 4000.0))
        assert bill.months[1].tou_peak_kw[0] < 3500.0  # Monday's 14:45 spike is in period 1
    else:
        assert first.tou_peak_kw[0] < 3500.0  # Monday's 20:00 PDT spike is in period 1


def test_meter_agrees_with_the_bill_in_naive_tariff_time(tariff) -> None:
    # the backtest's way: a regular naive local series, the meter left at UTC
    _, kw = _series("autumn")
    start = datetime(2018, 10, 29, 0, 5)
    local = (start - datetime(1970, 1, 1)).total_seconds() + 300.0 * np.arange(kw.size)
    months = _meter_months(DemandMeter(tariff), kw, local, 300.0)
    for m in compute_bill(tariff, kw, start=start, step_s=300).months:
        mine = months[(m.year, m.month)]
        assert mine.peak_w / 1e3 == pytest.approx(m.peak_kw, rel=1e-12)
        assert np.asarray(mine.tou_peaks_w) / 1e3 == pytest.approx(m.tou_peak_kw, rel=1e-12)


def test_the_planner_keys(tariff) -> None:
    t0 = datetime(2018, 7, 3, 15, tzinfo=LA).timestamp()  # a Tuesday: period 0 from 15:00 to 20:00
    d = DemandMeter(tariff, LA)
    for k, kw in enumerate([400.0, 800.0, 600.0]):
        d.add(kw * 1e3, 900.0, t0 + (k + 1) * 900)
    d.add(900e3, 900.0, t0 + 6 * 3600)  # 20:45: period 1, still open
    assert d.tou_peak_kw((2018, 7, 0)) == pytest.approx(800.0) and d.tou_peak_kw((2018, 7, 1)) == 0.0
    assert d.peak_kw((2018, 7)) == pytest.approx(800.0) and d.peak_kw((2018, 8)) == 0.0
    assert d.tou_peak_kw((2018, 7, 2)) == 0.0  # no such period


# --- persistence -------------------------------------------------------------------------


def _fed(tariff: Tariff | None, zone=LA) -> DemandMeter:
    d = DemandMeter(tariff, zone)
    t0 = datetime(2018, 10, 31, 23, 0, tzinfo=LA).timestamp()
    for k in range(1, 25):  # to 00:12 on Nov 1: October closed, an interval of November open
        d.add(1e6 + 1e4 * k, 180.0, t0 + 180 * k)
    return d


def test_round_trip_is_exact_including_the_open_interval(tariff) -> None:
    d = _fed(tariff)
    saved = json.loads(json.dumps(d.to_dict()))
    again = DemandMeter.from_dict(saved, tariff, LA)
    assert again.to_dict() == d.to_dict() and again.previous == d.previous
    assert again.interval_start_s is not None and again.current_average_w > 0
    t = d.interval_start_s + 900 + 1  # both go on the same: the restored interval closes as the original
    for m in (d, again):
        m.add(0.0, 1.0, t)
    assert again.to_dict() == d.to_dict() and again.month_peak_w > 0


def test_state_store_round_trip(tmp_path, tariff) -> None:
    s = StateStore(tmp_path / "state.db")
    s.save({"demand": _fed(tariff).to_dict(), "periods": 7}, 1.0)
    s.close()
    again = StateStore(tmp_path / "state.db").load()
    assert DemandMeter.from_dict(again["demand"], tariff, LA).to_dict() == _fed(tariff).to_dict()


def test_the_first_format_keeps_its_month_and_peak() -> None:
    old = {"interval_s": 900.0, "month": "2026-03", "month_peak_w": 5.0, "interval_index": 1_970_000,
           "energy_ws": 1e6, "clock_steps_back": 2}
    d = DemandMeter.from_dict(old)
    assert (d.month, d.month_peak_w, d.clock_steps_back) == ("2026-03", 5.0, 2)
    assert d.interval_start_s is None  # its observed time was not kept: the interval starts again


def test_other_settings_keep_the_peaks_and_drop_the_open_interval(tariff) -> None:
    saved = _fed(tariff).to_dict()
    elsewhere = DemandMeter.from_dict(saved, tariff, ZoneInfo("America/New_York"))
    assert elsewhere.month_peak_w == saved["month_peak_w"] and elsewhere.interval_start_s is None
    flat = DemandMeter.from_dict(saved, None, LA)  # no tariff now: no TOU peaks to keep
    assert flat.tou_peaks_w == () and flat.interval_start_s is not None and flat.previous is not None


@pytest.mark.parametrize("bad", [{"format": 2, "month": "2026-13"}, {"format": 99},
                                 {"format": 2, "month": "2026-01", "interval_start_s": 0, "zone": "UTC",
                                  "interval_s": 900},
                                 # a peak that is not a number (a broken file, a hostile handover): an inf
                                 # month peak taken over would end peak shaving for the month
                                 {"month": "2026-01", "month_peak_w": float("inf")},
                                 {"format": 2, "month": "2026-01", "month_peak_w": float("nan")},
                                 {"format": 2, "month": "2026-01",
                                  "previous": {"month": "2025-12", "peak_w": float("inf"), "tou_peak_w": []}},
                                 {"format": 2, "month": "2026-01", "interval_start_s": 0, "zone": "UTC",
                                  "interval_s": 900, "energy_ws": float("nan"), "observed_s": 1.0}])
def test_unreadable_state_is_a_typed_error(bad) -> None:
    with pytest.raises(DemandMeterError):
        DemandMeter.from_dict(bad)


def test_an_interval_must_divide_the_hour() -> None:
    with pytest.raises(DemandMeterError):
        DemandMeter(interval_s=7 * 60)
    assert DemandMeter(Tariff(demand_interval_s=1800), interval_s=900).interval_s == 1800  # the tariff's wins


def test_month_label_before_any_sample() -> None:
    d = DemandMeter()
    assert (d.month, d.month_key, d.peaks(), d.current_average_w) == ("", None, None, 0.0)
    assert d.peak_kw((2026, 1)) == 0.0 and timedelta(seconds=d.interval_s) == timedelta(minutes=15)
