"""A program's baseline from a known history (ems/dr_baseline.py), and the same baseline
taken by the period step's event in the backtest (the planner's load history)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest

from ems.backtest.engine import run_backtest
from ems.dr_baseline import PRESETS, BaselineRule, BaselineRuleError, program_baseline
from ems.model.dr import DrEvent
from ems.tariff import EnergyPeriod, EnergyTier, Tariff
from ems.tariff.calendar import tariff_seconds

STEP_S = 900.0
DAY = date(2018, 7, 18)  # a Wednesday
START = tariff_seconds(datetime(2018, 7, 18, 15))  # the event: 15:00-17:00
END = START + 2 * 3600.0
FIRST = tariff_seconds(datetime(2018, 6, 1))
NONE = BaselineRule(10, 10, 4, 4, "none")


def _day_load_w(d: date) -> float:
    """Each past day its own flat load: 1000 kW plus 10 kW a day since June 1 (weekends 500 kW)."""
    return 500e3 if d.weekday() >= 5 else 1000e3 + 10e3 * (d - date(2018, 6, 1)).days


def _history(until: datetime, day_of_w: float | None = None) -> tuple[np.ndarray, float]:
    end = tariff_seconds(until)
    t = FIRST + STEP_S * np.arange(round((end - FIRST) / STEP_S))
    days = [(datetime(1970, 1, 1) + timedelta(seconds=float(x))).date() for x in t]
    w = np.array([_day_load_w(d) for d in days])
    if day_of_w is not None:  # the event day's own load so far
        w[np.array([d == DAY for d in days])] = day_of_w
    return w, float(end)


def _weekdays_before(d: date, n: int, skip: frozenset[date] = frozenset()) -> list[date]:
    out: list[date] = []
    while len(out) < n:
        d -= timedelta(days=1)
        if d.weekday() < 5 and d not in skip:
            out.append(d)
    return out


def test_ten_in_ten_is_the_mean_of_the_last_ten_weekdays_without_events() -> None:
    w, end = _history(datetime(2018, 7, 18, 14))
    event_days = {date(2018, 7, 16)}  # Monday had an event: not a similar day
    b = program_baseline(w, end, STEP_S, START, END, NONE, event_days)
    assert b is not None
    days = _weekdays_before(DAY, 10, frozenset(event_days))
    assert b.days == tuple(sorted(days)) and date(2018, 7, 16) not in b.days
    assert b.baseline_w == pytest.approx(np.mean([_day_load_w(d) for d in days]))


def test_high_four_of_five_averages_the_four_highest_of_the_last_five() -> None:
    w, end = _history(datetime(2018, 7, 18, 14))
    rule = BaselineRule(5, 4, 3, 2, "none")
    b = program_baseline(w, end, STEP_S, START, END, rule)
    five = _weekdays_before(DAY, 5)  # the load grows by the day: the oldest of the five is left out
    assert b is not None and b.days == tuple(sorted(five[:4]))
    assert b.baseline_w == pytest.approx(np.mean([_day_load_w(d) for d in five[:4]]))


def test_a_weekend_event_looks_at_weekend_days() -> None:
    w, end = _history(datetime(2018, 7, 21, 14))  # Saturday
    start = tariff_seconds(datetime(2018, 7, 21, 15))
    b = program_baseline(w, end, STEP_S, start, start + 7200, NONE)
    assert b is not None and len(b.days) == 4 and all(d.weekday() >= 5 for d in b.days)
    assert b.baseline_w == pytest.approx(500e3)
    # a holiday counts as a weekend day (and is then no weekday's similar day)
    hol = program_baseline(w, end, STEP_S, start, start + 7200, NONE, holidays={date(2018, 7, 20)})
    assert hol is not None and date(2018, 7, 20) in hol.days


def test_the_day_of_ratio_adjustment_and_its_cap() -> None:
    caiso = PRESETS["caiso_10in10"]
    usual = np.mean([_day_load_w(d) for d in _weekdays_before(DAY, 10)])
    w, end = _history(datetime(2018, 7, 18, 14), day_of_w=1.1 * usual)  # 11:00-14:00 at 1.1x the days'
    b = program_baseline(w, end, STEP_S, START, END, caiso)
    assert b is not None and b.adjustment == pytest.approx(1.1) and b.baseline_w == pytest.approx(1.1 * usual)
    w, end = _history(datetime(2018, 7, 18, 14), day_of_w=1.6 * usual)
    capped = program_baseline(w, end, STEP_S, START, END, caiso)
    assert capped is not None and capped.adjustment == pytest.approx(1.2)


def test_the_additive_adjustment_adds_the_difference() -> None:
    pjm = PRESETS["pjm_high4of5"]
    top4 = _weekdays_before(DAY, 5)[:4]
    usual = np.mean([_day_load_w(d) for d in top4])
    w, end = _history(datetime(2018, 7, 18, 14), day_of_w=usual + 150e3)
    b = program_baseline(w, end, STEP_S, START, END, pjm)
    assert b is not None and b.adjustment == pytest.approx(150e3) and b.baseline_w == pytest.approx(usual + 150e3)
    # before the adjustment's hours are measured (a day ahead): unadjusted
    w, end = _history(datetime(2018, 7, 18, 9))
    early = program_baseline(w, end, STEP_S, START, END, pjm)
    assert early is not None and early.adjustment == 0.0 and early.baseline_w == pytest.approx(usual)


def test_too_little_history_gives_none() -> None:
    w, end = _history(datetime(2018, 7, 18, 14))
    assert program_baseline(w[-8 * 96:], end, STEP_S, START, END, NONE) is None  # 8 days: not 10 weekdays


@pytest.mark.parametrize(("kw", "field"), [({"top": 11}, "top"), ({"adjustment": "x"}, "adjustment"),
                                           ({"adjust_cap": 2.0}, "adjust_cap"), ({"days": 0}, "days")])
def test_a_bad_rule_names_its_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(BaselineRuleError, match=rf"baseline\.{field} "):
        BaselineRule(**kw)  # type: ignore[arg-type]


def test_the_step_holds_a_reduction_from_the_programs_baseline_in_the_backtest() -> None:
    """An event asking 300 kW off the program's baseline, replayed: its tally's baseline is the
    one ems/dr_baseline.py computes from the load series before it, and its target 300 kW under."""
    from ems.backtest.config import BacktestConfig

    cfg = BacktestConfig.model_validate({
        "battery_units": [{"id": "b1", "capacity_wh": 2.0e6, "rated_power_w": 1.0e6, "initial_soc": 0.9}],
        "policies": {"arbitrage": {"tariff": "unused.json", "hold_value_per_kwh_h": 0.0},
                     "demand_response": {"baseline": {"rule": "pjm_high4of5"}}}})
    tariff = Tariff(energy_periods=(EnergyPeriod(tiers=(EnergyTier(rate_per_kwh=0.20),)),))
    # 20 days of warm-up, then the event day (all at 900-s steps): each day's own flat load
    day0 = datetime(2018, 7, 18)
    warm_days = [(day0 - timedelta(days=20 - i)).date() for i in range(20)]
    warm = np.repeat([_day_load_w(d) for d in warm_days], 96)
    load = np.full(96, 1.2e6)
    load[14 * 4:15 * 4] = 0.8e6  # the hour before the event: what the site's own baseline would average
    ev = DrEvent("cut", float(START), float(END), reduction_w=3e5, price_per_kwh=0.5)
    trace = run_backtest(cfg, tariff, day0, 900, load, warmup_w=warm, dr_events=[ev])
    (result,) = trace.dr_results
    top4 = _weekdays_before(DAY, 5)[:4]
    usual = float(np.mean([_day_load_w(d) for d in top4]))
    # the symmetric additive adjustment: 11:00-14:00 of the event day (1.2 MW; the planner's history
    # is the load, whatever the battery did) against the same hours of the four days (their `usual`)
    expected = usual + (1.2e6 - usual)
    assert abs(usual - 1.2e6) > 1e5  # (the adjustment moved it)
    assert result.baseline_w == pytest.approx(expected, rel=1e-6)
    assert result.target_w == pytest.approx(expected - 3e5, rel=1e-6)
