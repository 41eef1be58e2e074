"""`ems size` (ems/sizing.py): a grid of battery sizes, each a backtest, on Dask."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from ems.backtest.config import load_backtest_config
from ems.backtest.run import BacktestOptions
from ems.model.errors import ConfigError
from ems.sizing import CostModel, SizePoint, parse_grid, recommended, sized, sweep, write_outputs

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
LOAD = SHARED / "loads" / "sam_sample_load_8760h.csv"
URDB = SHARED / "tariffs" / "sam_urdbv7.json"
SITE = ROOT / "config" / "backtest-site.yaml"


def test_grids_parse_and_bad_ones_name_the_option() -> None:
    assert parse_grid("1000:4000:4", "--energy-kwh") == [1000.0, 2000.0, 3000.0, 4000.0]
    assert parse_grid("500, 1000", "--power-kw") == [500.0, 1000.0]
    for bad in ("a,b", "1:2", "0,1", "1:5:0", "nan"):
        with pytest.raises(ConfigError, match="--power-kw"):
            parse_grid(bad, "--power-kw")


def test_a_point_scales_every_unit_and_its_costs() -> None:
    cfg = load_backtest_config(SITE)
    costs = CostModel.from_config(cfg)
    assert costs.capex_per_kwh == pytest.approx(400.0)  # 1.6 M for 4 MWh
    big = sized(cfg, 8000.0, 1000.0, costs, planning_step_s=3600)
    assert [u.capacity_wh for u in big.battery_units] == [4e6, 4e6]
    assert [u.rated_power_w for u in big.battery_units] == [5e5, 5e5]
    assert big.economics is not None and big.economics.capex == pytest.approx(3.2e6)
    assert big.policies.arbitrage is not None and big.policies.arbitrage.step_s == 3600


def test_the_recommended_size_is_the_best_paying_one() -> None:
    def p(e: float, npv: float) -> SizePoint:
        return SizePoint(e, 1.0, 1.0, 1.0, npv, None, None, None, 0.0, 0.0, 0.0)

    assert recommended([p(1, -5), p(2, 3), p(3, 7), p(4, float("nan"))]) == p(3, 7)
    assert recommended([p(1, -5)]) is None


@pytest.fixture(scope="module")
def dask_scheduler():  # type: ignore[no-untyped-def]
    """A running Dask scheduler with one worker, as an operator's cluster would be."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, scheduler_port=0,
                           dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()


def test_a_sweep_on_a_running_scheduler_writes_the_table_and_the_heatmap(dask_scheduler, tmp_path: Path) -> None:
    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(SITE)
    opts = BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=datetime(2018, 7, 2), days=3,
                           step_s=3600, foresight=False)
    seen: list[tuple[int, int]] = []
    s = sweep(cfg, opts, [1000.0, 4000.0], [500.0, 2000.0], scheduler=dask_scheduler, planning_step_s=3600,
              progress=lambda d, n: seen.append((d, n)))
    assert s.workers == 1 and s.scheduler == dask_scheduler and 0 < s.compute_s <= s.wall_s
    assert [(p.energy_kwh, p.power_kw) for p in s.points] == [(1000, 500), (1000, 2000), (4000, 500), (4000, 2000)]
    assert seen[-1] == (4, 4) and len(seen) == 4
    small, large = s.points[0], s.points[3]
    assert large.capex == pytest.approx(4 * small.capex)
    assert large.peak_with_kw < small.peak_with_kw  # more battery holds a lower peak
    files = write_outputs(tmp_path, s, "USD")
    page = (tmp_path / "sizing.html").read_text()
    assert "<svg" in page and "NPV" in page and "http" not in page.split("<svg")[0]
    data = json.loads((tmp_path / "sizing.json").read_text())
    assert len(data["points"]) == 4 and len(files) == 3
    best = s.best
    assert (data["recommended"] is None) == (best is None)


def test_the_cli_refuses_a_bad_grid(capsys: pytest.CaptureFixture[str]) -> None:
    from ems.cli import main

    rc = main(["size", "--config", str(SITE), "--load", str(LOAD), "--energy-kwh", "x", "--power-kw", "1"])
    assert rc == 2
    assert "--energy-kwh" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value"), [("--capex-per-kw", "1e308"), ("--capex-per-kw", "-5"),
                                               ("--capex-per-kwh", "1e308"), ("--capex-per-kwh", "nan")])
def test_the_cli_refuses_a_battery_price_out_of_range(option: str, value: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # as PV's and the gensets' prices: 1e308 wrote Infinity into sizing.json, a negative price ran
    from ems.cli import main

    rc = main(["size", "--config", str(SITE), "--load", str(LOAD), "--energy-kwh", "1000", "--power-kw", "500",
               "--days", "1", "--step-s", "3600", "--quiet", "--out", str(tmp_path / "out"), option, value])
    assert rc == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- PV as a third dimension -------------------------------------------------------------------
PV_SERIES_KW = 1000.0


def _pv_csv(tmp_path: Path) -> Path:
    """A year of hours from a 1,000 kW array on clear days (a half sine, 6 to 18 h)."""
    import math

    hours = [h % 24 for h in range(8760)]
    kw = [0.8 * PV_SERIES_KW * max(0.0, math.sin(math.pi * (h - 6) / 12)) for h in hours]
    path = tmp_path / "pv.csv"
    path.write_text("PV (kW)\n" + "\n".join(f"{v:.3f}" for v in kw) + "\n")
    return path


def _three_days(pv_csv: Path | None) -> BacktestOptions:
    return BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=1000.0, start=datetime(2018, 7, 2), days=3,
                           step_s=3600, foresight=False, pv_csv=pv_csv)


def test_pv_sizes_price_the_pv_and_the_battery_as_one_project(tmp_path: Path) -> None:
    from ems.backtest.financials import npv
    from ems.backtest.results import savings_per_year
    from ems.backtest.run import run
    from ems.sizing import PvCosts, run_point

    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(SITE)
    costs = CostModel.from_config(cfg)
    pv = PvCosts(PV_SERIES_KW, capex_per_kw=900.0, om_per_kw_year=15.0)
    opts = _three_days(_pv_csv(tmp_path))
    alone = run_point(cfg, _three_days(None), 4000.0, 2000.0, costs, 3600)
    none = run_point(cfg, opts, 4000.0, 2000.0, costs, 3600, 0.0, pv)
    some = run_point(cfg, opts, 4000.0, 2000.0, costs, 3600, 2000.0, pv)
    # 0 kW of PV is the site without PV: the same battery run, nothing added
    assert none.pv_annual_savings == 0.0 and none.pv_kw == 0.0
    assert none.npv == pytest.approx(alone.npv, rel=1e-12) and none.battery_npv == pytest.approx(alone.npv, rel=1e-12)
    # 2 MW of PV saves on its own, costs 900 a kW, and adds its NPV to the battery's
    assert some.pv_annual_savings > 0 and some.capex == pytest.approx(alone.capex + 900.0 * 2000.0)
    e = cfg.economics
    assert e is not None and some.battery_npv is not None
    pv_npv = npv(e.discount_rate, pv.cash_flows(2000.0, some.pv_annual_savings, e.lifetime_years))
    assert some.npv == pytest.approx(some.battery_npv + pv_npv, rel=1e-9)
    # the year-1 figure is the backtest's own annualisation: its battery's bill savings come out the
    # same way (the backtest adds the charge the battery ends with, scaled by time)
    bt = run(sized(cfg, 4000.0, 2000.0, costs, 3600), _three_days(None))
    t = bt.trace
    assert bt.result.financials is not None
    stored = bt.result.total["stored_energy_value"] * 365.0 / 3.0
    assert savings_per_year(bt.tariff, t.load_w, t.grid_w, t.start, t.step_s) + stored == pytest.approx(
        bt.result.financials.annual_savings, rel=1e-9)


def test_a_point_gives_cycles_a_year_on_a_short_run() -> None:
    """The table's 'Cycles a year' on a 3-day run is that run's cycles scaled to 365 days,
    as its savings are scaled to a year (it gave the 3 days' count)."""
    from ems.backtest.run import run
    from ems.sizing import run_point

    cfg = load_backtest_config(SITE)
    costs = CostModel.from_config(cfg)
    point = run_point(cfg, _three_days(None), 4000.0, 2000.0, costs, 3600)
    direct = run(sized(cfg, 4000.0, 2000.0, costs, 3600), _three_days(None))
    cycles_3_days = direct.result.total["equivalent_full_cycles"]
    assert cycles_3_days > 0
    assert point.equivalent_full_cycles_per_year == pytest.approx(cycles_3_days * 365 / 3)


def test_pv_costs_and_the_pv_grid_are_checked() -> None:
    from ems.sizing import PvCosts

    assert parse_grid("0,500", "--pv-kw", allow_zero=True) == [0.0, 500.0]
    with pytest.raises(ConfigError, match="--pv-kw"):
        parse_grid("-1", "--pv-kw", allow_zero=True)
    for bad in ({"series_kw": 0.0, "capex_per_kw": 1.0}, {"series_kw": 1.0, "capex_per_kw": float("nan")},
                {"series_kw": 1.0, "capex_per_kw": 1.0, "degradation_per_year": 1.5},
                {"series_kw": 1.0, "capex_per_kw": 1e308}):  # past any price: Infinity in sizing.json
        with pytest.raises(ConfigError, match="--pv-"):
            PvCosts(**bad)


def test_the_cli_needs_the_pv_series_and_its_costs_to_size_pv(capsys: pytest.CaptureFixture[str]) -> None:
    from ems.cli import main

    rc = main(["size", "--config", str(SITE), "--load", str(LOAD), "--energy-kwh", "1000", "--power-kw", "500",
               "--pv-kw", "0,500"])
    assert rc == 2
    assert "--pv-kw needs --pv" in capsys.readouterr().err


def test_a_sweep_with_pv_sizes_writes_them(dask_scheduler, tmp_path: Path) -> None:
    from ems.sizing import PvCosts

    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(SITE)
    s = sweep(cfg, _three_days(_pv_csv(tmp_path)), [4000.0], [2000.0], scheduler=dask_scheduler,
              planning_step_s=3600, pv_kws=[0.0, 1000.0], pv=PvCosts(PV_SERIES_KW, 900.0))
    assert [p.pv_kw for p in s.points] == [0.0, 1000.0]
    write_outputs(tmp_path / "out", s, "USD")
    page = (tmp_path / "out" / "sizing.html").read_text()
    assert "PV (kW)" in page and "kW of PV" in page
    rows = json.loads((tmp_path / "out" / "sizing.json").read_text())["points"]
    assert [r["pv_kw"] for r in rows] == [0.0, 1000.0] and rows[1]["pv_annual_savings"] > 0


def test_the_cli_refuses_odd_pv_input_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each ends in a one-line message and exit 2, before any backtest: a PV size past any site
    (overflowed the planner's history into a traceback), PV costs without PV sizes (were
    silently dropped) and a start that is not a date (a ValueError traceback)."""
    from ems.cli import main

    base = ["size", "--config", str(SITE), "--load", str(LOAD), "--energy-kwh", "1000", "--power-kw", "500",
            "--out", str(tmp_path / "out"), "--quiet"]
    pv = ["--pv", str(_pv_csv(tmp_path)), "--pv-series-kw", "1000", "--pv-capex-per-kw", "900"]
    tiny = [*pv[:3], "1e-300", *pv[4:]]  # the same series said to come from 1e-300 kW of panels
    for extra, says in ((["--pv-kw", "0,1e303", *pv], "--pv-kw"), (["--pv-kw", "0,1000", *tiny], "--pv-series-kw"),
                        (pv, "--pv-series-kw"),
                        (["--start", "July"], "--start")):
        rc: object
        try:
            rc = main([*base, *extra])
        except SystemExit as exc:  # the command line's own refusal (argparse): a start that is not a date
            rc = exc.code
        assert rc == 2, extra
        assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_pv_series_of_the_wrong_sign_is_refused(tmp_path: Path) -> None:
    """PV is generation, > 0: a series recorded as negative (the meter's sign) priced its
    panels as costing money every year, and the sweep quietly recommended none."""
    from ems.backtest.errors import BacktestInputError
    from ems.sizing import PvCosts

    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    src = _pv_csv(tmp_path).read_text().splitlines()
    neg = tmp_path / "neg.csv"
    neg.write_text("\n".join([src[0], *(f"{-float(v):.3f}" for v in src[1:])]) + "\n")
    cfg = load_backtest_config(SITE)
    with pytest.raises(BacktestInputError, match="PV series sums to less than 0"):
        sweep(cfg, _three_days(neg), [4000.0], [2000.0], planning_step_s=3600, pv_kws=[0.0, 1000.0],
              pv=PvCosts(PV_SERIES_KW, 900.0))


def test_panels_that_outlast_the_battery_earn_their_own_years() -> None:
    """PV's flows ran only the battery's lifetime (15 years in the site file) with nothing after:
    panels earning 25 years lost 10 years of savings. With their own lifetime they run on,
    the battery ended (not replaced), and the project's NPV is the two NPVs added."""
    from ems.backtest.financials import npv
    from ems.sizing import PvCosts, with_pv

    battery = [-1000.0, *[150.0] * 15, -50.0]
    point = SizePoint(1000.0, 500.0, 1000.0, 160.0, npv(0.07, battery), None, None, None, 1.0, 1.0, 0.0)
    pv = PvCosts(1000.0, 1000.0, 10.0, 0.005, lifetime_years=25)
    flows = pv.cash_flows(1000.0, 150_000.0, 15)
    assert len(flows) == 27 and flows[25] > 0 and flows[26] == 0.0
    both, _ = with_pv(point, pv, 1000.0, 150_000.0, 15, 0.07, 10.0, battery)
    assert both.npv == pytest.approx(point.npv + npv(0.07, flows), rel=1e-12)
    assert both.npv > with_pv(point, replace(pv, lifetime_years=None), 1000.0, 150_000.0, 15, 0.07, 10.0,
                              battery)[0].npv
    with pytest.raises(ConfigError, match="--pv-lifetime-years"):
        PvCosts(1000.0, 1000.0, lifetime_years=0)
