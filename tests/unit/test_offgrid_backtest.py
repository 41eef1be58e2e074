"""The off-grid and weak-grid backtest: the live step against the plant, the account of
where power went, the diesel-only baseline and the comparison; the site file's section."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ems.backtest.config import load_backtest_config, parse_backtest_config
from ems.backtest.diesel_baseline import diesel_only, weak_grid_only
from ems.backtest.offgrid_report import MONTH_S
from ems.backtest.offgrid_run import run_series, with_battery_scale
from ems.microgrid_config import GensetConfig
from ems.model.errors import ConfigError
from ems.model.reasons import Reason
from ems.tariff import compute_bill
from policies.microgrid import Mode

ROOT = Path(__file__).resolve().parents[2]
MW = 1e6
STEP = 900
DAY = 86400 // STEP


def site(**microgrid: Any) -> dict[str, Any]:
    mg = {"mode": "off_grid", "gensets": [{"id": "g1", "rated_power_w": 1.5e6}, {"id": "g2", "rated_power_w": 1.5e6}],
          "diesel_price_per_l": 1.2, "genset_rental_per_month": 10000} | microgrid
    return {
        "battery_units": [{"id": "b1", "capacity_wh": 8e6, "rated_power_w": 2e6, "initial_soc": 0.8},
                          {"id": "b2", "capacity_wh": 8e6, "rated_power_w": 2e6, "initial_soc": 0.8}],
        "grid_connection": {"import_limit_w": None, "export_limit_w": 0},
        "microgrid": mg,
    }


def days_of_load(days: int, base_w: float = 1.5 * MW, swing_w: float = 0.5 * MW) -> tuple[np.ndarray, np.ndarray]:
    h = (np.arange(days * DAY) * STEP / 3600.0) % 24
    load = base_w + swing_w * np.sin(2 * np.pi * (h - 9) / 24)
    pv = 2.5 * MW * np.maximum(0.0, np.sin(np.pi * (h - 6) / 12))
    return load, pv


def test_an_off_grid_week_with_pv_and_two_gensets_serves_every_kwh_on_less_diesel() -> None:
    cfg = parse_backtest_config(site())
    load, pv = days_of_load(7)
    trace, r = run_series(cfg, datetime(2025, 6, 1), STEP, load, pv)
    assert r["unserved_kwh"] == pytest.approx(0.0, abs=1e-6)
    assert np.all(trace.grid_w == 0.0)
    assert 0 < r["diesel_litres"] < 0.6 * r["baseline_diesel_litres"]
    # the battery's own part is judged against the same trucks with the same PV
    assert r["baseline_diesel_litres"] > r["baseline_with_pv"]["fuel_l"] > r["diesel_litres"]
    assert r["battery_diesel_saved_litres"] == pytest.approx(r["baseline_with_pv"]["fuel_l"] - r["diesel_litres"])
    assert r["co2_saved_kg"] == pytest.approx(2.68 * r["diesel_saved_litres"])
    assert r["genset_starts"] >= 1 and r["site"]["pv_self_consumption"] > 0.5
    # each start and stop has its reason
    assert trace.microgrid is not None and set(trace.microgrid.events) <= {
        "GENSET_START_LOW_SOC", "GENSET_START_LOAD", "GENSET_STOP_SOC_RECOVERED", "GENSET_STOP_LOAD_FELL"}
    assert trace.soc.min() >= 0.1 - 1e-9


def test_a_design_too_small_shows_its_unserved_energy() -> None:
    cfg = parse_backtest_config(site(gensets=[]))
    load, _ = days_of_load(2)
    trace, r = run_series(cfg, datetime(2025, 6, 1), STEP, load, None)
    assert r["unserved_kwh"] > 1000.0
    assert Reason.UNSERVED_LOAD.value in set(trace.reason.tolist())


def test_a_bigger_battery_burns_no_more_diesel() -> None:
    cfg = parse_backtest_config(site())
    load, pv = days_of_load(7)
    litres = [run_series(with_battery_scale(cfg, k), datetime(2025, 6, 1), STEP, load, pv)[1]["diesel_litres"]
              for k in (0.5, 1.0, 2.0)]
    assert litres[0] >= litres[1] >= litres[2]


def test_on_a_weak_grid_import_stays_within_the_limit() -> None:
    data = site(mode="weak_grid")
    data["grid_connection"] = {"import_limit_w": 800e3, "export_limit_w": 0}
    cfg = parse_backtest_config(data)
    load, pv = days_of_load(5)
    trace, r = run_series(cfg, datetime(2025, 6, 1), STEP, load, pv)
    assert r["unserved_kwh"] == pytest.approx(0.0, abs=1e-6)
    assert trace.grid_w.max() <= 800e3 + 1e-6 and trace.grid_w.min() >= -1e-6
    assert r["site"]["grid_import_kwh"] > 0
    assert r["grid_bill"] is None  # no tariff: the import is not priced (the printout says so)


def test_on_a_weak_grid_the_gensets_run_in_parallel_and_cover_what_battery_and_import_cannot() -> None:
    # 300 kW of import against 2-3 MW of load: the battery (2 x 500 kW) and the capped import cannot
    # carry it, so gensets are staged in for power, in parallel with the grid; nothing unserved, the
    # import never beyond its limit
    data = site(mode="weak_grid")
    data["grid_connection"] = {"import_limit_w": 300e3, "export_limit_w": 0}
    for u in data["battery_units"]:
        u["rated_power_w"] = 500e3
    cfg = parse_backtest_config(data)
    load, _ = days_of_load(3, base_w=2.5 * MW, swing_w=0.5 * MW)
    trace, r = run_series(cfg, datetime(2025, 6, 1), STEP, load, None)
    m = trace.microgrid
    assert m is not None and m.events.get("GENSET_START_LOAD", 0) >= 1
    # a cold start: the first genset is started in the first step and gives nothing in it (its start
    # delay and warm-up); after that every kWh is served
    assert m.unserved_w[0] > 0 and np.all(m.unserved_w[1:] == 0.0)
    assert trace.grid_w.max() <= 300e3 + 1e-6
    # the grid gives its limit nearly all the time; the gensets carry what it and the battery cannot
    assert np.mean(trace.grid_w > 290e3) > 0.9
    assert np.all(m.genset_w[1:] + 1 * MW + 300e3 >= m.load_w[1:] - 1.0)
    assert r["site"]["grid_import_kwh"] == pytest.approx(np.sum(trace.grid_w) * STEP / 3.6e6, rel=1e-6)


TARIFF = ROOT.parent / "shared" / "data" / "tariffs" / "sam_urdbv7.json"


def test_a_weak_grids_import_is_billed_on_its_tariff_and_its_planner_plans_as_live() -> None:
    from ems.planning.settings import load_tariff

    data = site(mode="weak_grid")
    data["grid_connection"] = {"import_limit_w": 800e3, "export_limit_w": 0}
    data["policies"] = {"arbitrage": {"tariff": str(TARIFF), "step_s": 900, "horizon_h": 24}}
    cfg = parse_backtest_config(data)
    tariff = load_tariff(TARIFF)
    load, pv = days_of_load(31)
    trace, r = run_series(cfg, datetime(2025, 7, 1), STEP, load, pv, tariff=tariff)
    assert trace.plans > 0  # the arbitrage planner ran, as it would live
    assert r["grid_bill"] == pytest.approx(compute_bill(tariff, trace.grid_w / 1000.0, start=trace.start,
                                                        step_s=STEP).total)  # July whole: the bill as billed
    assert r["site_cost"] == pytest.approx(r["site"]["diesel_litres"] * 1.2 + 2 * 10000 * 31 * 86400 / MONTH_S
                                           + r["grid_bill"] - r["stored_energy_value"])
    # a run of days pays the month's demand and fixed charges for its share of the month only
    part, r5 = run_series(cfg, datetime(2025, 7, 1), STEP, load[:5 * DAY], pv[:5 * DAY], tariff=tariff)
    bill = compute_bill(tariff, part.grid_w / 1000.0, start=part.start, step_s=STEP).months[0]
    share = 5 / 31
    assert bill.minimum == 0.0  # (a part month's minimum: test_a_part_months_minimum_charge_is_its_share...)
    assert r5["grid_bill"] == pytest.approx(bill.energy + share * (bill.demand_tou + bill.demand_flat + bill.fixed))
    assert bill.demand_tou + bill.demand_flat > 0 and r5["grid_bill"] < bill.total


def test_without_a_battery_a_weak_grid_carries_to_its_limit_and_trucks_the_rest() -> None:
    unit = GensetConfig(id="t", rated_power_w=1.5e6).spec()
    load = np.array([0.5e6, 0.9e6, 1.5e6, 3.0e6, 1.2e6])
    pv = np.array([0.0, 1.2e6, 0.0, 0.0, 0.0])  # PV past the load is curtailed: the grid takes no export
    trucks, grid = weak_grid_only(load, 3600.0, unit, 1.0e6, pv_w=pv)
    assert trucks.units == 3  # N + 1 on the rest's peak (2 MW on 1.5 MW units)
    assert grid[:2] == pytest.approx([0.5e6, 0.0])  # under the limit: the grid alone, no truck runs
    assert trucks.output_w[:2] == pytest.approx([0.0, 0.0])
    assert grid[2:4] == pytest.approx([1.0e6, 1.0e6]) and trucks.output_w[2:4] == pytest.approx([0.5e6, 2.0e6])
    # 0.2 MW over the limit is under a truck's minimum loading: it runs at its minimum, the grid gives less
    floor_w = unit.min_load_fraction * unit.rated_w
    assert trucks.output_w[4] == pytest.approx(floor_w) and grid[4] == pytest.approx(1.2e6 - floor_w)
    assert trucks.starts == 2 and trucks.engine_h == pytest.approx(1 + 2 + 1)
    none, all_grid = weak_grid_only(load, 3600.0, unit, 5.0e6)
    assert none.units == 0 and none.fuel_l == 0.0 and all_grid == pytest.approx(load)


def test_a_weak_grids_battery_is_judged_against_the_same_grid_and_trucks_without_it() -> None:
    """It was judged against trucks alone: every kWh the grid gave counted as the battery's."""
    from ems.planning.settings import load_tariff

    data = site(mode="weak_grid")
    data["grid_connection"] = {"import_limit_w": 800e3, "export_limit_w": 0}
    data["economics"] = {"capex": 3.2e6, "om_per_year": 40000}
    cfg = parse_backtest_config(data)
    load, pv = days_of_load(7)
    tariff = load_tariff(TARIFF)
    _, r = run_series(cfg, datetime(2025, 7, 1), STEP, load, pv, tariff=tariff)
    ref = r["baseline_weak_grid"]
    assert "baseline_with_pv" not in r and ref["grid_import_kwh"] > 0 and ref["grid_bill"] > 0
    assert ref["cost"] == pytest.approx(ref["fuel_l"] * 1.2 + ref["units"] * 10000 * 7 * 86400 / MONTH_S
                                        + ref["grid_bill"])
    assert r["battery_cost_saved_per_year"] == pytest.approx((ref["cost"] - r["site_cost"]) * 365 / 7)
    assert r["battery_diesel_saved_litres"] == pytest.approx(ref["fuel_l"] - r["diesel_litres"])
    # the grid's part is no longer the battery's: against trucks alone it "saved" far more
    assert r["battery_cost_saved_per_year"] < r["cost_saved_per_year"] / 2


def test_an_off_grid_site_refuses_arbitrage_and_a_tariff() -> None:
    from ems.backtest.errors import BacktestInputError
    from ems.backtest.offgrid_run import weak_grid_tariff
    from ems.backtest.run import BacktestOptions

    data = site() | {"policies": {"arbitrage": {"tariff": str(TARIFF)}}}
    with pytest.raises(ConfigError, match=r"policies\.arbitrage: an off_grid site has no grid"):
        parse_backtest_config(data)
    data["policies"]["arbitrage"]["enabled"] = False  # switched off: nothing to refuse
    cfg = parse_backtest_config(data)
    with pytest.raises(BacktestInputError, match="--tariff: an off_grid site has no grid to bill"):
        weak_grid_tariff(cfg, BacktestOptions(load_csv=Path("load.csv"), tariff=TARIFF))
    assert weak_grid_tariff(cfg, BacktestOptions(load_csv=Path("load.csv"))) is None


def test_the_diesel_baseline_is_sized_n_plus_1_and_burns_by_the_curve() -> None:
    unit = GensetConfig(id="t", rated_power_w=1.5e6).spec()
    b = diesel_only(np.full(96, 1.125e6), 900.0, unit)  # a day at 75 % of one unit
    assert b.units == 2 and b.starts == 1
    assert b.fuel_l == pytest.approx(24 * 294.6) and b.engine_h == pytest.approx(24.0)
    peak = diesel_only(np.array([4.3e6, 1.0e6]), 3600.0, unit)
    assert peak.units == 4
    # with PV and no battery: the trucks carry the load less PV, never under their minimum loading
    sunny = diesel_only(np.full(4, 1.125e6), 3600.0, unit, pv_w=np.array([0.0, 0.5e6, 1.125e6, 2e6]))
    at_min = unit.fuel.l_per_h(0.3)
    assert sunny.units == 2 and sunny.fuel_l == pytest.approx(294.6 + unit.fuel.l_per_h(0.625e6 / 1.5e6)
                                                              + 2 * at_min)


def test_the_example_off_grid_site_file_loads() -> None:
    cfg = load_backtest_config(ROOT / "config" / "offgrid-site.yaml")
    assert cfg.microgrid is not None and len(cfg.microgrid.gensets) == 2


@pytest.mark.parametrize(("change", "field"), [
    ({"mode": "weak_grid"}, "import_limit_w"),
    ({"start_soc": 0.9}, "start_soc"),
    ({"gensets": [{"id": "g", "rated_power_w": 1e6, "fuel_l_per_h": [50, 40, 60, 70, 80]}]}, "fuel_l_per_h"),
    ({"mode": "islanded"}, "mode"),
])
def test_a_bad_microgrid_section_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_backtest_config(site(**change))


def test_ems_backtest_on_an_off_grid_site_compares_with_diesel_trucks(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    load, pv = days_of_load(3)
    for name, series in (("load.csv", load), ("pv.csv", pv)):  # hourly, timestamped
        rows = [f"2025-06-{1 + h // 24:02d}T{h % 24:02d}:00:00,{w / 1000:.1f}" for h, w in enumerate(series[::4])]
        (tmp_path / name).write_text("timestamp,kW\n" + "\n".join(rows) + "\n")
    cmd = [sys.executable, "-m", "ems.cli", "backtest", "--config", str(ROOT / "config" / "offgrid-site.yaml"),
           "--load", str(tmp_path / "load.csv"), "--pv", str(tmp_path / "pv.csv"), "--out", str(tmp_path / "out"),
           "--quiet"]
    done = subprocess.run([*cmd, "--battery-sweep", "0.5,2"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "diesel-only" in done.stdout
    out = json.loads((tmp_path / "out" / "offgrid.json").read_text())
    assert {"unserved_kwh", "diesel_litres", "baseline_diesel_litres", "co2_saved_kg", "genset_starts"} <= set(out)
    assert out["baseline"]["units"] == 2  # a 2 MW peak on 2 MW trucks: N + 1
    assert [r["battery_wh"] for r in out["battery_sweep"]] == [6e6, 24e6] and "battery 24 MWh" in done.stdout
    assert out["genset_plan"] is None
    # the gensets on the planner's MILP schedule, from the day before's load and PV
    done = subprocess.run([*cmd, "--genset-plan", "persistence"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    planned = json.loads((tmp_path / "out" / "offgrid.json").read_text())
    assert planned["genset_plan"]["forecast"] == "persistence" and planned["genset_plan"]["solves"] >= 3 * 4
    assert "MILP schedule (persistence forecast" in done.stdout, done.stdout
    assert planned["unserved_kwh"] == pytest.approx(0.0, abs=1e-6)
    # a bad section: the field named, exit 2, no traceback
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config" / "offgrid-site.yaml").read_text().replace("stop_soc: 0.80", "stop_soc: 0.20"))
    done = subprocess.run([*cmd[:5], str(bad), *cmd[6:]], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "start_soc" in done.stderr and "Traceback" not in done.stderr


def test_a_live_site_file_takes_the_section_and_ems_run_refuses_what_it_cannot_run() -> None:
    import yaml

    from ems.config import parse_config
    from ems.step_params import step_params

    data = yaml.safe_load((ROOT / "config" / "hil-site.yaml").read_text())
    data["grid_connection"] = {**data.get("grid_connection", {}), "import_limit_w": 500_000}
    weak = parse_config(data | {"microgrid": {"mode": "weak_grid"}})
    assert weak.microgrid is not None and weak.microgrid.live_refusal(False, True) is None
    p = step_params(weak).microgrid
    assert p is not None and p.mode is Mode.WEAK_GRID and p.import_limit_w == 500_000
    with_gensets = parse_config(data | {"microgrid": {"mode": "weak_grid",
                                                      "gensets": [{"id": "g", "rated_power_w": 1e6}]}})
    assert "gensets" in (with_gensets.microgrid.live_refusal(True, False) or "")  # type: ignore[union-attr]
    off = parse_config(data | {"microgrid": {"mode": "off_grid"}}).microgrid
    assert off is not None and off.live_refusal(False, False) is None  # off-grid runs live
    assert "failover" in (off.live_refusal(False, True) or "")  # no grid to lose
    two = parse_config(data | {"microgrid": {"mode": "off_grid", "gensets": [
        {"id": "g1", "rated_power_w": 1e6}, {"id": "g2", "rated_power_w": 1e6}]}}).microgrid
    # several gensets run live, each on its own device: the site's `genset` the first, `gensets:` the others
    assert two is not None and "g2 needs a genset device" in (two.live_refusal(True, False) or "")
    assert two.live_refusal(True, False, ("g2",)) is None and two.live_refusal(False, False, ("g1", "g2")) is None
    assert "g3 names no" in (two.live_refusal(True, False, ("g2", "g3")) or "")
    assert "do not list it again" in (two.live_refusal(True, False, ("g1", "g2")) or "")
    one = parse_config(data | {"microgrid": {"mode": "off_grid", "gensets": [{"id": "g1", "rated_power_w": 1e6}]}})
    assert one.microgrid is not None and "needs a genset device" in (one.microgrid.live_refusal(False, False) or "")
    assert one.microgrid.live_refusal(True, False) is None
    assert step_params(parse_config(data)).microgrid is None  # no section: today's behaviour


def test_a_reload_cannot_change_the_mode_or_the_gensets_only_their_tuning() -> None:
    import yaml

    from ems.config import parse_config
    from ems.config_reload import needs_restart

    data = yaml.safe_load((ROOT / "config" / "offgrid-sim-site.yaml").read_text())
    running = parse_config(data)
    tuned = parse_config({**data, "microgrid": {**data["microgrid"], "start_soc": 0.25}})
    assert needs_restart(running, tuned) == []
    grid = parse_config({**data, "microgrid": {**data["microgrid"], "mode": "grid_connected"}})
    assert "microgrid.mode" in needs_restart(running, grid)
    two = parse_config({**data, "microgrid": {**data["microgrid"], "gensets": [
        *data["microgrid"]["gensets"], {"id": "gen-2", "rated_power_w": 2e6}]}})
    assert "microgrid.gensets (added or removed)" in needs_restart(running, two)
    planned = parse_config({**data, "microgrid": {**data["microgrid"], "genset_plan": {}}})
    assert needs_restart(running, planned) == ["microgrid.genset_plan"]
    shed = parse_config({**data, "microgrid": {**data["microgrid"], "shed_step_s": 60, "shed_order": ["row04"]}})
    assert needs_restart(running, shed) == []  # shedding's tuning applies at the next period


def _flat_tariff(**kw: Any) -> Any:
    from ems.tariff import EnergyPeriod, EnergyTier, Tariff

    period = EnergyPeriod(tiers=(EnergyTier(rate_per_kwh=0.1),))
    return Tariff(energy_periods=(period,), **kw)


def test_a_part_months_minimum_charge_is_its_share_of_the_months_minimum() -> None:
    """It topped the part's energy up to the whole month's minimum, then paid a share of that
    top-up on top of the energy: a day of a 1,000-a-month minimum read 34.58, not 1,000 / 31."""
    from ems.backtest.offgrid_report import grid_bill

    day_w = np.full(24, 10e3)  # 240 kWh: 24.00 of energy, under the day's share of the minimum
    assert grid_bill(_flat_tariff(minimum_monthly=1000.0), day_w, datetime(2025, 7, 1), 3600) == \
        pytest.approx(1000.0 / 31)
    # over its share the energy is the bill; a whole month is billed as compute_bill bills it
    assert grid_bill(_flat_tariff(minimum_monthly=10.0), day_w, datetime(2025, 7, 1), 3600) == pytest.approx(24.0)
    month_w = np.full(31 * 24, 1e3)
    assert grid_bill(_flat_tariff(minimum_monthly=1000.0), month_w, datetime(2025, 7, 1), 3600) == \
        pytest.approx(1000.0)


def test_a_part_years_annual_minimum_is_its_share_of_the_year() -> None:
    """SAM settles the annual minimum in December: a run without December paid none of it, a
    run of a day in December paid a whole year's top-up share of that month."""
    from ems.backtest.offgrid_report import grid_bill

    day_w = np.full(24, 1e3)  # 2.40 of energy a day, under 3,650 a year's share (10.00)
    tariff = _flat_tariff(minimum_annual=3650.0)
    assert grid_bill(tariff, day_w, datetime(2025, 7, 1), 3600) == pytest.approx(10.0)
    assert grid_bill(tariff, day_w, datetime(2025, 12, 31), 3600) == pytest.approx(10.0)
    year_w = np.full(365 * 24, 1e3)
    assert grid_bill(tariff, year_w, datetime(2025, 1, 1), 3600) == pytest.approx(
        compute_bill(tariff, year_w / 1000.0, start=datetime(2025, 1, 1), step_s=3600).total)


def test_prices_without_a_grid_or_a_tariff_to_bill_on_are_refused() -> None:
    """--prices was silently dropped off-grid and on a weak grid without a tariff: the run read
    as priced on them."""
    from ems.backtest.errors import BacktestInputError
    from ems.backtest.offgrid_run import weak_grid_tariff
    from ems.backtest.run import BacktestOptions

    opts = BacktestOptions(load_csv=Path("load.csv"), prices_csv=Path("prices.csv"))
    with pytest.raises(BacktestInputError, match="--prices: an off_grid site has no grid"):
        weak_grid_tariff(parse_backtest_config(site()), opts)
    weak = site(mode="weak_grid")
    weak["grid_connection"] = {"import_limit_w": 800e3, "export_limit_w": 0}
    with pytest.raises(BacktestInputError, match=r"--prices: .*needs a tariff"):
        weak_grid_tariff(parse_backtest_config(weak), opts)
    # a switched-off arbitrage section is not the tariff: its prices are not either
    weak["policies"] = {"arbitrage": {"enabled": False, "tariff": str(TARIFF), "prices_csv": "nowhere.csv"}}
    cfg = parse_backtest_config(weak)
    assert weak_grid_tariff(cfg, BacktestOptions(load_csv=Path("load.csv"))) is None
    assert weak_grid_tariff(cfg, BacktestOptions(load_csv=Path("load.csv"), tariff=TARIFF)) is not None


def test_peak_shaving_only_and_dr_events_are_not_silently_dropped_off_grid(tmp_path: Path) -> None:
    """--peak-shaving-only ran the weak grid's arbitrage planner all the same, and --dr-events
    were read by nothing: both runs read as what they asked for."""
    from ems.backtest.errors import BacktestInputError
    from ems.backtest.offgrid_run import run_offgrid
    from ems.backtest.run import BacktestOptions

    load = tmp_path / "load.csv"
    load.write_text("".join(f"2025-07-{1 + h // 24:02d}T{h % 24:02d}:00:00,{1500 + 300 * (h % 5)}\n"
                            for h in range(4 * 24)))
    data = site(mode="weak_grid")
    data["grid_connection"] = {"import_limit_w": 800e3, "export_limit_w": 0}
    data["policies"] = {"arbitrage": {"tariff": str(TARIFF), "step_s": 900, "horizon_h": 24}}
    cfg = parse_backtest_config(data)
    opts = BacktestOptions(load_csv=load, step_s=STEP)
    planned, _ = run_offgrid(cfg, opts)
    plain, r_plain = run_offgrid(cfg, BacktestOptions(load_csv=load, step_s=STEP, peak_shaving_only=True))
    assert planned.plans > 0 and plain.plans == 0
    assert r_plain["grid_bill"] is not None  # the import is still billed on the section's tariff
    with pytest.raises(BacktestInputError, match="--dr-events"):
        run_offgrid(cfg, BacktestOptions(load_csv=load, step_s=STEP, dr_events_csv=tmp_path / "events.csv"))


def test_a_weak_grids_planner_starts_with_the_history_a_running_site_has(tmp_path: Path) -> None:
    """Unlike the grid-tied run, the weak grid's planner got no load before the start: a run of
    a day of a year's series planned nothing (each plan needs the day before)."""
    from ems.backtest.offgrid_run import run_offgrid
    from ems.backtest.run import BacktestOptions

    load = tmp_path / "year.csv"  # one typical year from the start: the last weeks are its history
    load.write_text("Exported Data (8760)\n" + "".join(f"{1500 + 300 * (h % 5)}\n" for h in range(8760)))
    data = site(mode="weak_grid")
    data["grid_connection"] = {"import_limit_w": 800e3, "export_limit_w": 0}
    data["policies"] = {"arbitrage": {"tariff": str(TARIFF), "step_s": 900, "horizon_h": 24}}
    trace, _ = run_offgrid(parse_backtest_config(data), BacktestOptions(load_csv=load, step_s=STEP, days=1))
    assert trace.plans > 0


def test_a_battery_sweep_runs_on_the_gensets_plan_of_the_run(tmp_path: Path) -> None:
    """`ems backtest --genset-plan X --battery-sweep 1` ran its rows on the SoC thresholds: the
    row at scale 1 was not the run printed above it."""
    from ems.backtest.offgrid_run import battery_sweep, run_offgrid
    from ems.backtest.run import BacktestOptions

    load = tmp_path / "load.csv"
    load.write_text("".join(f"2025-01-{1 + h // 24:02d}T{h % 24:02d}:00:00,{1800 + 600 * (h % 7)}\n"
                            for h in range(2 * 24)))
    cfg = parse_backtest_config(site())
    opts = BacktestOptions(load_csv=load, step_s=STEP)
    _, planned = run_offgrid(cfg, opts, genset_plan="persistence")
    _, thresholds = run_offgrid(cfg, opts)
    assert planned["diesel_litres"] != pytest.approx(thresholds["diesel_litres"])  # the plan matters here
    (row,) = battery_sweep(cfg, opts, [1.0], genset_plan="persistence")
    assert row["diesel_litres"] == pytest.approx(planned["diesel_litres"])


def test_timeseries_is_refused_off_grid_not_silently_left_unwritten(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from ems.cli import main

    load = tmp_path / "load.csv"
    load.write_text("".join(f"2025-01-01T{h:02d}:00:00,1500\n" for h in range(24)))
    out = tmp_path / "out"
    assert main(["backtest", "--config", str(ROOT / "config" / "offgrid-site.yaml"), "--load", str(load),
                 "--timeseries", "--quiet", "--out", str(out)]) == 2
    assert "--timeseries" in capsys.readouterr().err and not out.exists()


def test_the_charge_the_battery_ends_short_of_is_the_sites_to_make_up() -> None:
    """A run of days drew the battery's first charge down and counted it as savings (a weak grid
    without gensets, 2 days from 80 % SoC: NPV +1.78 M): the energy it ends short of is now
    charged at the site's fuel per genset kWh (the trucks' where its gensets made none), over the
    units' charge efficiency weighted by capacity (a stored kWh took more than one to charge)."""
    unequal = site()
    unequal["battery_units"][0]["charge_efficiency"] = 0.90
    unequal["battery_units"][1] |= {"charge_efficiency": 0.98, "capacity_wh": 24e6}
    cfg = parse_backtest_config(unequal)
    load, _ = days_of_load(2)
    trace, r = run_series(cfg, datetime(2025, 6, 1), STEP, load, None)
    change_kwh = (trace.soc[-1] - trace.soc_initial) * trace.capacity_wh / 1000.0
    assert change_kwh < -500.0  # it ends well below its 80 %
    s = r["site"]
    assert trace.charge_efficiency == pytest.approx((0.90 * 8 + 0.98 * 24) / 32)
    price = s["diesel_litres"] * 1.2 / s["genset_kwh"] / trace.charge_efficiency
    assert r["stored_energy_change_kwh"] == pytest.approx(change_kwh)
    assert r["stored_energy_value"] == pytest.approx(change_kwh * price)
    assert r["site_cost"] == pytest.approx(s["diesel_litres"] * 1.2 + 2 * 10000 * 2 * 86400 / MONTH_S
                                           - change_kwh * price)
    # without gensets running the trucks' fuel per kWh prices it
    weak = site(mode="weak_grid", gensets=[])
    weak["grid_connection"] = {"import_limit_w": 1.2e6, "export_limit_w": 0}
    trace, r = run_series(parse_backtest_config(weak), datetime(2025, 6, 1), STEP, load, None)
    base = r["baseline"]
    assert r["site"]["genset_kwh"] == 0 and r["stored_energy_change_kwh"] < 0
    assert r["stored_energy_value"] == pytest.approx(r["stored_energy_change_kwh"] * base["fuel_cost"]
                                                     / base["energy_kwh"] / 0.96)  # the plant's default
    assert r["site_cost"] == pytest.approx(-r["stored_energy_value"])  # no fuel, no rent, no bill


def test_offgrid_json_is_json_with_null_where_a_figure_has_no_value(tmp_path: Path) -> None:
    """A site without PV wrote "pv_self_consumption": NaN, which is not JSON: jq and a browser
    refused the whole file."""
    import json

    from ems.backtest.offgrid_run import write_offgrid

    cfg = parse_backtest_config(site())
    load, _ = days_of_load(2)
    _, r = run_series(cfg, datetime(2025, 6, 1), STEP, load, None)
    path = write_offgrid(tmp_path, r)

    def refuse(constant: str) -> float:
        raise ValueError(constant)

    got = json.loads(path.read_text(), parse_constant=refuse)
    assert got["site"]["pv_kwh"] == 0.0 and got["site"]["pv_self_consumption"] is None
    assert got["diesel_litres"] == pytest.approx(r["diesel_litres"])


def test_the_summary_says_a_part_day_run_is_one() -> None:
    """--days 0.5 printed "off_grid: 0 days"."""
    from ems.backtest.offgrid_run import summary_lines

    cfg = parse_backtest_config(site())
    load, _ = days_of_load(1)
    _, r = run_series(cfg, datetime(2025, 6, 1), STEP, load[: DAY // 2], None)
    assert summary_lines(r)[0].startswith("off_grid: 0.5 days, unserved ")
