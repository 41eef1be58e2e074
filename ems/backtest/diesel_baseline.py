"""The owner's alternative: the same load on diesel gensets alone (rented trucks), sized N+1.

N units carry the peak; one more stands by. Each step runs the fewest units that carry the
load at no more than `max_loading` of their rating (spinning reserve for a step of the
load), sharing it equally, and never under their minimum loading (below it they burn the
fuel of the minimum: a load bank keeps them off wet stacking). No battery, no PV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from policies.genset_dispatch import GensetSpec

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DieselBaseline:
    units: int  # N + 1
    rated_w: float  # each
    fuel_l: float
    engine_h: float
    starts: int
    energy_kwh: float  # served by the gensets
    mean_loading: float  # of the units running, energy-weighted
    output_w: FloatArray = field(repr=False, compare=False)  # per step, all units together

    def summary(self) -> dict[str, float | int]:
        """The figures, without the series."""
        return {"units": self.units, "rated_w": self.rated_w, "fuel_l": self.fuel_l, "engine_h": self.engine_h,
                "starts": self.starts, "energy_kwh": self.energy_kwh, "mean_loading": self.mean_loading}


def diesel_only(load_w: FloatArray, step_s: float, unit: GensetSpec, max_loading: float = 0.8,
                pv_w: FloatArray | None = None) -> DieselBaseline:
    """With `pv_w`, the trucks and PV without a battery: sized on the load's peak (PV may be
    absent at it), carrying the load less PV; PV that would push them under their minimum
    loading is curtailed."""
    peak = float(np.max(load_w)) if load_w.size else 0.0
    n_units = max(1, math.ceil(peak / unit.rated_w)) + 1
    if pv_w is not None:
        load_w = np.maximum(load_w - np.maximum(pv_w, 0.0), 0.0)
    return _trucks(np.maximum(load_w, 0.0), step_s, unit, n_units, max_loading, min_on=1)


def weak_grid_only(load_w: FloatArray, step_s: float, unit: GensetSpec, import_limit_w: float,
                   max_loading: float = 0.8, pv_w: FloatArray | None = None) -> tuple[DieselBaseline, FloatArray]:
    """A weak grid's site without a battery: PV first (what the load cannot take is curtailed:
    the grid takes no export), the grid up to its limit, trucks the rest, sized N+1 on that
    rest's peak (none where the grid always suffices). A truck running is never under its
    minimum loading: the grid gives that much less. Returns the trucks and the import per step."""
    net_w = np.maximum(load_w - (0.0 if pv_w is None else np.maximum(pv_w, 0.0)), 0.0)
    rest_w = np.maximum(net_w - import_limit_w, 0.0)
    peak = float(np.max(rest_w)) if rest_w.size else 0.0
    n_units = math.ceil(peak / unit.rated_w) + 1 if peak > 0 else 0
    trucks = _trucks(rest_w, step_s, unit, n_units, max_loading, min_on=0)
    # a truck whose minimum loading is more than the site draws dumps the rest on its load bank
    return trucks, np.maximum(net_w - trucks.output_w, 0.0)


def _trucks(load_w: FloatArray, step_s: float, unit: GensetSpec, n_units: int, max_loading: float,
            min_on: int) -> DieselBaseline:
    """Each step the fewest of `n_units` (at least `min_on`) that carry `load_w` at no more than
    `max_loading`, sharing it equally, each at least at its minimum loading."""
    dt_h = step_s / 3600.0
    if n_units == 0:
        return DieselBaseline(0, unit.rated_w, 0.0, 0.0, 0, 0.0, 0.0, np.zeros_like(load_w))
    on = np.clip(np.ceil(load_w / (unit.rated_w * max_loading)), min_on, n_units).astype(np.int64)
    share = np.where(on > 0, np.maximum(load_w / (np.maximum(on, 1) * unit.rated_w), unit.min_load_fraction), 0.0)
    curve = unit.fuel
    per_unit_l_h = np.interp(np.minimum(share, 1.0), (0.0, 0.25, 0.5, 0.75, 1.0), curve.litres_per_h)
    fuel = float((per_unit_l_h * on).sum() * dt_h)
    starts = int(np.maximum(np.diff(on, prepend=0), 0).sum())
    output_w: FloatArray = np.asarray(share * on * unit.rated_w, dtype=np.float64)
    energy = float(output_w.sum() * dt_h / 1000.0)
    loading = float((share * on).sum() / on.sum()) if on.sum() else 0.0
    return DieselBaseline(n_units, unit.rated_w, fuel, float(on.sum() * dt_h), starts, energy, loading, output_w)
