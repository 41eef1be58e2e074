"""The owner's alternative: the same load on diesel gensets alone (rented trucks), sized N+1.

N units carry the peak; one more stands by. Each step runs the fewest units that carry the
load at no more than `max_loading` of their rating (spinning reserve for a step of the
load), sharing it equally, and never under their minimum loading (below it they burn the
fuel of the minimum: a load bank keeps them off wet stacking). No battery, no PV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def diesel_only(load_w: FloatArray, step_s: float, unit: GensetSpec, max_loading: float = 0.8,
                pv_w: FloatArray | None = None) -> DieselBaseline:
    """With `pv_w`, the trucks and PV without a battery: sized on the load's peak (PV may be
    absent at it), carrying the load less PV; PV that would push them under their minimum
    loading is curtailed."""
    peak = float(np.max(load_w)) if load_w.size else 0.0
    n_units = max(1, math.ceil(peak / unit.rated_w)) + 1
    if pv_w is not None:
        load_w = np.maximum(load_w - np.maximum(pv_w, 0.0), 0.0)
    on = np.clip(np.ceil(np.maximum(load_w, 0.0) / (unit.rated_w * max_loading)), 1, n_units).astype(np.int64)
    share = np.maximum(np.maximum(load_w, 0.0) / (on * unit.rated_w), unit.min_load_fraction)
    curve = unit.fuel
    per_unit_l_h = np.interp(np.minimum(share, 1.0), (0.0, 0.25, 0.5, 0.75, 1.0), curve.litres_per_h)
    dt_h = step_s / 3600.0
    fuel = float((per_unit_l_h * on).sum() * dt_h)
    starts = int(np.maximum(np.diff(on, prepend=0), 0).sum())
    energy = float((share * on * unit.rated_w).sum() * dt_h / 1000.0)
    loading = float((share * on).sum() / on.sum())
    return DieselBaseline(n_units, unit.rated_w, fuel, float(on.sum() * dt_h), starts, energy, loading)
