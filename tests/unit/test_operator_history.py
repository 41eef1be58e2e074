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
