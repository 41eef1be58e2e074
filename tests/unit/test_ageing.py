"""LFP ageing (ems/backtest/ageing.py): the port against BLAST-Lite's own output, and what it
does to the money."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ems.backtest.ageing import daily_dod, simulate_years, wear_cost_per_kwh
from ems.backtest.financials import Economics, financials

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "data" / "blast_lite_lfp_reference.json"


def _recorder():  # type: ignore[no-untyped-def]
    script = ROOT / "scripts" / "record_blast_reference.py"
    spec = importlib.util.spec_from_file_location("record_blast_reference", script)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["rest_50_25C", "rest_90_35C", "daily_20_90_25C", "daily_50_70_25C",
                                  "daily_10_95_35C"])
def test_the_port_matches_blast_lite_within_a_third_of_a_point(name: str) -> None:
    rec = _recorder()
    soc, temp = rec.reference_profiles()[name]
    want = json.loads(REFERENCE.read_text())["profiles"][name]["q_at_year"]
    path = simulate_years(soc, rec.STEP_S, 10, temp)
    for year in (1, 5, 10):
        assert path.soh_by_year[year - 1] == pytest.approx(want[str(year)], abs=0.0035), year
    assert path.soh_10y == path.soh_by_year[9]


def test_heat_high_soc_and_deep_cycles_age_faster() -> None:
    rec = _recorder()
    profiles = rec.reference_profiles()
    soh = {k: simulate_years(soc, rec.STEP_S, 10, temp).soh_10y for k, (soc, temp) in profiles.items()}
    assert soh["rest_90_35C"] < soh["rest_50_25C"]
    assert soh["daily_20_90_25C"] < soh["daily_50_70_25C"] < soh["rest_50_25C"]
    kw = {"c_rate": 0.25, "temperature_c": 25.0, "efc_per_year": 300.0, "lifetime_years": 15.0,
          "replacement_cost_per_kwh": 300.0, "end_of_life_soh": 0.7}
    shallow, deep = wear_cost_per_kwh(0.2, **kw), wear_cost_per_kwh(0.9, **kw)
    assert 0.0 < shallow < deep


def test_a_battery_below_end_of_life_is_replaced_and_savings_follow_capacity() -> None:
    rec = _recorder()
    soc, _ = rec.reference_profiles()["daily_10_95_35C"]
    path = simulate_years(soc, rec.STEP_S, 15, 45.0, end_of_life_soh=0.8)
    assert path.replacement_years, "hot deep cycling reaches 80 % within 15 years"
    y = path.replacement_years[0]
    assert path.soh_before_replacement[y - 1] < 0.8 and path.soh_by_year[y - 1] == 1.0
    cap = path.capacity_by_year()
    assert len(cap) == 15 and cap[0] < 1.0 and cap[y] > cap[y - 1]  # the year after is a new battery's
    e = Economics(capex=1e6, om_per_year=0.0, discount_rate=0.05, lifetime_years=15, degradation_per_year=0.0,
                  end_of_life_cost=0.0, capacity_by_year=cap, replacement_cost=6e5,
                  replacement_years=path.replacement_years)
    flat = Economics(capex=1e6, om_per_year=0.0, discount_rate=0.05, lifetime_years=15, degradation_per_year=0.0,
                     end_of_life_cost=0.0)
    fin, fin_flat = financials(e, 2e5, 1e6, 9e5, 0.05), financials(flat, 2e5, 1e6, 9e5, 0.05)
    assert fin.cash_flows[y] == pytest.approx(2e5 * cap[y - 1] / cap[0] - 6e5)  # year 1 ran on a new battery
    assert fin.npv < fin_flat.npv
    assert fin.lcos_per_kwh is not None and fin_flat.lcos_per_kwh is not None
    assert fin.lcos_per_kwh > fin_flat.lcos_per_kwh


def test_daily_dod_is_each_days_swing() -> None:
    soc = np.concatenate([np.linspace(0.2, 0.9, 96), np.full(96, 0.5)])
    assert daily_dod(soc, 900.0).tolist() == pytest.approx([0.7, 0.0])


def test_a_backtest_with_ageing_reports_soh_and_prices_the_years_on_it() -> None:
    from datetime import datetime

    from ems.backtest.config import load_backtest_config, parse_backtest_config
    from ems.backtest.run import BacktestOptions, run

    shared = ROOT.parent / "shared" / "data"
    load, urdb = shared / "loads" / "sam_sample_load_8760h.csv", shared / "tariffs" / "sam_urdbv7.json"
    if not load.exists() or not urdb.exists():
        pytest.skip("shared data not present")
    data = load_backtest_config(ROOT / "config" / "backtest-site.yaml").model_dump(mode="json", exclude_none=True)
    data["economics"]["ageing"] = {"temperature_c": 30.0, "end_of_life_soh": 0.7}
    cfg = parse_backtest_config(data)
    opts = BacktestOptions(load_csv=load, tariff=urdb, load_scale=1000.0, start=datetime(2018, 7, 2), days=4,
                           foresight=False)
    bt = run(cfg, opts)
    a, fin = bt.result.ageing, bt.result.financials
    assert a is not None and fin is not None
    assert a["year_tiled_from_shorter_run"] is True
    assert 0.5 < a["soh_10y"] < 0.99 and a["efc_per_year"] > 10
    assert len(a["soh_by_year"]) == cfg.economics.lifetime_years  # type: ignore[union-attr]
    wear = list(a["wear_cost_per_kwh_by_dod"].values())
    assert wear == sorted(wear) and wear[0] > 0  # deeper costs more per kWh
    # the planner's segments (4 over the 10-95 % window): each at least the one above, the
    # deepest dearer than the average cost of a full-window cycle
    seg = a["wear_depth_cost_per_kwh"]
    assert len(seg) == 4 and seg == sorted(seg) and seg[-1] > seg[0] > 0
    assert seg[-1] > a["wear_cost_per_kwh_by_dod"]["0.8"]
    # year 2's savings are year 1's times the capacity the model leaves, not a flat 2 %
    keep2 = fin.cash_flows[2] + cfg.economics.om_per_year  # type: ignore[union-attr]
    keep1 = fin.cash_flows[1] + cfg.economics.om_per_year  # type: ignore[union-attr]
    assert keep2 / keep1 == pytest.approx(
        (a["soh_by_year"][0] + a["soh_before_replacement"][1]) / (1.0 + a["soh_by_year"][0]), rel=1e-9)
    assert keep2 / keep1 != pytest.approx(0.98, abs=1e-4)
