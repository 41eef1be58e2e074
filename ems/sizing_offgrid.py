"""`ems size` on an off-grid or weak-grid site (docs/backtest.md, Sizing; docs/off-grid.md).

Each point is the off-grid backtest of the scaled site (ems/backtest/offgrid_run.py: no
tariff; the money is fuel and genset rent), and its money the storage's financials that
backtest reports: the site (battery, its gensets, its PV) against the same diesel trucks
with the same PV and no battery (ems/backtest/offgrid_report.py). The trucks stay the site
file's whatever the point's gensets are: they are the owner's alternative, not the design.

The gensets are a dimension where the site file configures them: the fleet scaled to each
`--genset-kw` (every genset keeps its share; its fuel curve and rent scale with it; 0 kW:
no gensets), its fuel and rent in the backtest's own cost, and a bought fleet's CAPEX and
O&M per kW (`GensetCosts`; it then pays no rent) added as cash flows over the battery's lifetime. A point that
leaves load unserved is never recommended (ems/sizing.py `recommended`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ems.backtest.config import BacktestConfig
from ems.backtest.errors import BacktestInputError
from ems.backtest.financials import check_price_per_kw
from ems.backtest.offgrid_report import YEAR_S
from ems.backtest.offgrid_run import is_offgrid, run_offgrid
from ems.backtest.run import BacktestOptions
from ems.model.errors import ConfigError
from ems.topology import MAX_W

# load left unserved below this is float dust in the account, not load (1 Wh)
UNSERVED_TOLERANCE_KWH = 1e-3
MIN_GENSET_KW = 1.0  # a smaller one is a typo, not an engine


@dataclass(frozen=True)
class GensetCosts:
    """A bought fleet: installed cost and O&M a year per kW of rating. Both 0 by default: the
    site file's gensets are rented (`microgrid.genset_rental_per_month`, in the run's cost)."""

    capex_per_kw: float = 0.0
    om_per_kw_year: float = 0.0

    def __post_init__(self) -> None:
        for name in ("capex_per_kw", "om_per_kw_year"):
            check_price_per_kw(f"--genset-{name.replace('_', '-')}", getattr(self, name))

    @property
    def bought(self) -> bool:
        """Priced as owned: the fleet then pays no rent (else its CAPEX came on top of the rent)."""
        return self.capex_per_kw > 0 or self.om_per_kw_year > 0

    def cash_flows(self, genset_kw: float, lifetime_years: int) -> list[float]:
        """Year 0 to the year after the lifetime, as the battery's (financials.py)."""
        return [-self.capex_per_kw * genset_kw, *[-self.om_per_kw_year * genset_kw] * lifetime_years, 0.0]


def fleet_kw(cfg: BacktestConfig) -> float:
    mg = cfg.microgrid
    return 0.0 if mg is None else sum(g.rated_power_w for g in mg.gensets) / 1000.0


def check_gensets(cfg: BacktestConfig, genset_kws: Sequence[float]) -> None:
    """Before any point runs: gensets to scale, and no genset past a site's 10 GW."""
    if not is_offgrid(cfg):
        raise ConfigError("--genset-kw: gensets are sized on an off_grid or weak_grid site (microgrid.mode); "
                          "a grid-connected site's genset does not move its bill")
    if fleet_kw(cfg) <= 0:
        raise ConfigError("--genset-kw: the site file configures no gensets to scale (microgrid.gensets)")
    assert cfg.microgrid is not None
    shares = [g.rated_power_w / (fleet_kw(cfg) * 1000.0) for g in cfg.microgrid.gensets]  # of the fleet
    biggest_w = max(shares) * max(genset_kws, default=0.0) * 1000.0
    if biggest_w > MAX_W:
        raise ConfigError(f"--genset-kw: {max(genset_kws):,.3g} kW makes a genset of {biggest_w / 1000:,.3g} kW, "
                          f"past {MAX_W / 1000:,.0f} kW (10 GW)")
    smallest_kw = min((k for k in genset_kws if k > 0), default=None)
    if smallest_kw is not None and min(shares) * smallest_kw < MIN_GENSET_KW:
        raise ConfigError(f"--genset-kw: {smallest_kw:,.3g} kW makes a genset of {min(shares) * smallest_kw:,.3g} "
                          f"kW, under {MIN_GENSET_KW:g} kW (0 sizes the site without gensets)")


def with_gensets(cfg: BacktestConfig, genset_kw: float, rented: bool = True) -> BacktestConfig:
    """The site with its gensets scaled together to `genset_kw` of rating (0: none). Each keeps
    its share of the fleet; a datasheet fuel curve scales with the rating (the same litres per
    kWh at each loading: a bigger engine of the same family; the default curve is scaled from
    the rating anyway), and so does the rent per genset (a bigger truck rents for more); a
    fleet not `rented` (bought: `GensetCosts`) pays none."""
    mg = cfg.microgrid
    if mg is None or fleet_kw(cfg) <= 0:
        raise BacktestInputError("no gensets to scale")
    k = genset_kw / fleet_kw(cfg)
    gensets = [] if genset_kw == 0 else [
        g.model_copy(update={"rated_power_w": g.rated_power_w * k,
                             "fuel_l_per_h": None if g.fuel_l_per_h is None else tuple(v * k for v in g.fuel_l_per_h)})
        for g in mg.gensets]
    return cfg.model_copy(update={"microgrid": mg.model_copy(update={
        "gensets": gensets, "genset_rental_per_month": mg.genset_rental_per_month * k if rented else 0.0})})


@dataclass(frozen=True)
class OffgridRun:
    """What a point takes from the off-grid backtest (money per year where it says so)."""

    annual_savings: float  # the battery's part, year 1: trucks with the same PV less the site's fuel and rent
    cash_flows: tuple[float, ...]  # the storage's (financials.py), on that
    npv: float
    simple_payback_years: float | None
    irr: float | None
    lcos_per_kwh: float | None
    equivalent_full_cycles_per_year: float  # a year (the run's, scaled by its length)
    grid_peak_kw: float  # a weak grid's import peak; 0 off-grid
    unserved_kwh: float  # over the run
    diesel_l_per_year: float
    pv_annual_savings: float  # PV's part: the trucks without PV against the trucks with it


def run_offgrid_point(point_cfg: BacktestConfig, site_cfg: BacktestConfig, opts: BacktestOptions) -> OffgridRun:
    """The off-grid backtest of one point (at `OFFGRID_STEP_S` unless the options give a step),
    its baseline the site file's trucks (`site_cfg`)."""
    trace, r = run_offgrid(point_cfg, opts, trucks=site_cfg.microgrid)
    fin = r["financials"]
    if fin is None:
        raise BacktestInputError("no economics: cannot size")
    to_year = YEAR_S / (r["run"]["days"] * 86400.0)
    ref = r.get("baseline_with_pv")
    pv_saved = 0.0 if ref is None else (r["baseline"]["cost"] - ref["cost"]) * to_year
    return OffgridRun(fin["annual_savings"], tuple(fin["cash_flows"]), fin["npv"], fin["simple_payback_years"],
                      fin["irr"], fin["lcos_per_kwh"], trace.discharged_wh / trace.capacity_wh * to_year,
                      float(max(trace.grid_w.max(initial=0.0), 0.0)) / 1000.0, r["unserved_kwh"],
                      r["diesel_litres"] * to_year, pv_saved)
