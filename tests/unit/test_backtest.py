"""A short backtest end to end (two weeks at 15 min), the series readers and the config.

Behaviour, not figures: the battery saves money against the bill without it, stays in
its SoC window and above the reserve, perfect foresight is an upper bound, and the
outputs are written.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from ems.backtest import BacktestInputError
from ems.backtest.config import load_backtest_config, parse_backtest_config
from ems.backtest.engine import known_ahead
from ems.backtest.report import html_report, write_outputs
from ems.backtest.results import MonthRow, annual_savings, charge_price
from ems.backtest.run import BacktestOptions, run
from ems.backtest.series import PowerSeries, read_power_csv, resample
from ems.model.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
LOAD = SHARED / "loads" / "sam_sample_load_8760h.csv"
URDB = SHARED / "tariffs" / "sam_urdbv7.json"
SITE = ROOT / "config" / "backtest-site.yaml"


@pytest.fixture(scope="module")
def two_weeks():
    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(SITE)
    # July: the load's highest weeks, where demand charges bind; June seeds the history
    opts = BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=datetime(2018, 7, 2), days=14)
    return cfg, run(cfg, opts)


def test_the_battery_saves_and_foresight_bounds_it(two_weeks) -> None:
    _, bt = two_weeks
    t, pf = bt.result.total, bt.result.foresight
    assert t["savings"] > 0.0
    assert t["peak_with_kw"] < t["peak_without_kw"]
    assert pf is not None
    # the bound holds on what it optimises (bill - wear); 1 % for the LP's linearised tiers
    assert pf["net_savings"] >= t["net_savings"] - 0.01 * abs(pf["net_savings"])
    assert bt.trace.plans >= 14 * 24 and bt.trace.plan_failures == 0


@pytest.fixture(scope="module")
def over_a_month_end():
    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(SITE)
    opts = BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=datetime(2018, 6, 22), days=16)
    return run(cfg, opts)


def test_no_month_beats_its_bound_and_the_run_bound_holds_them_all(over_a_month_end) -> None:
    bt = over_a_month_end
    pf, months = bt.result.foresight, bt.result.months
    assert pf is not None and [m.month for m in months] == ["2018-06", "2018-07"]
    for m in months:
        assert m.foresight_net_savings is not None and m.share is not None
        # the live month is one of its bound's dispatches (the bill is linear here: one energy
        # and one demand tier per month at a MW site), so it can only tie or fall short
        assert m.net_savings <= m.foresight_net_savings + 1e-6 * abs(m.foresight_net_savings), m.month
        assert m.share <= 1.0 + 1e-6
    assert pf["max_month_share"] == max(m.share for m in months if m.share is not None)
    # the run's bound chooses the SoC at the month end itself: at least the months' bounds together
    assert pf["net_savings"] >= sum(m.foresight_net_savings or 0.0 for m in months) - 1e-6 * pf["net_savings"]
    assert bt.result.total["net_savings"] <= pf["net_savings"]


def test_the_rebuild_path_plans_the_same(two_weeks) -> None:
    cfg, _ = two_weeks
    arb = cfg.policies.arbitrage
    assert arb is not None and arb.reuse_lp
    rebuilt_cfg = cfg.model_copy(update={"policies": cfg.policies.model_copy(
        update={"arbitrage": arb.model_copy(update={"reuse_lp": False})})})
    opts = BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=datetime(2018, 7, 2), days=2,
                           foresight=False)
    reused, rebuilt = run(cfg, opts), run(rebuilt_cfg, opts)
    assert reused.trace.plans == rebuilt.trace.plans > 0
    # the same optima; where an LP has several, the two may pick different ones, so the
    # dispatch is compared as what it costs
    assert reused.result.total["savings"] == pytest.approx(rebuilt.result.total["savings"], rel=2e-3)
    assert 0 < reused.trace.solver_time_s <= reused.trace.plan_time_s


def test_known_load_ahead_lays_the_true_load_over_the_first_hours() -> None:
    net_w = np.arange(40, dtype=np.float64) * 1000.0  # 450-s steps, planned at 900 s: pairs averaged
    overlay = known_ahead(net_w, 1000.0, 450, 900.0, ahead_h=1.0)  # 4 plan steps
    forecast_w = np.full(10, -1.0)
    out = overlay(1000.0 + 2 * 450, forecast_w)
    assert out[:4].tolist() == [2500.0, 4500.0, 6500.0, 8500.0]  # means of net steps 2-3, 4-5, ...
    assert (out[4:] == -1.0).all() and (forecast_w == -1.0).all()  # the forecast beyond; the input untouched
    near_end = overlay(1000.0 + 36 * 450, forecast_w)  # two plan steps left in the series
    assert near_end[:2].tolist() == [36500.0, 38500.0] and (near_end[2:] == -1.0).all()
    # less than a plan step ahead (0.1 h of 15-min steps) rounded to none: the run was the plain one
    short = known_ahead(net_w, 1000.0, 450, 900.0, ahead_h=0.1)(1000.0, forecast_w)
    assert short[0] == 500.0 and (short[1:] == -1.0).all()
    # a run starting off the plan steps' grid: its first plan starts before the series, and the
    # plan steps wholly within it are still the true load (it overlaid nothing on that plan)
    early = overlay(1000.0 - 3 * 450, forecast_w)  # plan steps from net step -3: -3..-2, -1..0, 1..2, 3..4
    assert early[:2].tolist() == [-1.0, -1.0] and early[2:4].tolist() == [1500.0, 3500.0]


def test_a_planner_that_knows_the_load_ahead_saves_more(two_weeks) -> None:
    """The diagnostic prices a better forecast: the same two weeks with the true load 6 h
    ahead save more than on the forecast (July's peaks are what the forecast misses)."""
    cfg, bt = two_weeks
    opts = BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=datetime(2018, 7, 2), days=14,
                           foresight=False, known_load_ahead_h=6.0)
    known = run(cfg, opts)
    assert known.trace.plans == bt.trace.plans
    assert known.result.total["savings"] > bt.result.total["savings"]
    assert known.result.total["peak_with_kw"] <= bt.result.total["peak_with_kw"]


def test_known_load_ahead_is_checked_on_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "ems.cli", "backtest", "--config", str(SITE), "--load", str(LOAD),
           "--out", str(tmp_path), "--quiet", "--known-load-ahead-h"]
    for bad in ("0", "nan", "-3", "six"):
        done = subprocess.run([*cmd, bad], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 2 and "--known-load-ahead-h" in done.stderr and "Traceback" not in done.stderr


def test_known_load_ahead_without_a_planner_to_inform_is_refused(tmp_path: Path) -> None:
    """Off-grid, or peak shaving only, no arbitrage planner reads a forecast: the flag was
    ignored, and the run, the same as without it, read as 'knowing the load is worth nothing'."""
    import subprocess
    import sys

    offgrid = ROOT / "config" / "offgrid-site.yaml"
    for config, extra in ((offgrid, []), (SITE, ["--peak-shaving-only"])):
        cmd = [sys.executable, "-m", "ems.cli", "backtest", "--config", str(config), "--load", str(LOAD),
               "--load-scale", "1000", "--days", "1", "--out", str(tmp_path), "--quiet", "--known-load-ahead-h", "6",
               *extra]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 2, (config, done.stdout, done.stderr)
        assert "--known-load-ahead-h" in done.stderr and "Traceback" not in done.stderr


def test_soc_stays_in_its_window_and_above_the_reserve(two_weeks) -> None:
    cfg, bt = two_weeks
    b, a = cfg.policies.battery, cfg.policies.arbitrage
    assert a is not None and a.reserve_soc > b.soc_min
    soc = bt.trace.soc
    # one step of full power is the most a 15-min period can overshoot the controller's window
    assert soc.min() >= a.reserve_soc - 1e-6
    assert soc.max() <= b.soc_max + 0.02
    assert np.all(np.abs(bt.trace.battery_w) <= 2e6 + 1.0)  # 2 units of 1 MW


def test_grid_is_load_minus_battery(two_weeks) -> None:
    _, bt = two_weeks
    np.testing.assert_allclose(bt.trace.grid_w, bt.trace.load_w - bt.trace.battery_w, atol=1e-6)


def test_savings_by_component_add_up(two_weeks) -> None:
    _, bt = two_weeks
    for m in bt.result.months:
        assert sum(m.savings_by_component.values()) == pytest.approx(m.savings, abs=0.01)


def test_a_short_run_scales_demand_savings_by_month_and_energy_by_time(two_weeks) -> None:
    # two weeks inside one billing month: that month's demand saving recurs 12 times a
    # year, not 26; the energy saving recurs with time
    _, bt = two_weeks
    (m,) = bt.result.months
    demand = sum(m.savings_by_component[c] for c in ("demand_tou", "demand_flat", "fixed"))
    rest = m.savings - demand
    assert demand > 0.0
    stored = bt.result.total["stored_energy_value"]  # the charge it ends with recurs with time too
    expected = demand * 12.0 + (rest + stored) * 365.0 / 14.0
    assert bt.result.financials is not None
    assert bt.result.financials.annual_savings == pytest.approx(expected, rel=1e-9)
    assert bt.result.financials.annual_savings < m.savings * 365.0 / 14.0 / 2.0  # by time it was 26x


def test_the_charge_the_battery_ends_with_is_valued_at_what_its_charge_cost(two_weeks) -> None:
    _, bt = two_weeks
    t, tr = bt.result.total, bt.trace
    stored_kwh = (float(tr.soc[-1]) - tr.soc_initial) * tr.capacity_wh / 1000.0
    assert abs(stored_kwh) > 100.0  # the run ends far from its start: the check below means something
    assert t["stored_energy_change_kwh"] == pytest.approx(stored_kwh, rel=1e-12)
    price = charge_price(bt.tariff, tr.start, tr.step_s, tr.battery_w, tr.load_w)
    assert 0.0 < price < 1.0
    # a stored kWh took 1 / 0.96 kWh at the meter (config/backtest-site.yaml's units)
    assert tr.charge_efficiency == pytest.approx(0.96)
    assert t["stored_energy_value"] == pytest.approx(stored_kwh * price / 0.96, rel=1e-12)


def test_a_year_is_not_scaled() -> None:
    rows = [MonthRow(month=f"2018-{k:02d}", bill_without=100.0, bill_with=80.0, savings=20.0,
                     savings_by_component={"energy": 5.0, "demand_tou": 10.0, "demand_flat": 4.0, "fixed": 0.0,
                                           "minimum": 1.0},
                     peak_without_kw=1.0, peak_with_kw=1.0, discharged_kwh=0.0, charged_kwh=0.0,
                     equivalent_full_cycles=0.0, foresight_savings=None) for k in range(1, 13)]
    assert annual_savings(rows, 1.0) == pytest.approx(240.0, rel=1e-12)


def test_outputs_are_written(two_weeks, tmp_path) -> None:
    _, bt = two_weeks
    files = write_outputs(tmp_path, bt, timeseries=True)
    names = {f.name for f in files}
    assert names == {"summary.json", "monthly.csv", "report.html", "timeseries.csv"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["total"]["savings"] == pytest.approx(bt.result.total["savings"])
    assert summary["financials"]["lcos_per_kwh"] > 0
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "Charge at the end against the start" in page
    assert summary["total"]["stored_energy_value"] == pytest.approx(bt.result.total["stored_energy_value"])
    assert len((tmp_path / "timeseries.csv").read_text().splitlines()) == bt.trace.grid_w.size + 1


@pytest.fixture(scope="module")
def peak_shaving_two_days():
    if not LOAD.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(SITE)
    return cfg, run(cfg, BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=datetime(2018, 7, 2),
                                         days=2, step_s=60, foresight=False, peak_shaving_only=True))


def test_peak_shaving_only_runs_without_a_planner(peak_shaving_two_days) -> None:
    cfg, bt = peak_shaving_two_days
    assert bt.trace.plans == 0 and bt.result.run["policies"] == "peak_shaving"
    assert bt.trace.grid_w.size == 2 * 1440
    ps = cfg.policies.peak_shaving
    assert ps is not None
    # the fixed cap holds while energy lasts; where it does not, the battery was at its floor
    over = bt.trace.grid_w > ps.grid_import_cap_w + 1.0
    assert np.all(bt.trace.soc[over] <= cfg.policies.battery.soc_min + 0.02)


# --- the report page ------------------------------------------------------------------------------
class _Tables(HTMLParser):
    """Each table's rows as lists of cell texts; <tfoot> rows marked."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[tuple[bool, list[str]]]] = []
        self._foot = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tfoot":
            self._foot = True
        elif tag == "tr":
            self.tables[-1].append((self._foot, []))
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tfoot":
            self._foot = False
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1][1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _tables(page: str) -> list[list[tuple[bool, list[str]]]]:
    p = _Tables()
    p.feed(page)
    return p.tables


def test_the_report_is_one_self_contained_page(two_weeks) -> None:
    _, bt = two_weeks
    page = html_report(bt)
    # nothing to fetch: no URL at all (not even the SVG namespaces), no script, no external style or font
    for needle in ("http://", "https://", "<script", "src=", "<link", "@import"):
        assert needle not in page, needle
    assert not re.search(r"url\((?!#)", page)  # clip paths refer to the page itself
    assert page.count("<svg") >= 4  # the week, savings, peaks, components (and the cash flows)
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # charts on one page never share a marker or clip-path id


def test_the_report_reads_like_a_report(two_weeks) -> None:
    cfg, bt = two_weeks
    page = html_report(bt)
    title = re.search(r"<title>(.*?)</title>", page)
    assert title is not None and cfg.site in title.group(1) and "2018" in title.group(1)
    # readable names, months as "Jul 2018", the currency in the headers
    assert "TOU demand charge" in page and "demand_tou" not in page
    assert ">Jul 2018<" in page and "2018-07" not in page
    assert "Savings (USD)" in page
    # the monthly table ends with a totals row that adds the months up
    monthly = next(t for t in _tables(page) if t[0][1][0] == "Month" and "Savings (USD)" in t[0][1])
    foot, total = monthly[-1]
    assert foot and total[0] == "Total"
    col = monthly[0][1].index("Savings (USD)")
    assert total[col] == f"{sum(m.savings for m in bt.result.months):,.0f}"
    # the tick labels: SoC in % at quarters, no scientific notation anywhere
    ticks = set(re.findall(r"<text[^>]*>([^<]*)</text>", page))
    assert {"0", "25", "50", "75", "100"} <= ticks
    assert not [t for t in ticks if re.search(r"\de[+-]?\d", t)]


def test_the_report_states_the_economics_inputs_and_why_npv_and_payback_differ(two_weeks) -> None:
    cfg, bt = two_weeks
    page = html_report(bt)
    e = cfg.economics
    assert e is not None
    for shown in (f"USD {e.capex:,.0f}", f"USD {e.om_per_year:,.0f} per year", f"{100 * e.discount_rate:.1f} %",
                  f"{e.lifetime_years} years", f"{100 * e.degradation_per_year:.1f} % per year",
                  f"USD {e.end_of_life_cost:,.0f}"):
        assert shown in page, shown
    for result in ("Simple payback", "NPV", "IRR", "LCOS"):
        assert result in page
    assert "extrapolated" in page  # two weeks stand in for a year, and the page says so


def test_a_report_without_foresight_or_economics_says_what_is_missing(peak_shaving_two_days) -> None:
    _, bt = peak_shaving_two_days
    bt = dataclasses.replace(bt, setup=dataclasses.replace(bt.setup, economics=None),
                             result=dataclasses.replace(bt.result, financials=None))
    page = html_report(bt)
    assert "peak shaving only" in page and "Perfect foresight." not in page
    assert "no payback, NPV, IRR or LCOS" in page


# --- series -----------------------------------------------------------------------------------
def test_sam_layout_is_a_year_of_hours_from_2018(tmp_path) -> None:
    f = tmp_path / "load.csv"
    f.write_text("Exported Data (8760)\n" + "\n".join(["1.5"] * 8760) + "\n")
    s = read_power_csv(f, scale=2.0)
    assert (s.start, s.step_s, s.values_w.size) == (datetime(2018, 1, 1), 3600, 8760)
    assert s.values_w[0] == pytest.approx(3000.0)  # 1.5 kW x 2, in W


def test_timestamped_layout(tmp_path) -> None:
    f = tmp_path / "pv.csv"
    f.write_text("timestamp,kw\n2025-06-01T00:00,0\n2025-06-01T00:15,2.5\n2025-06-01T00:30,5\n")
    s = read_power_csv(f)
    assert (s.start, s.step_s) == (datetime(2025, 6, 1), 900)
    np.testing.assert_allclose(s.values_w, [0, 2500, 5000])
    f.write_text("timestamp,kw\n2025-06-01T00:00,0\n2025-06-01T00:15,2.5\n2025-06-01T01:00,5\n")
    with pytest.raises(BacktestInputError, match="constant step"):
        read_power_csv(f)


@pytest.mark.parametrize(("rows", "says"), [
    (["00:00", "01:00", "02:00", "05:00", "06:00"], r":5: .*2018-01-01 05:00:00 is 10800 s after the row before, "
                                                    r"not 3600 s"),
    (["00:00", "01:00", "01:00", "02:00"], r":4: .*2018-01-01 01:00:00 repeats"),
    (["00:00", "01:00", "02:00", "00:30"], r":5: .*2018-01-01 00:30:00 goes back"),
])
def test_a_gap_a_repeat_or_a_step_back_names_its_line(tmp_path: Path, rows: list[str], says: str) -> None:
    """It said only "timestamps must increase at a constant step": in 8,760 rows, which?"""
    f = tmp_path / "load.csv"
    f.write_text("timestamp,kW\n" + "".join(f"2018-01-01T{r},100\n" for r in rows))
    with pytest.raises(BacktestInputError, match="load.csv" + says):
        read_power_csv(f)


def test_days_past_the_series_and_a_start_after_it_are_named(tmp_path: Path) -> None:
    """--days longer than the series ran what there was (2 h for --days 3) and the summary read
    as the days asked for; a --start after the end said "no steps from the start"."""
    from ems.backtest.run import load_series

    load = tmp_path / "load.csv"
    load.write_text("".join(f"2018-01-01T{h:02d}:00:00,{100 + h}\n" for h in range(24)))
    with pytest.raises(BacktestInputError, match=r"--days 3: the load series has 1 days from 2018-01-01 00:00"):
        load_series(BacktestOptions(load_csv=load, days=3), 3600)
    with pytest.raises(BacktestInputError, match=r"--start 2018-01-05 00:00: not before the end .*2018-01-02 00:00"):
        load_series(BacktestOptions(load_csv=load, start=datetime(2018, 1, 5)), 3600)
    assert load_series(BacktestOptions(load_csv=load, days=0.5), 3600)[3].size == 12


def test_a_pv_series_that_falls_short_or_has_the_wrong_sign_is_named(tmp_path: Path) -> None:
    """A PV file shorter than the run said "the series ... does not cover" (the load's or the
    PV's?); one signed as export (< 0) ran, billed as more load, where `ems size` refuses it."""
    from ems.backtest.run import load_series

    load, pv = tmp_path / "load.csv", tmp_path / "pv.csv"
    load.write_text("".join(f"2018-01-0{d}T{h:02d}:00:00,100\n" for d in (1, 2) for h in range(24)))
    pv.write_text("".join(f"2018-01-01T{h:02d}:00:00,10\n" for h in range(24)))
    with pytest.raises(BacktestInputError, match=rf"{pv}: the PV series \(2018-01-01 00:00 \.\. 2018-01-02 00:00\) "
                                                 r"does not cover 48 steps"):
        load_series(BacktestOptions(load_csv=load, pv_csv=pv), 3600)
    with pytest.raises(BacktestInputError, match=rf"{load}: the load series .* does not cover"):
        load_series(BacktestOptions(load_csv=load, start=datetime(2017, 12, 31)), 3600)
    pv.write_text("".join(f"2018-01-0{d}T{h:02d}:00:00,-10\n" for d in (1, 2) for h in range(24)))
    with pytest.raises(BacktestInputError, match=rf"{pv}: the PV series sums to less than 0"):
        load_series(BacktestOptions(load_csv=load, pv_csv=pv), 3600)


def test_resample_holds_and_averages() -> None:
    s = PowerSeries(datetime(2018, 1, 1), 3600, np.array([1.0, 3.0]))
    np.testing.assert_allclose(resample(s, 900).values_w, [1, 1, 1, 1, 3, 3, 3, 3])
    np.testing.assert_allclose(resample(PowerSeries(s.start, 900, np.arange(8.0)), 3600).values_w, [1.5, 5.5])
    with pytest.raises(BacktestInputError):
        resample(s, 7 * 60)


# --- config -----------------------------------------------------------------------------------
def _site(**policies) -> dict:
    base = load_backtest_config(SITE).model_dump(mode="json", exclude_none=True)
    base["policies"] = {"battery": {"soc_min": 0.1, "soc_max": 0.95}, **policies}
    return base


@pytest.mark.parametrize(("arbitrage", "field"), [
    ({"tariff": "t.json", "step_s": 420}, "step_s must divide 3600"),
    ({"tariff": "t.json", "timezone": "Mars/Olympus"}, "timezone"),
    ({"tariff": "t.json", "wear_cost_per_kwh": -1}, "wear_cost_per_kwh"),
    ({"tariff": "t.json", "wear_depth_cost_per_kwh": [0.05, 0.01]}, "wear_depth_cost_per_kwh: .*not fall"),
    ({"tariff": "t.json", "wear_depth_cost_per_kwh": [0.01] * 11}, "wear_depth_cost_per_kwh"),
    ({"tariff": "t.json", "typo": 1}, "typo"),
])
def test_arbitrage_config_errors_name_the_field(arbitrage, field) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_backtest_config(_site(arbitrage=arbitrage))


def test_economics_config() -> None:
    data = _site()
    data["economics"] = {"capex": 100.0, "discount_rate": 1.5}
    with pytest.raises(ConfigError, match=r"economics\.discount_rate"):
        parse_backtest_config(data)
    data["economics"] = {"capex": 100.0}
    assert parse_backtest_config(data).economics is not None


def test_a_backtest_file_needs_no_endpoints_or_racks_and_a_live_site_file_works_too() -> None:
    cfg = load_backtest_config(SITE)
    assert [u.id for u in cfg.battery_units] == ["bess-1", "bess-2"]
    demo = load_backtest_config(ROOT / "config" / "demo-site.yaml")  # a live site file
    assert [u.id for u in demo.battery_units] == ["bess-1", "bess-2"]
    assert demo.battery_units[1].capacity_wh == 4_000_000  # from its simulation.bess
    with pytest.raises(ConfigError, match="battery_units"):
        parse_backtest_config({"site": "x", "policies": {}})


def test_prices_that_do_not_cover_the_run_end_before_it_with_what_they_cover(tmp_path: Path) -> None:
    """They ran the year, then the bill raised BillInputError with a traceback (a weak-grid
    site's import bill too)."""
    import subprocess
    import sys

    prices = tmp_path / "prices.csv"
    prices.write_text("timestamp,price_per_kwh\n2018-03-01T00:00:00,0.1\n2018-03-01T01:00:00,0.2\n")
    quarter = tmp_path / "quarter.csv"  # 15-min prices over the run, for a run at 1 h
    quarter.write_text("timestamp,price_per_kwh\n" + "\n".join(
        f"2018-01-01T{h:02d}:{m:02d}:00,0.1" for h in range(24) for m in (0, 15, 30, 45)) + "\n")
    weak = tmp_path / "weak.yaml"
    weak.write_text((ROOT / "config" / "offgrid-site.yaml").read_text().replace(
        "import_limit_w: null", "import_limit_w: 1000000").replace("mode: off_grid", "mode: weak_grid"))
    base = [sys.executable, "-m", "ems.cli", "backtest", "--load", str(LOAD), "--load-scale", "1000", "--days", "1",
            "--out", str(tmp_path / "out"), "--quiet"]
    for extra, says in (
            (["--config", str(SITE), "--prices", str(prices)], "the prices cover 2018-03-01 00:00 to 2018-03-01 02:00"),
            (["--config", str(weak), "--tariff", str(URDB), "--prices", str(prices)], "the prices cover 2018-03-01"),
            (["--config", str(SITE), "--prices", str(quarter), "--step-s", "3600"], "(900 s) must be a multiple")):
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("step_s", "days"), [(-300, None), (0, None), (300, float("nan")), (300, float("inf")),
                                              (300, -1.0)])
def test_a_step_or_a_span_that_is_not_a_positive_number_is_refused(tmp_path: Path, step_s: int,
                                                                   days: float | None) -> None:
    """-300 passed `3600 % step` (Python's modulo) and ended in a numpy traceback; --days nan or
    inf in one from round()."""
    from ems.backtest.run import load_series

    load = tmp_path / "load.csv"
    load.write_text("".join(f"2018-01-01T{h:02d}:00:00,{100 + h}\n" for h in range(24)))
    opts = BacktestOptions(load_csv=load, step_s=step_s, days=days)
    with pytest.raises(BacktestInputError, match=r"--step-s|--days"):
        load_series(opts, step_s)


def test_the_cli_refuses_a_step_that_is_not_a_positive_whole_number(capsys: pytest.CaptureFixture[str]) -> None:
    from ems.cli import main

    for command in (["backtest", "--config", "c.yaml", "--load", "l.csv"],
                    ["size", "--config", "c.yaml", "--load", "l.csv", "--energy-kwh", "1", "--power-kw", "1"]):
        for step in ("0", "-300"):
            with pytest.raises(SystemExit) as exc:
                main([*command, "--step-s", step])
            assert exc.value.code == 2 and "--step-s" in capsys.readouterr().err


def test_the_share_captured_credits_the_run_and_its_bound_each_with_the_charge_it_kept(two_weeks) -> None:
    """The bound's end pin is the lower of the start and the run's end: a run that ends fuller
    (this one, 0.5 -> 0.95) paid for energy a bound need not keep. Each is credited with the
    charge it kept at the same price, and the bound values a kWh kept at that price in its own
    objective, so it maximises what it is judged on: before, it ended at the pin (1,800 kWh less
    than the run) and the run's credited share could in principle pass 100 %."""
    _, bt = two_weeks
    t, pf, tr, fs = bt.result.total, bt.result.foresight, bt.trace, bt.foresight
    assert pf is not None and fs is not None
    cap_kwh = tr.capacity_wh / 1000.0
    run_kwh, bound_kwh = (float(tr.soc[-1]) - tr.soc_initial) * cap_kwh, (float(fs.soc[-1]) - tr.soc_initial) * cap_kwh
    assert run_kwh > 1000.0  # the run ends far fuller than it started: the checks below mean something
    assert bound_kwh == pytest.approx(run_kwh, abs=1.0)  # the kept charge is worth its price: the bound keeps it too
    price = t["stored_energy_value"] / t["stored_energy_change_kwh"]
    assert pf["stored_energy_change_kwh"] == pytest.approx(bound_kwh, abs=1e-6)
    assert pf["stored_energy_value"] == pytest.approx(bound_kwh * price, abs=1e-6)
    kept, bound_kept = t["stored_energy_value"], bound_kwh * price
    assert pf["share_captured"] == pytest.approx((t["savings"] + kept) / (pf["savings"] + bound_kept), rel=1e-12)
    assert pf["share_captured_net"] == pytest.approx(
        (t["net_savings"] + kept) / (pf["net_savings"] + bound_kept), rel=1e-12)
    assert pf["net_savings"] + bound_kept >= t["net_savings"] + kept
    # each month likewise, against its own bound: credited with what each kept, at most 100 %
    for m in bt.result.months:
        assert m.foresight_stored_value is not None and m.share is not None and m.share <= 1.0 + 1e-9


@pytest.mark.parametrize(("start", "days"), [
    (datetime(2018, 6, 29), 2 + 600 / 86400),  # two 5-min steps into July
    (datetime(2018, 6, 30, 0, 5), 1.0),  # from :05, not a quarter hour
])
def test_a_run_whose_steps_do_not_fill_the_bounds_quarter_hours_gets_its_bound_at_its_own_step(start, days) -> None:
    """The bound runs at 15 min where a run at 5 min fills whole quarter hours from a quarter
    hour on; a run ending two steps into a month raised ValueError (its bound had a month less),
    one starting at :05 had its bound's months shifted by up to a quarter hour."""
    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    bt = run(load_backtest_config(SITE), BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=start,
                                                         days=days, step_s=300))
    assert bt.foresight is not None and bt.foresight.step_s == 300
    assert bt.foresight.month_end_soc and len(bt.foresight.month_end_soc) == len(bt.result.months)
    assert all(m.share is None or m.share <= 1.0 + 1e-9 for m in bt.result.months)
