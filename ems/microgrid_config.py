"""The site file's `microgrid:` section: the operating mode, the gensets, the money and CO2.

    microgrid:
      mode: off_grid            # grid_connected (today's behaviour) | weak_grid | off_grid
      start_soc: 0.30           # a genset starts at or under this SoC ...
      stop_soc: 0.80            # ... and stops at or over this (hysteresis)
      gensets:
        - {id: gen-1, rated_power_w: 1500000}     # the default fuel curve of a 1.5 MW unit, scaled
        - {id: gen-2, rated_power_w: 1500000, fuel_l_per_h: [30, 122, 206, 295, 403]}
      co2_kg_per_l: 2.68
      diesel_price_per_l: 1.20
      genset_rental_per_month: 15000

A weak grid's import limit is `grid_connection.import_limit_w` (required in that mode).
See docs/off-grid.md.
"""

from __future__ import annotations

from itertools import pairwise

from pydantic import Field, model_validator

from ems.topology import MAX_S, MAX_W, Fraction, Strict
from policies import genset_dispatch, microgrid
from policies.fuel_curve import FuelCurve


class GensetConfig(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    rated_power_w: float = Field(gt=0, le=MAX_W)
    fuel_l_per_h: tuple[float, float, float, float, float] | None = Field(
        default=None, description="litres/h at 0/25/50/75/100 % load (datasheet); default: a 1.5 MW unit's, scaled")
    min_load_fraction: Fraction = Field(default=0.3, description="never loaded under this (wet stacking)")
    efficient_load_fraction: Fraction | None = Field(
        default=None, description="load while charging the battery; default: the fuel curve's best point")
    start_delay_s: float = Field(default=10.0, ge=0, le=MAX_S)
    warmup_s: float = Field(default=60.0, ge=0, le=MAX_S)
    min_run_s: float = Field(default=1800.0, ge=0, le=MAX_S)
    cooldown_s: float = Field(default=300.0, ge=0, le=MAX_S)

    @model_validator(mode="after")
    def _curve(self) -> GensetConfig:
        c = self.fuel_l_per_h
        if c is not None and (min(c) < 0 or any(b < a for a, b in pairwise(c)) or c[-1] <= 0):
            raise ValueError("fuel_l_per_h must be 5 non-negative, non-decreasing values (0/25/50/75/100 %)")
        eff = self.efficient_load_fraction
        if eff is not None and eff < self.min_load_fraction:
            raise ValueError("efficient_load_fraction must not be under min_load_fraction")
        return self

    def spec(self) -> genset_dispatch.GensetSpec:
        curve = FuelCurve.default_for(self.rated_power_w) if self.fuel_l_per_h is None else FuelCurve(self.fuel_l_per_h)
        eff = self.efficient_load_fraction
        eff = max(curve.best_load_fraction(), self.min_load_fraction) if eff is None else eff
        return genset_dispatch.GensetSpec(self.id, self.rated_power_w, curve, self.min_load_fraction, eff,
                                          self.start_delay_s, self.warmup_s, self.min_run_s, self.cooldown_s)


class GensetPlanConfig(Strict):
    """The gensets on the planner's MILP schedule (ems/planning/genset_milp.py), not the SoC
    thresholds alone: live from a persistence forecast of the site's demand."""

    every_s: float = Field(default=21600.0, ge=60, le=86400, description="re-solved this often")
    horizon_s: float = Field(default=86400.0, ge=3600, le=172800, description="planned this far ahead")


class MicrogridConfig(Strict):
    mode: microgrid.Mode = microgrid.Mode.GRID_CONNECTED
    gensets: list[GensetConfig] = Field(default_factory=list)
    start_soc: Fraction = 0.30
    stop_soc: Fraction = 0.80
    battery_margin: Fraction = Field(default=0.9, description="stage a genset in beyond this share of the battery")
    stage_down_load_fraction: Fraction = Field(default=0.7, description="stage out when the rest carry it at this")
    co2_kg_per_l: float = Field(default=2.68, ge=0, le=10, description="diesel: 2.68 kg CO2 per litre")
    diesel_price_per_l: float = Field(default=1.2, ge=0, description="fuel cost, in the site's currency")
    genset_rental_per_month: float = Field(default=0.0, ge=0, description="per genset (trucks are rented)")
    facility_overhead_w: float | None = Field(default=None, ge=0, le=MAX_W,
                                              description="cooling etc. beyond the IT load, for PUE")
    min_cap_fraction: Fraction = Field(
        default=0.25, description="live: a shed row's racks are capped at this share of their nameplate")
    shed_order: list[str] = Field(
        default_factory=list, description="live: rows capped first .. last (default: failover.shed_order, else "
                                          "the last row backwards); critical rows never")
    genset_plan: GensetPlanConfig | None = Field(
        default=None, description="the gensets on the planner's MILP schedule (default: the SoC thresholds alone)")
    shed_step_s: float = Field(default=30.0, gt=0, le=MAX_S, description="live: one more row capped at most this often")
    shed_release_s: float = Field(default=120.0, gt=0, le=MAX_S,
                                  description="live: one row released at most this often, and this long after a change")

    @model_validator(mode="after")
    def _check(self) -> MicrogridConfig:
        if self.start_soc >= self.stop_soc:
            raise ValueError("start_soc must be below stop_soc")
        ids = [g.id for g in self.gensets]
        if len(ids) != len(set(ids)):
            raise ValueError("gensets ids must be unique")
        return self

    def live_refusal(self, genset_device: bool, failover: bool, more_devices: tuple[str, ...] = ()) -> str | None:
        """Why `ems run` cannot run this section (None: it can). `genset_device`: the site file
        has a `genset` device (it is the first of the list); `more_devices`: the ids of its
        `gensets:` devices (the others, each by its id here); `failover`: failover is enabled.
        A weak grid's gensets would have to run in parallel with the grid, which no genset map
        here does yet."""
        n = len(self.gensets)
        if self.mode == microgrid.Mode.OFF_GRID:
            if failover:
                return "failover: an off_grid site has no grid to lose (remove the section or set enabled: false)"
            ids = [g.id for g in self.gensets]
            devices = ([ids[0]] if genset_device and ids else []) + list(more_devices)
            if unknown := sorted(set(more_devices) - set(ids)):
                return f"gensets: {', '.join(unknown)} names no microgrid.gensets entry"
            if missing := [g for g in ids if g not in devices]:
                return (f"microgrid.gensets: {', '.join(missing)} needs a genset device (the site's `genset` for "
                        "the first, a `gensets:` entry of that id for the others)")
            if len(devices) != len(set(devices)):
                return "gensets: the first genset is the site's `genset` device; do not list it again"
        if self.mode == microgrid.Mode.WEAK_GRID and n:
            return ("microgrid.gensets: on a weak grid a genset runs in parallel with the grid, which `ems run` "
                    "does not drive yet; `ems backtest` runs it (docs/off-grid.md)")
        return None

    def params(self, import_limit_w: float | None) -> microgrid.MicrogridParams | None:
        """The period step's parameters; None when grid-connected (today's behaviour)."""
        mode = microgrid.Mode(self.mode)
        if mode is microgrid.Mode.GRID_CONNECTED:
            return None
        d = genset_dispatch.DispatchParams(tuple(g.spec() for g in self.gensets), self.start_soc, self.stop_soc,
                                           self.battery_margin, self.stage_down_load_fraction)
        return microgrid.MicrogridParams(mode, d, import_limit_w or 0.0, self.co2_kg_per_l,
                                         self.facility_overhead_w)
