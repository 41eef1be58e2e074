"""`ems size`: which battery, how big, does it pay? A grid of BESS energy x power (and PV
size, and genset size on an off-grid site), each point a backtest with the live period step
(ems/backtest/run.py; off-grid and weak-grid ems/backtest/offgrid_run.py: ems/sizing_offgrid.py),
on Dask.

Each point scales the site file's battery units to the point's energy and power (every
unit keeps its share, its efficiencies, SoC and ramp) and its economics: CAPEX and O&M
per kWh and per kW (`CostModel`; by default the site file's CAPEX and O&M per usable
kWh, nothing per kW). The points run as Dask tasks: on a `distributed.LocalCluster` of
`workers` processes (one thread each: a backtest is single-threaded Python) or on a
running scheduler (`scheduler` address: many machines). The recommended size is the
point with the highest NPV among those whose NPV is positive and that serve the whole load.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import zip_longest
from pathlib import Path
from typing import Any, Literal

from ems.backtest.config import BacktestConfig
from ems.backtest.errors import BacktestInputError
from ems.backtest.financials import check_price_per_kw, irr, npv
from ems.backtest.offgrid_run import is_offgrid
from ems.backtest.results import YEAR_S, savings_per_year
from ems.backtest.run import Backtest, BacktestOptions, run
from ems.backtest.series import PowerSeries, read_power_csv
from ems.model.errors import ConfigError, EmsError
from ems.sizing_offgrid import (
    UNSERVED_TOLERANCE_KWH,
    GensetCosts,
    check_gensets,
    run_offgrid_point,
    with_gensets,
)

Progress = Callable[[int, int], None]
# 10 GW: past any one site; PV far beyond it overflows the planner's sums (a traceback, not an answer)
MAX_PV_KW = 1e7


@dataclass(frozen=True)
class CostModel:
    capex_per_kwh: float
    capex_per_kw: float = 0.0
    om_per_kwh_year: float = 0.0

    @classmethod
    def from_config(cls, cfg: BacktestConfig) -> CostModel:
        e = cfg.economics
        if e is None:
            raise ConfigError("economics: `ems size` needs the site file's economics section (CAPEX, O&M)")
        kwh = sum(u.capacity_wh * u.soh for u in cfg.battery_units) / 1000.0
        return cls(e.capex / kwh, 0.0, e.om_per_year / kwh)


@dataclass(frozen=True)
class PvCosts:
    """PV as a third dimension: the given PV series is `series_kw` of panels, scaled to each
    point's size; priced per kW, its yield fading `degradation_per_year` (0.5 %/year: a
    common figure for crystalline modules)."""

    series_kw: float
    capex_per_kw: float
    om_per_kw_year: float = 0.0
    degradation_per_year: float = 0.005
    lifetime_years: int | None = None  # None: the battery's (panels often outlast it: 25 years and more)

    def __post_init__(self) -> None:
        if not (self.series_kw > 0 and math.isfinite(self.series_kw)):
            raise ConfigError("--pv-series-kw: the PV series' rating, a number > 0")
        for name in ("capex_per_kw", "om_per_kw_year"):
            check_price_per_kw(f"--pv-{name.replace('_', '-')}", getattr(self, name))
        if not 0.0 <= self.degradation_per_year < 1.0:
            raise ConfigError("--pv-degradation: a share of the yield a year, 0 to 1")
        if self.lifetime_years is not None and not 1 <= self.lifetime_years <= 100:
            raise ConfigError("--pv-lifetime-years: 1 to 100 years")

    def cash_flows(self, pv_kw: float, annual_savings: float, lifetime_years: int) -> list[float]:
        """Year 0 to the year after the lifetime (its own, else the battery's `lifetime_years`),
        as the battery's (financials.py)."""
        flows = [-self.capex_per_kw * pv_kw]
        flows += [annual_savings * (1.0 - self.degradation_per_year) ** (n - 1) - self.om_per_kw_year * pv_kw
                  for n in range(1, (self.lifetime_years or lifetime_years) + 1)]
        return [*flows, 0.0]


@dataclass(frozen=True)
class SizePoint:
    """One size. With PV swept, CAPEX, savings, NPV, payback and IRR are the battery's and
    the PV's together (the PV's savings against the site without it); with gensets swept,
    their CAPEX and O&M too (their fuel and rent are in the off-grid run's savings already);
    LCOS is the battery's. Off-grid, `peak_with_kw` is a weak grid's import peak (0 off-grid)."""

    energy_kwh: float
    power_kw: float
    capex: float
    annual_savings: float
    npv: float
    simple_payback_years: float | None
    irr: float | None
    lcos_per_kwh: float | None
    equivalent_full_cycles_per_year: float  # a year (a shorter run's scaled by its length)
    peak_with_kw: float
    wall_s: float
    soh_10y: float | None = None
    pv_kw: float | None = None  # None: PV not swept (the site's PV, if any, as given)
    pv_annual_savings: float = 0.0
    battery_npv: float | None = None  # the battery's alone, next to the PV (and gensets) of this point
    genset_kw: float | None = None  # the gensets' fleet rating; None: not swept (the site file's, if any)
    unserved_kwh: float | None = None  # off-grid and weak-grid: load not served over the run; None: grid-tied
    diesel_l_per_year: float | None = None  # off-grid and weak-grid: the site's gensets' fuel

    @property
    def serves_load(self) -> bool:
        return self.unserved_kwh is None or self.unserved_kwh <= UNSERVED_TOLERANCE_KWH


def sized(cfg: BacktestConfig, energy_kwh: float, power_kw: float, costs: CostModel,
          planning_step_s: int | None = None) -> BacktestConfig:
    """The site file with its battery scaled to `energy_kwh` usable and `power_kw`, and its
    economics to the point; the planner's step and cadence set to `planning_step_s` where given."""
    units = cfg.battery_units
    kwh = sum(u.capacity_wh * u.soh for u in units) / 1000.0
    kw = sum(u.rated_power_w for u in units) / 1000.0
    new_units = [u.model_copy(update={"capacity_wh": u.capacity_wh * energy_kwh / kwh,
                                      "rated_power_w": u.rated_power_w * power_kw / kw}) for u in units]
    update: dict[str, Any] = {"battery_units": new_units}
    if cfg.economics is not None:
        update["economics"] = cfg.economics.model_copy(update={
            "capex": costs.capex_per_kwh * energy_kwh + costs.capex_per_kw * power_kw,
            "om_per_year": costs.om_per_kwh_year * energy_kwh})
    arb = cfg.policies.arbitrage
    if planning_step_s is not None and arb is not None:
        arb = arb.model_copy(update={"step_s": planning_step_s, "planning_interval_s": float(planning_step_s)})
        update["policies"] = cfg.policies.model_copy(update={"arbitrage": arb})
    return cfg.model_copy(update=update)


def run_point(cfg: BacktestConfig, opts: BacktestOptions, energy_kwh: float, power_kw: float,
              costs: CostModel, planning_step_s: int | None, pv_kw: float | None = None,
              pv: PvCosts | None = None, genset_kw: float | None = None,
              gensets: GensetCosts | None = None) -> SizePoint:
    """One grid point: a backtest of the scaled site (runs on a Dask worker); with `pv_kw`,
    the PV series scaled to it and priced by `pv`; with `genset_kw` (off-grid), the site's
    gensets scaled to it and priced by `gensets`."""
    t0 = time.perf_counter()
    point_cfg = sized(cfg, energy_kwh, power_kw, costs, planning_step_s)
    if genset_kw is not None:
        point_cfg = with_gensets(point_cfg, genset_kw, rented=gensets is None or not gensets.bought)
    if pv_kw is not None:
        if pv is None or opts.pv_csv is None:
            raise BacktestInputError("a PV size needs the PV series and its costs")
        opts = replace(opts, pv_scale=opts.pv_scale * pv_kw / pv.series_kw)
    e = point_cfg.economics
    if e is None:
        raise BacktestInputError("no economics: cannot size")
    if is_offgrid(cfg):
        o = run_offgrid_point(point_cfg, cfg, opts)
        point = SizePoint(energy_kwh, power_kw, e.capex, o.annual_savings, o.npv, o.simple_payback_years, o.irr,
                          o.lcos_per_kwh, o.equivalent_full_cycles_per_year, o.grid_peak_kw, 0.0,
                          unserved_kwh=o.unserved_kwh, diesel_l_per_year=o.diesel_l_per_year)
        flows, pv_saved = list(o.cash_flows), o.pv_annual_savings
    else:
        bt = run(point_cfg, opts)
        r, fin = bt.result, bt.result.financials
        if fin is None:
            raise BacktestInputError("no economics: cannot size")
        to_year = YEAR_S / (bt.trace.grid_w.size * bt.trace.step_s)
        point = SizePoint(energy_kwh, power_kw, e.capex, fin.annual_savings, fin.npv, fin.simple_payback_years,
                          fin.irr, fin.lcos_per_kwh, r.total["equivalent_full_cycles"] * to_year,
                          r.total["peak_with_kw"], 0.0, None if r.ageing is None else float(r.ageing["soh_10y"]))
        flows, pv_saved = list(fin.cash_flows), 0.0 if pv_kw is None else pv_savings(bt)
    om_year1 = e.om_per_year
    if pv_kw is not None and pv is not None:
        point, flows = with_pv(point, pv, pv_kw, pv_saved, e.lifetime_years, e.discount_rate, om_year1, flows)
        om_year1 += pv.om_per_kw_year * pv_kw
    if genset_kw is not None:
        point, flows = _with_genset_costs(point, gensets or GensetCosts(), genset_kw, e.lifetime_years,
                                          e.discount_rate, om_year1, flows)
    return replace(point, wall_s=time.perf_counter() - t0)


def point_or_error(*args: Any) -> SizePoint | EmsError:
    """`run_point` on a worker, its own errors returned as values: the sweep raises them with
    their message (Dask would print a worker's traceback for a raised one)."""
    try:
        return run_point(*args)
    except EmsError as exc:
        return exc


def _with_genset_costs(point: SizePoint, g: GensetCosts, genset_kw: float, lifetime_years: int,
                       discount_rate: float, om_per_year: float, flows: Sequence[float]
                       ) -> tuple[SizePoint, list[float]]:
    """A bought fleet's CAPEX and O&M added to the project (its fuel and rent are in the run's
    savings already); the battery's NPV kept beside it, as the off-grid backtest reports it."""
    battery_npv = point.npv if point.battery_npv is None else point.battery_npv
    point = replace(point, genset_kw=genset_kw, battery_npv=battery_npv)
    return _joined(point, flows, g.cash_flows(genset_kw, lifetime_years), g.capex_per_kw * genset_kw, 0.0,
                   om_per_year + g.om_per_kw_year * genset_kw, discount_rate)


def pv_savings(bt: Backtest) -> float:
    """What the run's PV saves a year: the bill of the load without it against the load with
    it, both without the battery."""
    t = bt.trace
    if bt.pv_w is None:
        return 0.0
    return savings_per_year(bt.tariff, t.load_w + bt.pv_w, t.load_w, t.start, t.step_s)


def check_pv(opts: BacktestOptions, series: PowerSeries | None, pv_kws: Sequence[float], pv: PvCosts) -> None:
    """Before any point runs: the PV series (`series`, read from `opts.pv_csv`) is generation (a
    series signed as the meter sees export, < 0, would price panels as a yearly cost) and each
    size's peak a site's."""
    if series is None:
        raise ConfigError("--pv-kw needs --pv, the PV series")
    if float(series.values_w.sum()) < 0:
        raise BacktestInputError(f"{opts.pv_csv}: the PV series sums to less than 0; PV is generation, > 0")
    peak_kw = float(series.values_w.max()) / 1000.0 * max(pv_kws, default=0.0) / pv.series_kw
    if peak_kw > MAX_PV_KW:
        raise ConfigError(f"--pv-kw, --pv-series-kw: the largest PV size peaks at {peak_kw:,.3g} kW, past "
                          f"{MAX_PV_KW:,.0f} kW (10 GW)")


def with_pv(point: SizePoint, pv: PvCosts, pv_kw: float, pv_annual_savings: float, lifetime_years: int,
            discount_rate: float, om_per_year: float, flows: Sequence[float]) -> tuple[SizePoint, list[float]]:
    """The point as one project: its cash flows and the PV's added year by year (the
    shorter-lived one earns nothing past its end-of-life year: it is not replaced), and the
    summed flows. `om_per_year`: the project's O&M before the PV's."""
    pv_flows = pv.cash_flows(pv_kw, pv_annual_savings, lifetime_years)
    point = replace(point, pv_kw=pv_kw, pv_annual_savings=pv_annual_savings, battery_npv=point.npv)
    return _joined(point, flows, pv_flows, pv.capex_per_kw * pv_kw, pv_annual_savings,
                   om_per_year + pv.om_per_kw_year * pv_kw, discount_rate)


def _joined(point: SizePoint, flows: Sequence[float], more: Sequence[float], more_capex: float,
            more_savings: float, om_year1: float, discount_rate: float) -> tuple[SizePoint, list[float]]:
    """The point with a part's cash flows added year by year (`om_year1`: the whole project's
    O&M in year 1, for the simple payback), and the summed flows."""
    total = [a + b for a, b in zip_longest(flows, more, fillvalue=0.0)]
    capex, savings = point.capex + more_capex, point.annual_savings + more_savings
    net_year1 = savings - om_year1
    return replace(point, capex=capex, annual_savings=savings, npv=npv(discount_rate, total), irr=irr(total),
                   simple_payback_years=capex / net_year1 if net_year1 > 0 else None), total


def recommended(points: Sequence[SizePoint]) -> SizePoint | None:
    """The highest NPV among the points that pay (NPV > 0) and serve the whole load (off-grid:
    a point that saves money by leaving load dark is no design); None when none does."""
    paying = [p for p in points if p.npv > 0 and math.isfinite(p.npv) and p.serves_load]
    return max(paying, key=lambda p: p.npv) if paying else None


@dataclass(frozen=True)
class Sweep:
    points: tuple[SizePoint, ...]
    wall_s: float  # with the cluster's start and stop
    compute_s: float  # from the first task submitted to the last result
    workers: int
    scheduler: str

    @property
    def best(self) -> SizePoint | None:
        return recommended(self.points)

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {"points": [asdict(p) for p in self.points], "wall_s": self.wall_s, "compute_s": self.compute_s,
                "workers": self.workers,
                "scheduler": self.scheduler, "recommended": None if best is None else asdict(best),
                "point_s_mean": sum(p.wall_s for p in self.points) / max(1, len(self.points))}


def sweep(cfg: BacktestConfig, opts: BacktestOptions, energies_kwh: Sequence[float], powers_kw: Sequence[float], *,
          costs: CostModel | None = None, workers: int = 2, scheduler: str | None = None,
          planning_step_s: int | None = None, progress: Progress | None = None,
          pv_kws: Sequence[float] | None = None, pv: PvCosts | None = None,
          genset_kws: Sequence[float] | None = None, gensets: GensetCosts | None = None) -> Sweep:
    """Every (energy, power) of the grid, and PV size where `pv_kws` is given, and genset
    fleet rating where `genset_kws` is (off-grid or weak-grid with gensets), as a Dask task;
    results in grid order."""
    from distributed import Client, LocalCluster, as_completed

    costs = costs or CostModel.from_config(cfg)
    # a series that cannot be read ends here with its message, not in every worker (Dask printing its traceback)
    unit: Literal["kw", "w"] = "w" if opts.unit == "w" else "kw"
    read_power_csv(opts.load_csv, unit=unit, scale=opts.load_scale, start=opts.series_start)
    pv_series = None if opts.pv_csv is None else read_power_csv(opts.pv_csv, unit=unit, scale=opts.pv_scale,
                                                                 start=opts.series_start)
    if pv_kws is not None:
        if pv is None:
            raise ConfigError("--pv-kw needs the PV's costs")
        check_pv(opts, pv_series, pv_kws, pv)
    if genset_kws is not None:
        check_gensets(cfg, genset_kws)
    pv_grid: Sequence[float | None] = [None] if pv_kws is None else pv_kws
    genset_grid: Sequence[float | None] = [None] if genset_kws is None else genset_kws
    grid = [(e, p, k, g) for e in energies_kwh for p in powers_kw for k in pv_grid for g in genset_grid]
    t0 = time.perf_counter()
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,  # type: ignore[no-untyped-call]
                               dashboard_address=None)
        client = Client(cluster)  # type: ignore[no-untyped-call]
    else:
        client = Client(scheduler)  # type: ignore[no-untyped-call]
    try:
        n_workers = len(client.scheduler_info().get("workers", {}))
        t_submit = time.perf_counter()
        futures = {client.submit(point_or_error, cfg, opts, e, p, costs, planning_step_s, k, pv, g, gensets,
                                 pure=False): i
                   for i, (e, p, k, g) in enumerate(grid)}
        results: list[SizePoint | None] = [None] * len(grid)
        for done, fut in enumerate(as_completed(futures), start=1):  # type: ignore[no-untyped-call]
            point = fut.result()
            if isinstance(point, EmsError):
                raise point
            results[futures[fut]] = point
            if progress is not None:
                progress(done, len(grid))
        compute_s = time.perf_counter() - t_submit
    finally:
        client.close()  # type: ignore[no-untyped-call]
        if cluster is not None:
            cluster.close()
    points = tuple(p for p in results if p is not None)
    return Sweep(points, time.perf_counter() - t0, compute_s, n_workers, scheduler or "LocalCluster")


def parse_grid(text: str, name: str, allow_zero: bool = False) -> list[float]:
    """`a,b,c` or `start:stop:count` (inclusive, evenly spaced); every value > 0 (or >= 0
    with `allow_zero`: a PV size of 0 is the site without PV, a genset size of 0 without gensets)."""
    try:
        if ":" in text:
            a, b, n = text.split(":")
            lo, hi, k = float(a), float(b), int(n)
            if k < 1:
                raise ValueError
            out = [lo + (hi - lo) * i / (k - 1) for i in range(k)] if k > 1 else [lo]
        else:
            out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{name}: give a,b,c or start:stop:count with numbers, not {text!r}") from None
    if not out or any(not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero) for v in out):
        raise ConfigError(f"{name}: every value must be a number {'>=' if allow_zero else '>'} 0 ({text!r})")
    return out


def write_outputs(out: Path, s: Sweep, currency: str) -> list[Path]:
    import csv
    import json

    from ems.sizing_page import sizing_page

    out.mkdir(parents=True, exist_ok=True)
    rows = [asdict(p) for p in s.points]
    csv_path = out / "sizing.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["energy_kwh"])
        w.writeheader()
        w.writerows(rows)
    json_path = out / "sizing.json"
    json_path.write_text(json.dumps(s.as_dict(), indent=1) + "\n", encoding="utf-8")
    html_path = out / "sizing.html"
    html_path.write_text(sizing_page(s, currency), encoding="utf-8")
    return [csv_path, json_path, html_path]
