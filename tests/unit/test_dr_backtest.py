"""`ems backtest --dr-events`: a CSV of demand-response events replayed through the same step."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from ems.backtest import BacktestInputError
from ems.backtest.config import load_backtest_config
from ems.backtest.dr_events import load_dr_events
from ems.backtest.run import BacktestOptions, run

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
LOAD = SHARED / "loads" / "sam_sample_load_8760h.csv"
URDB = SHARED / "tariffs" / "sam_urdbv7.json"
SITE = ROOT / "config" / "backtest-site.yaml"


def test_a_year_of_events_is_replayed_with_revenue(tmp_path) -> None:
    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    csv = tmp_path / "events.csv"
    csv.write_text("event_id,start,end,reduction_fraction,target_kw,price_per_kwh,price_per_kw\n"
                   "a,2018-07-02T15:00,2018-07-02T17:00,0.10,,0.50,0\n"
                   "b,2018-07-03T14:00,2018-07-03T15:00,,1500,0,2.0\n")
    cfg = load_backtest_config(SITE)
    opts = BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=datetime(2018, 7, 2), days=2,
                           step_s=60, foresight=False, peak_shaving_only=True)
    plain = run(cfg, opts)
    bt = run(cfg, BacktestOptions(**{**opts.__dict__, "dr_events_csv": csv}))
    dr = bt.result.run["dr"]
    assert dr["events"] == 2 and dr["revenue"] > 0 and dr["battery_kwh"] > 0
    a, b = dr["results"]
    assert a["event_id"] == "a" and a["target_w"] == pytest.approx(0.9 * a["baseline_w"])
    assert b["target_w"] == 1.5e6 and a["duration_s"] == 7200 and b["duration_s"] == 3600
    # the event's window imports less than the same run without it, and no more than the target
    w = slice(15 * 60, 17 * 60)
    assert bt.trace.grid_w[w].mean() < plain.trace.grid_w[w].mean()
    # the event's first step books the meter as read before the battery acted (a 60-s step here)
    assert a["minutes"] == 120 and a["minutes_at_target"] >= 118 and a["unreachable_s"] == 0
    assert dr["gpu_throttled_kwh"] == 0.0  # a backtest site has no racks: the battery alone
    assert np.isclose(dr["revenue"], a["revenue"] + b["revenue"])


@pytest.mark.parametrize(("text", "match"), [
    ("start,end,target_kw\n2018-07-02T15:00,,100\n", ":2: start and end"),
    ("start,end,target_kw\n2018-07-02T15:00,2018-07-02T14:00,100\n", ":2: .*end after"),
    ("start,end,target_kw,reduction_kw\n2018-07-02T15:00,2018-07-02T16:00,100,5\n", ":2: .*exactly one"),
    ("start,end,target_kw\n2018-07-02T15:00,2018-07-02T16:00,nan\n", "target_kw: must be a finite"),
    ("start,end,target_kw\n2018-07-02T15:00+02:00,2018-07-02T16:00,1\n", "without a zone"),
    ("start,end,target_kw\nyesterday,2018-07-02T16:00,1\n", "not an ISO 8601"),
    ("", "no events"),  # the run went on without a word of demand response
    ("start,end,target_kw\n", "no events"),
])
def test_a_bad_event_row_names_its_line(tmp_path, text, match) -> None:
    p = tmp_path / "e.csv"
    p.write_text(text)
    with pytest.raises(BacktestInputError, match=match):
        load_dr_events(p)


def test_events_that_all_miss_the_run_are_refused_with_its_span(tmp_path) -> None:
    """It replayed nothing and printed '0 events' without a word of why."""
    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    csv = tmp_path / "events.csv"
    csv.write_text("start,end,target_kw\n2018-07-01T15:00,2018-07-01T17:00,1500\n2018-07-05T00:00,2018-07-05T01:00,1500\n")
    cfg = load_backtest_config(SITE)
    opts = BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=datetime(2018, 7, 2), days=2,
                           step_s=900, foresight=False, peak_shaving_only=True, dr_events_csv=csv)
    with pytest.raises(BacktestInputError, match=r"none of its 2 events falls within the run "
                                                 r"\(2018-07-02 00:00 to 2018-07-04 00:00\)"):
        run(cfg, opts)
    # one that ends as the run starts misses it too; one inside it is replayed
    csv.write_text("start,end,target_kw\n2018-07-01T23:00,2018-07-02T00:00,1500\n")
    with pytest.raises(BacktestInputError, match="none of its 1 events"):
        run(cfg, opts)
    csv.write_text("start,end,target_kw\n2018-07-01T23:00,2018-07-02T00:00,1500\n2018-07-03T10:00,2018-07-03T11:00,1500\n")
    assert run(cfg, opts).result.run["dr"]["events"] == 1
