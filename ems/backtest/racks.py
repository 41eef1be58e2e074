"""GPU racks in a backtest: a share of the replayed load, which the period step's rack caps
hold back as they would live.

A backtest's load is one series. Where the backtest file names `racks` (rows, racks per
row, nameplate, and `gpu_share`: the part of the load that is GPU racks), that share is
spread evenly over the racks (each at most its nameplate); each step the racks read as
drawing their demand under the caps in force, the step decides (demand response's caps by
flex tier, the same `policies/demand_response.py` as live), and what the new caps hold back
comes off the load the meter sees. The energy held back, by tier, is the truth the
controller's own estimate (the event's tally) is compared with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from pydantic import Field

from ems.model.racks import FloatArray, RacksReading
from ems.topology import RacksConfig
from policies.demand_response import TIERS


class BacktestRacksConfig(RacksConfig):
    gpu_share: float = Field(gt=0, le=1, description="the share of the load series that is GPU racks")


class ReplayedRacks:
    def __init__(self, cfg: BacktestRacksConfig, tier_of_row: Mapping[str, int], default_tier: int) -> None:
        self.cfg = cfg
        self.ids = tuple(cfg.rack_ids())
        self.rows = tuple(rid.split("-")[0] for rid in self.ids)
        self.nameplate_w = np.full(len(self.ids), cfg.nameplate_w)
        self.tiers = np.array([tier_of_row.get(row, default_tier) for row in self.rows], dtype=int)
        self.cap_w: FloatArray = np.full(len(self.ids), np.nan)  # in force; NaN: none
        self.held_wh = np.zeros(TIERS)  # energy the caps held back, by tier
        self.demand_wh = np.zeros(TIERS)  # the racks' demand during events, by tier

    def demand_w(self, load_w: float) -> FloatArray:
        """Each rack's demand: its share of the load's GPU part, at most its nameplate."""
        each = max(load_w, 0.0) * self.cfg.gpu_share / len(self.ids)
        demand: FloatArray = np.minimum(np.full(len(self.ids), each), self.nameplate_w)
        return demand

    def _served_w(self, demand: FloatArray) -> FloatArray:
        served: FloatArray = np.where(np.isnan(self.cap_w), demand, np.minimum(demand, self.cap_w))
        return served

    def reading(self, load_w: float) -> RacksReading:
        """The racks as telemetry reads them: their demand under the caps in force."""
        n = len(self.ids)
        return RacksReading(self.ids, self.rows, self._served_w(self.demand_w(load_w)), self.cap_w.copy(),
                            self.nameplate_w, np.zeros(n), math.inf)

    def held_w(self, load_w: float) -> float:
        """What the caps in force hold back of `load_w`."""
        demand = self.demand_w(load_w)
        return float((demand - self._served_w(demand)).sum())

    def apply(self, caps_w: Mapping[str, float | None], load_w: float, dt_s: float, event: bool) -> float:
        """The step's caps (a rack not named keeps its cap; None releases it); returns what they
        hold back of `load_w` over the step, and books it by tier (the demand: while an event runs)."""
        for i, rid in enumerate(self.ids):
            if rid in caps_w:
                cap = caps_w[rid]
                self.cap_w[i] = np.nan if cap is None else cap
        demand = self.demand_w(load_w)
        held = demand - self._served_w(demand)
        for t in range(TIERS):
            self.held_wh[t] += float(held[self.tiers == t].sum()) * dt_s / 3600.0
            if event:
                self.demand_wh[t] += float(demand[self.tiers == t].sum()) * dt_s / 3600.0
        return float(held.sum())
