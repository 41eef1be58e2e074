"""The dashboard's history: samples of period results, coarse samples for the longer ranges,
a window merged down to a number of points, and no rack load made of stale racks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ems.envelope import EnvelopeParams
from ems.operator.history import History, merge_samples
from ems.period import StepParams, StepState, step
from ems.published import PeriodResult
from policies.battery_limits import BatteryLimitsParams
from policies.grid_ramp import GridRampParams
from policies.peak_shaving import PeakShavingParams
from tests.snapshots import racks, snapshot, unit

PARAMS = StepParams(limits=BatteryLimitsParams(0.1, 0.95), envelope=EnvelopeParams(0.1, 0.95),
                    peak=PeakShavingParams(1_000_000, 500_000))


def result(n: int, grid_w: float = 800_000, stale_racks: int = 0) -> PeriodResult:
    snap = snapshot(grid_w, (unit("u1", soc=0.5), unit("u2", soc=0.7)), now_s=float(n))
    if stale_racks:
        r = racks()
        age = r.age_s.copy()
        age[:stale_racks] = np.inf  # never reported
        snap = replace(snap, racks=replace(r, age_s=age))
    return PeriodResult(n, snap, step(snap, PARAMS, StepState()), 0, 0.001, 0.0)


def fed(n: int, **kw: Any) -> History:
    h = History(sample_every_s=0.0, **kw)
    for i in range(n):
        h.on_period(result(i, grid_w=800_000 + 1000 * (i % 7)), 1_000_000)
    return h


def test_rack_load_is_a_gap_while_any_rack_is_stale_never_a_partial_sum() -> None:
    h = History(sample_every_s=0.0)
    h.on_period(result(0, stale_racks=4), 1e6)  # nothing reported yet (the controller just started)
    h.on_period(result(1, stale_racks=1), 1e6)  # three of four: their sum would read one rack as 0 W
    h.on_period(result(2), 1e6)
    got = [(s["racks_w"], s["racks_min_w"], s["racks_max_w"]) for s in h.samples]
    assert got == [(None, None, None), (None, None, None), (80_000.0, 80_000.0, 80_000.0)]


def test_coarse_samples_keep_the_longer_ranges_and_a_window_joins_them_to_the_recent_ones() -> None:
    h = fed(300, keep=20, coarse_s=30.0)
    assert len(h.samples) == 20 and 8 <= len(h.coarse) <= 10
    everything = h.window()
    ts = [s["ts"] for s in everything]
    assert ts == sorted(set(ts))  # oldest first, nothing twice
    assert ts[-20:] == [s["ts"] for s in h.samples]  # the recent ones as they are
    assert ts[0] < h.samples[0]["ts"] - 200  # and the coarse ones reach back
    # a coarse sample: the means of its periods' values, the extremes of their extremes
    c = h.coarse[1]
    assert c["periods"] == 30 and 800_000 < c["grid_w"] < 806_000 and c["grid_max_w"] == 806_000
    assert c["units"] == {"u1": {"soc": 0.5, "power_w": 0.0}, "u2": {"soc": 0.7, "power_w": 0.0}}
    last = h.window(range_s=60)
    assert last[0]["ts"] >= ts[-1] - 60 and last[-1] == h.samples[-1]


def test_a_window_is_merged_down_to_the_points_asked() -> None:
    h = fed(100, keep=200)
    merged = h.window(points=10)
    assert len(merged) == 10
    assert merged[-1]["seq"] == h.seq and merged[-1]["ts"] == h.samples[-1]["ts"]
    assert sum(s["periods"] for s in merged) == 100
    assert max(s["grid_max_w"] for s in merged) == 806_000


def test_merging_skips_gaps_and_keeps_a_gap_that_is_all_gap() -> None:
    a = {"seq": 1, "ts": 1.0, "grid_w": None, "grid_max_w": None, "cap_w": 1.0, "site_load_w": 5.0,
         "racks_w": None, "racks_min_w": None, "racks_max_w": None, "battery_w": 1.0, "setpoint_w": 1.0,
         "units": {"u1": {"soc": None, "power_w": 2.0}}, "reason": "A", "periods": 2}
    b = {**a, "seq": 2, "ts": 2.0, "grid_w": 10.0, "grid_max_w": 12.0, "site_load_w": 7.0, "cap_w": None,
         "units": {"u1": {"soc": 0.5, "power_w": 4.0}}, "reason": "B", "periods": 3}
    m = merge_samples([a, b])
    assert (m["seq"], m["ts"], m["reason"], m["periods"], m["cap_w"]) == (2, 2.0, "B", 5, None)
    assert (m["grid_w"], m["grid_max_w"], m["site_load_w"], m["racks_w"]) == (10.0, 12.0, 6.0, None)
    assert m["units"] == {"u1": {"soc": 0.5, "power_w": 3.0}}


# --- what the smoothing view draws: the ramp's allowed range, the band RMS, a ride-through ---------
RAMP = replace(PARAMS, grid_ramp=GridRampParams(limit_w=75_000, window_s=60.0))


def ramped(loads_w: list[float], params: StepParams = RAMP) -> list[PeriodResult]:
    """Periods a second apart on a site whose load is `loads_w` (the battery at 0 W before each),
    the step's state carried from one to the next as the controller does."""
    out, state = [], StepState()
    for n, load_w in enumerate(loads_w):
        snap = snapshot(load_w, (unit("u1", soc=0.5), unit("u2", soc=0.7)), now_s=float(n))
        res = step(snap, params, state)
        state = res.state
        out.append(PeriodResult(n, snap, res, 0, 0.001, 0.0))
    return out


def test_a_sample_carries_the_grid_import_the_ramp_limit_allowed_and_the_grid_stays_in_it() -> None:
    h = History(sample_every_s=0.0)
    periods = ramped([800_000.0] * 5 + [1_000_000.0])  # a job starts: +200 kW in one period
    for r in periods:
        h.on_period(r, 1_000_000)
    first, *_, before, jump = h.samples
    assert (first["ramp_lo_w"], first["ramp_hi_w"]) == (None, None)  # no window yet: nothing allowed or drawn
    assert (before["ramp_lo_w"], before["ramp_hi_w"]) == (725_000.0, 875_000.0)  # 800 kW +- the limit
    assert (jump["ramp_lo_w"], jump["ramp_hi_w"]) == (725_000.0, 875_000.0)
    left_w = 1_000_000.0 - periods[-1].step.setpoint_w  # the grid the step left: the battery took the rest
    assert periods[-1].step.reason.code == "RAMP_LIMITED" and left_w == 875_000.0
    assert jump["reason"] == "RAMP_LIMITED"


def test_a_sample_over_several_periods_keeps_the_widest_allowed_range() -> None:
    h = History(sample_every_s=3600.0)  # one sample: the first period's; the rest go into the next
    for r in ramped([800_000.0, 800_000.0, 850_000.0, 900_000.0]):
        h.on_period(r, 1_000_000)
    h.sample_every_s, h._next_real_s = 0.0, 0.0
    h.on_period(ramped([800_000.0] * 5)[-1], 1_000_000)
    s = h.samples[-1]
    assert s["periods"] == 4
    # after 800, 800 it allowed 725-875 kW; after 800, 800, 850 it allowed 775-875 (and held 900 to 875)
    assert (s["ramp_lo_w"], s["ramp_hi_w"]) == (725_000.0, 875_000.0)


def test_without_a_ramp_limit_or_smoothing_a_sample_has_nothing_to_draw() -> None:
    h = History(sample_every_s=0.0)
    for r in ramped([800_000.0, 1_000_000.0], params=PARAMS):
        h.on_period(r, 1_000_000)
    for s in h.samples:
        assert {k: s[k] for k in ("ramp_lo_w", "ramp_hi_w", "grid_avg_w", "grid_rms_w", "load_rms_w",
                                  "rms_limit_w", "riding_through")} == dict.fromkeys(
            ("ramp_lo_w", "ramp_hi_w", "grid_avg_w", "grid_rms_w", "load_rms_w", "rms_limit_w", "riding_through"))


def test_a_sample_carries_the_band_rms_with_and_without_the_battery_and_the_meters_average() -> None:
    r = ramped([800_000.0])[0]
    snap = replace(r.snapshot, meter=replace(r.snapshot.meter, average_w=790_000.0))
    sm = {"grid_band_rms_w": 4_100.0, "load_band_rms_w": 61_000.0, "oscillation_limit_w_rms": 32_000.0}
    h = History(sample_every_s=0.0)
    h.on_period(replace(r, snapshot=snap, status={"smoothing": sm}), 1_000_000)
    s = h.samples[-1]
    assert (s["grid_rms_w"], s["load_rms_w"], s["rms_limit_w"], s["grid_avg_w"]) == (4_100.0, 61_000.0, 32_000.0,
                                                                                      790_000.0)


def test_a_ride_through_shows_on_the_sample_that_covers_it_and_survives_merging() -> None:
    h = History(sample_every_s=3600.0)
    r0, r1, r2 = ramped([800_000.0] * 3)
    h.on_period(r0, 1e6)
    h.on_period(replace(r1, snapshot=replace(r1.snapshot, riding_through="voltage")), 1e6)
    h.sample_every_s, h._next_real_s = 0.0, 0.0
    h.on_period(r2, 1e6)  # the dip is over by this period: the sample still covers it
    first, second = h.samples
    assert first["riding_through"] is None and second["riding_through"] == "voltage"
    merged = merge_samples([first, second, {**first, "seq": 9, "ts": 9.0}])
    assert merged["riding_through"] == "voltage"


def test_merging_keeps_the_widest_allowed_range_and_averages_the_band_rms() -> None:
    base = {"seq": 1, "ts": 1.0, "grid_w": 1.0, "grid_max_w": 1.0, "cap_w": None, "site_load_w": 1.0,
            "racks_w": None, "racks_min_w": None, "racks_max_w": None, "battery_w": 0.0, "setpoint_w": 0.0,
            "units": {}, "reason": "RAMP_LIMITED", "periods": 1, "grid_avg_w": 10.0, "ramp_lo_w": 5.0,
            "ramp_hi_w": 15.0, "grid_rms_w": 2.0, "load_rms_w": 20.0, "rms_limit_w": 8.0, "riding_through": None}
    m = merge_samples([base, {**base, "seq": 2, "ts": 2.0, "grid_avg_w": 14.0, "ramp_lo_w": None, "ramp_hi_w": None,
                              "grid_rms_w": 4.0, "load_rms_w": 30.0},
                       {**base, "seq": 3, "ts": 3.0, "ramp_lo_w": 9.0, "ramp_hi_w": 19.0}])
    assert (m["ramp_lo_w"], m["ramp_hi_w"]) == (5.0, 19.0)
    assert (m["grid_avg_w"], m["grid_rms_w"], m["load_rms_w"], m["rms_limit_w"]) == (11.3, 2.7, 23.3, 8.0)
