"""`ems size` on an off-grid site (ems/sizing_offgrid.py): each point the off-grid backtest,
the gensets as a dimension, unserved load shown and never recommended."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ems.backtest.config import load_backtest_config, parse_backtest_config
from ems.backtest.offgrid_run import OFFGRID_STEP_S, run_offgrid
from ems.backtest.run import BacktestOptions
from ems.model.errors import ConfigError
from ems.sizing import CostModel, SizePoint, recommended, run_point, sized, sweep, write_outputs
from ems.sizing_offgrid import GensetCosts, check_gensets, fleet_kw, run_offgrid_point, with_gensets

ROOT = Path(__file__).resolve().parents[2]
LOAD = ROOT.parent / "shared" / "data" / "loads" / "sam_sample_load_8760h.csv"
OFFGRID = ROOT / "config" / "offgrid-site.yaml"  # 3 MW / 12 MWh, two 2 MW gensets rented at 12,000 a month each
GRID_TIED = ROOT / "config" / "backtest-site.yaml"


def _site(**microgrid: Any) -> dict[str, Any]:
    mg = {"mode": "off_grid", "genset_rental_per_month": 9000.0,
          "gensets": [{"id": "g1", "rated_power_w": 1e6, "fuel_l_per_h": [20, 70, 120, 170, 230]},
                      {"id": "g2", "rated_power_w": 3e6}]} | microgrid
    return {"battery_units": [{"id": "b1", "capacity_wh": 8e6, "rated_power_w": 2e6}],
            "grid_connection": {"import_limit_w": None, "export_limit_w": 0}, "microgrid": mg,
            "economics": {"capex": 3.2e6, "om_per_year": 40000}}


def test_a_genset_size_scales_every_genset_its_curve_and_its_rent_keeping_shares() -> None:
    cfg = parse_backtest_config(_site())
    assert fleet_kw(cfg) == 4000.0
    big = with_gensets(cfg, 6000.0)
    assert big.microgrid is not None
    g1, g2 = big.microgrid.gensets
    assert (g1.rated_power_w, g2.rated_power_w) == (1.5e6, 4.5e6)  # 1:3 kept
    assert g1.fuel_l_per_h == pytest.approx((30, 105, 180, 255, 345))  # the same litres per kWh at each loading
    assert g2.fuel_l_per_h is None  # the default curve, scaled from the rating anyway
    assert big.microgrid.genset_rental_per_month == pytest.approx(13500.0)
    none = with_gensets(cfg, 0.0)
    assert none.microgrid is not None and none.microgrid.gensets == []
    assert cfg.microgrid is not None and len(cfg.microgrid.gensets) == 2  # the site file's own is untouched


def test_genset_sizes_and_prices_are_checked_before_any_run() -> None:
    cfg = parse_backtest_config(_site())
    check_gensets(cfg, [0.0, 4000.0])
    for kws, says in (([1e13], "past 10,000,000 kW"), ([0.5], "under 1 kW")):
        with pytest.raises(ConfigError, match="--genset-kw") as err:
            check_gensets(cfg, kws)
        assert says in str(err.value)
    with pytest.raises(ConfigError, match="configures no gensets"):
        check_gensets(parse_backtest_config(_site(gensets=[])), [1000.0])
    with pytest.raises(ConfigError, match="off_grid or weak_grid"):
        check_gensets(load_backtest_config(GRID_TIED), [1000.0])
    for bad, name in (({"capex_per_kw": -1.0}, "--genset-capex-per-kw"),
                      ({"om_per_kw_year": float("nan")}, "--genset-om-per-kw-year"),
                      ({"capex_per_kw": 1e308}, "--genset-capex-per-kw")):
        with pytest.raises(ConfigError, match=name):
            GensetCosts(**bad)


def test_a_point_leaving_load_unserved_is_never_recommended() -> None:
    def p(genset_kw: float, npv: float, unserved_kwh: float | None) -> SizePoint:
        return SizePoint(1.0, 1.0, 1.0, 1.0, npv, None, None, None, 0.0, 0.0, 0.0, genset_kw=genset_kw,
                         unserved_kwh=unserved_kwh)

    dark, lit = p(0, 9e6, 1500.0), p(2000, 2e5, 0.0)
    assert recommended([dark, lit, p(4000, 1e5, 1e-9)]) == lit
    assert recommended([dark]) is None
    assert recommended([p(0, 5.0, None)]) is not None  # grid-tied: no unserved figure, as before


def test_the_cli_refuses_odd_genset_input_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ems.cli import main

    base = ["size", "--config", str(OFFGRID), "--load", str(LOAD), "--energy-kwh", "12000", "--power-kw", "3000",
            "--out", str(tmp_path / "out"), "--quiet"]
    for extra, says in ((["--genset-kw", "-2000"], "--genset-kw"), (["--genset-kw", "0,x"], "--genset-kw"),
                        (["--genset-kw", "1e15"], "--genset-kw"), (["--genset-kw", "0.001"], "--genset-kw"),
                        (["--genset-capex-per-kw", "300"], "--genset-kw"),
                        (["--genset-kw", "2000", "--genset-om-per-kw-year", "-1"], "--genset-om-per-kw-year"),
                        (["--tariff", str(tmp_path / "any.json")], "--tariff"),
                        # went into the page's HTML as given: a currency is three capitals, as a tariff's
                        (["--currency", "<img src=x onerror=alert(1)>"], "--currency"),
                        (["--currency", "usd"], "--currency")):
        assert main([*base, *extra]) == 2, extra
        assert says in capsys.readouterr().err
    grid_tied = ["size", "--config", str(GRID_TIED), "--load", str(LOAD), "--energy-kwh", "1000", "--power-kw", "500",
                 "--genset-kw", "1000", "--out", str(tmp_path / "out"), "--quiet"]
    assert main(grid_tied) == 2
    assert "--genset-kw" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_load_that_cannot_be_read_ends_before_any_worker_starts(tmp_path: Path) -> None:
    """A NaN in the load: each worker failed on it, and Dask printed the point's traceback before
    the CLI's message."""
    import subprocess
    import sys

    if not LOAD.exists():
        pytest.skip("shared data not present")
    lines = LOAD.read_text().splitlines()
    lines[200] = "nan"
    bad = tmp_path / "load.csv"
    bad.write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "ems.cli", "size", "--config", str(OFFGRID), "--load", str(bad),
           "--load-scale", "1000", "--energy-kwh", "12000", "--power-kw", "3000", "--days", "2", "--workers", "1",
           "--quiet",
           "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "not a number" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def _week() -> BacktestOptions:
    """A January week of the shared load x1000 (peak about 2.9 MW) at 15 min."""
    return BacktestOptions(load_csv=LOAD, load_scale=1000.0, start=datetime(2018, 1, 8), days=7, step_s=900,
                           foresight=False)


def test_a_genset_sweep_of_real_backtests(tmp_path: Path) -> None:
    """0, 2 and 4 MW of gensets beside 12 MWh / 3 MW: without gensets the battery runs dry and
    load goes unserved (and the site, burning nothing, "saves" the most: never recommended);
    with them every kWh is served, on more diesel, and the larger fleet's rent costs more."""
    if not LOAD.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(OFFGRID)
    costs = CostModel(50.0, 0.0, 5.0)  # a cheap battery, so that sizes with gensets pay
    seen: list[int] = []
    s = sweep(cfg, _week(), [12000.0], [3000.0], costs=costs, workers=1, genset_kws=[0.0, 2000.0, 4000.0],
              progress=lambda d, n: seen.append(d))
    assert seen[-1] == 3 and [p.genset_kw for p in s.points] == [0.0, 2000.0, 4000.0]
    none, small, large = s.points
    assert none.unserved_kwh is not None and none.unserved_kwh > 10_000.0 and not none.serves_load
    assert none.diesel_l_per_year == 0.0
    assert small.serves_load and large.serves_load
    assert small.diesel_l_per_year is not None and small.diesel_l_per_year > 1e6
    assert large.annual_savings < small.annual_savings  # twice the rent for the same load served
    assert none.npv > small.npv > 0  # the unserved point looks best on money alone ...
    assert s.best == small  # ... and is skipped
    # the configured fleet (4 MW) is the site file's own design: the point's money is `ems backtest`'s
    _, r = run_offgrid(sized(cfg, 12000.0, 3000.0, costs), _week())
    assert r["financials"] is not None
    assert large.npv == pytest.approx(r["financials"]["npv"], rel=1e-9)
    assert large.unserved_kwh == pytest.approx(r["unserved_kwh"], abs=1e-9)
    write_outputs(tmp_path, s, "")
    page = (tmp_path / "sizing.html").read_text()
    assert "Gensets (kW)" in page and "Unserved (kWh)" in page and "(unserved)" in page
    assert "1 of 3 points leave load unserved" in page and "2,000 kW of gensets" in page
    with (tmp_path / "sizing.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["genset_kw"]) for r in rows] == [0.0, 2000.0, 4000.0] and float(rows[0]["unserved_kwh"]) > 1e4


def test_an_off_grid_point_runs_at_five_minutes_unless_told() -> None:
    """At 15 min a genset started as the battery empties gives nothing for the whole step; an
    off-grid point without a step runs at 5 min (OFFGRID_STEP_S), one with a step keeps it."""
    if not LOAD.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(OFFGRID)
    point = with_gensets(sized(cfg, 12000.0, 3000.0, CostModel.from_config(cfg)), 2000.0)
    days = replace(_week(), days=2)
    default = run_offgrid_point(point, cfg, replace(days, step_s=None))
    five = run_offgrid_point(point, cfg, replace(days, step_s=OFFGRID_STEP_S))
    fifteen = run_offgrid_point(point, cfg, days)
    assert OFFGRID_STEP_S == 300 and default == five
    assert fifteen.diesel_l_per_year != five.diesel_l_per_year


def test_a_bought_fleet_adds_its_capex_and_om_to_the_project() -> None:
    from ems.backtest.financials import npv

    if not LOAD.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(OFFGRID)
    costs = CostModel.from_config(cfg)
    g = GensetCosts(capex_per_kw=350.0, om_per_kw_year=12.0)
    rented = run_point(cfg, _week(), 12000.0, 3000.0, costs, None, genset_kw=2000.0)
    bought = run_point(cfg, _week(), 12000.0, 3000.0, costs, None, genset_kw=2000.0, gensets=g)
    # a bought fleet pays no rent: it ran as the same fleet rent-free (the trucks it is weighed against keep theirs)
    assert cfg.microgrid is not None and cfg.microgrid.genset_rental_per_month > 0
    owned = cfg.model_copy(update={"microgrid": cfg.microgrid.model_copy(update={"genset_rental_per_month": 0.0})})
    free = run_offgrid_point(with_gensets(sized(owned, 12000.0, 3000.0, costs), 2000.0), cfg, _week())
    e = cfg.economics
    assert e is not None
    assert bought.capex == pytest.approx(rented.capex + 350.0 * 2000.0)
    assert bought.annual_savings == pytest.approx(free.annual_savings, rel=1e-12)
    assert bought.annual_savings > rented.annual_savings  # the rent it no longer pays
    assert bought.npv == pytest.approx(free.npv + npv(e.discount_rate, g.cash_flows(2000.0, e.lifetime_years)),
                                       rel=1e-9)
    assert bought.battery_npv == pytest.approx(free.npv, rel=1e-12)  # the storage's, as `ems backtest` prints it


def _size_cli(out: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, list[dict[str, str]]]:
    """`ems size` on the off-grid example, two days, one worker, into `out`: what it printed and
    sizing.csv's rows (it must exit 0)."""
    from ems.cli import main

    if not LOAD.exists():
        pytest.skip("shared data not present")
    rc = main(["size", "--config", str(OFFGRID), "--load", str(LOAD), "--load-scale", "1000", *args,
               "--days", "2", "--workers", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    with (out / "sizing.csv").open() as fh:
        return capsys.readouterr().out, list(csv.DictReader(fh))


def test_the_cli_sizes_an_off_grid_site_without_a_tariff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It asked for a tariff, and given one billed the site as if it had a grid: every point
    'saved' the whole grid bill of the load (NPV in the tens of millions)."""
    out, (row,) = _size_cli(tmp_path, capsys, "--energy-kwh", "12000", "--power-kw", "3000", "--start", "2018-01-08")
    assert row["genset_kw"] == "" and float(row["unserved_kwh"]) < 1e-3 and float(row["diesel_l_per_year"]) > 0
    assert float(row["npv"]) < 0 and "pays for itself" in out  # 4.8 M of battery against two days' fuel
    assert out.startswith("1 point in ")  # not "1 points"


def test_the_cli_does_not_say_every_npv_is_negative_when_a_dark_point_s_is_not(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without gensets the site leaves load dark and burns no fuel: NPV in the millions, never
    recommended; the line said 'every NPV < 0' beside that row of the table."""
    out, rows = _size_cli(tmp_path, capsys, "--energy-kwh", "6000", "--power-kw", "3000", "--genset-kw", "0,4000")
    dark, served = sorted(rows, key=lambda r: float(r["genset_kw"]))
    assert float(dark["unserved_kwh"]) > 0 and float(dark["npv"]) > 0 and float(served["npv"]) < 0
    assert "1 point(s) leave load unserved" in out and "every NPV < 0" not in out
    assert "no size on the grid that serves the whole load pays for itself" in out


def test_pv_on_an_off_grid_site_is_priced_against_the_trucks(tmp_path: Path) -> None:
    """PV's savings off-grid are the trucks' fuel and rent without it less with it (no bill)."""
    import math

    from ems.backtest.financials import npv
    from ems.sizing import PvCosts

    if not LOAD.exists():
        pytest.skip("shared data not present")
    pv_csv = tmp_path / "pv.csv"
    kw = [800.0 * max(0.0, math.sin(math.pi * ((h % 24) - 6) / 12)) for h in range(8760)]  # 1 MW of panels
    pv_csv.write_text("PV (kW)\n" + "\n".join(f"{v:.3f}" for v in kw) + "\n")
    cfg = load_backtest_config(OFFGRID)
    costs, pv = CostModel.from_config(cfg), PvCosts(1000.0, capex_per_kw=900.0)
    opts = BacktestOptions(load_csv=LOAD, load_scale=1000.0, start=datetime(2018, 1, 8), days=7, step_s=900,
                           foresight=False, pv_csv=pv_csv)
    p = run_point(cfg, opts, 12000.0, 3000.0, costs, None, 2000.0, pv, genset_kw=4000.0)
    _, r = run_offgrid(sized(cfg, 12000.0, 3000.0, costs), replace(opts, pv_scale=2.0))
    to_year = 365.0 / 7.0
    assert p.pv_annual_savings == pytest.approx((r["baseline"]["cost"] - r["baseline_with_pv"]["cost"]) * to_year)
    assert p.pv_annual_savings > 0 and p.serves_load
    e = cfg.economics
    assert e is not None and p.battery_npv == pytest.approx(r["financials"]["npv"], rel=1e-9)
    pv_npv = npv(e.discount_rate, pv.cash_flows(2000.0, p.pv_annual_savings, e.lifetime_years))
    assert p.npv == pytest.approx(p.battery_npv + pv_npv, rel=1e-9)


def _weak_grid_file(tmp_path: Path, tariff: Path | None) -> Path:
    """The example site on a 1 MW grid; with `tariff`, an arbitrage section naming it."""
    text = OFFGRID.read_text().replace("import_limit_w: null", "import_limit_w: 1000000").replace(
        "mode: off_grid", "mode: weak_grid")
    if tariff is not None:
        text = text.replace("policies:\n", f"policies:\n  arbitrage: {{tariff: '{tariff}', step_s: 900}}\n")
    path = tmp_path / ("weak-priced.yaml" if tariff is not None else "weak.yaml")
    path.write_text(text)
    return path


def test_a_weak_grid_is_sized_with_its_import_billed_on_the_tariff(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """It refused the arbitrage section ('a tariff is needed'), a Dask worker printing the
    traceback; now the planner plans as live and the import's bill is the site's cost."""
    from ems.cli import main

    if not LOAD.exists():
        pytest.skip("shared data not present")
    tariff = ROOT.parent / "shared" / "data" / "tariffs" / "sam_urdbv7.json"
    npv = {}
    for name, path in (("free", _weak_grid_file(tmp_path, None)), ("priced", _weak_grid_file(tmp_path, tariff))):
        out_dir = tmp_path / name
        assert main(["size", "--config", str(path), "--load", str(LOAD), "--load-scale", "1000", "--energy-kwh",
                     "12000", "--power-kw", "3000", "--start", "2018-07-02", "--days", "2", "--workers", "1",
                     "--out", str(out_dir), "--quiet"]) == 0
        printed = capsys.readouterr().out
        assert ("not priced" in printed) == (name == "free"), printed
        with (out_dir / "sizing.csv").open() as fh:
            (row,) = list(csv.DictReader(fh))
        npv[name] = float(row["npv"])
    assert npv["priced"] < npv["free"]  # the import is a cost the free run left out


def test_a_workers_error_reaches_the_caller_as_the_error_it_is(tmp_path: Path,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    """A point's error in a worker comes back as the typed error with its message (Dask
    printed the worker's traceback before), and the sweep stops. (Raised in the worker it
    reached the caller as the same type too: what tells them apart is the worker's log.)"""
    if not LOAD.exists():
        pytest.skip("shared data not present")
    cfg = load_backtest_config(_weak_grid_file(tmp_path, tmp_path / "missing.json"))
    opts = BacktestOptions(load_csv=LOAD, load_scale=1000.0, start=datetime(2018, 7, 2), days=1, foresight=False)
    with pytest.raises(ConfigError, match="tariff: cannot read"):
        sweep(cfg, opts, [12000.0], [3000.0], workers=1)
    err = capfd.readouterr().err
    assert "Compute Failed" not in err and "Traceback" not in err, err
