"""`ems size`: which battery, how big, does it pay? A grid of BESS energy x power, each
point a backtest with the live period step (ems/backtest/run.py), on Dask.

Each point scales the site file's battery units to the point's energy and power (every
unit keeps its share, its efficiencies, SoC and ramp) and its economics: CAPEX and O&M
per kWh and per kW (`CostModel`; by default the site file's CAPEX and O&M per usable
kWh, nothing per kW). The points run as Dask tasks: on a `distributed.LocalCluster` of
`workers` processes (one thread each: a backtest is single-threaded Python) or on a
running scheduler (`scheduler` address: many machines). The recommended size is the
point with the highest NPV among those whose NPV is positive.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ems.backtest.config import BacktestConfig
from ems.backtest.errors import BacktestInputError
from ems.backtest.run import BacktestOptions, run
from ems.model.errors import ConfigError

Progress = Callable[[int, int], None]


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
class SizePoint:
    energy_kwh: float
    power_kw: float
    capex: float
    annual_savings: float
    npv: float
    simple_payback_years: float | None
    irr: float | None
    lcos_per_kwh: float | None
    equivalent_full_cycles: float
    peak_with_kw: float
    wall_s: float
    soh_10y: float | None = None


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
              costs: CostModel, planning_step_s: int | None) -> SizePoint:
    """One grid point: a backtest of the scaled site (runs on a Dask worker)."""
    t0 = time.perf_counter()
    point_cfg = sized(cfg, energy_kwh, power_kw, costs, planning_step_s)
    r = run(point_cfg, opts).result
    fin = r.financials
    if fin is None or point_cfg.economics is None:
        raise BacktestInputError("no economics: cannot size")
    return SizePoint(energy_kwh, power_kw, point_cfg.economics.capex, fin.annual_savings, fin.npv,
                     fin.simple_payback_years, fin.irr, fin.lcos_per_kwh, r.total["equivalent_full_cycles"],
                     r.total["peak_with_kw"], time.perf_counter() - t0,
                     None if r.ageing is None else float(r.ageing["soh_10y"]))


def recommended(points: Sequence[SizePoint]) -> SizePoint | None:
    """The highest NPV among the points that pay (NPV > 0); None when none does."""
    paying = [p for p in points if p.npv > 0 and math.isfinite(p.npv)]
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
          planning_step_s: int | None = None, progress: Progress | None = None) -> Sweep:
    """Every (energy, power) of the grid as a Dask task; results in grid order."""
    from distributed import Client, LocalCluster, as_completed

    costs = costs or CostModel.from_config(cfg)
    grid = [(e, p) for e in energies_kwh for p in powers_kw]
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
        futures = {client.submit(run_point, cfg, opts, e, p, costs, planning_step_s, pure=False): i
                   for i, (e, p) in enumerate(grid)}
        results: list[SizePoint | None] = [None] * len(grid)
        for done, fut in enumerate(as_completed(futures), start=1):  # type: ignore[no-untyped-call]
            results[futures[fut]] = fut.result()
            if progress is not None:
                progress(done, len(grid))
        compute_s = time.perf_counter() - t_submit
    finally:
        client.close()  # type: ignore[no-untyped-call]
        if cluster is not None:
            cluster.close()
    points = tuple(p for p in results if p is not None)
    return Sweep(points, time.perf_counter() - t0, compute_s, n_workers, scheduler or "LocalCluster")


def parse_grid(text: str, name: str) -> list[float]:
    """`a,b,c` or `start:stop:count` (inclusive, evenly spaced); every value > 0."""
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
    if not out or any(not math.isfinite(v) or v <= 0 for v in out):
        raise ConfigError(f"{name}: every value must be a number > 0 ({text!r})")
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
