"""A genset's fuel curve: litres per hour at 0, 25, 50, 75 and 100 % load, interpolated.

The default is a typical 1.5 MW diesel unit, from the fuel chart generator suppliers
publish (1500 kW: 121.9 / 205.6 / 294.6 / 403.2 l/h at 25 / 50 / 75 / 100 %; see
docs/off-grid.md); 0 % (idling, and warm-up and cool-down, which carry no load) is our
extrapolation of that line, 30 l/h. A unit of another size without its own curve gets the
default scaled by its rating.
"""

from __future__ import annotations

from dataclasses import dataclass

LOAD_POINTS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_RATED_W = 1_500_000.0
DEFAULT_L_PER_H = (30.0, 121.9, 205.6, 294.6, 403.2)


@dataclass(frozen=True, slots=True)
class FuelCurve:
    litres_per_h: tuple[float, float, float, float, float]  # at LOAD_POINTS

    @classmethod
    def default_for(cls, rated_w: float) -> FuelCurve:
        k = rated_w / DEFAULT_RATED_W
        a, b, c, d, e = (v * k for v in DEFAULT_L_PER_H)
        return cls((a, b, c, d, e))

    def l_per_h(self, load_fraction: float) -> float:
        """Consumption at `load_fraction` of rating (clamped to 0..1), linear between points."""
        x = min(1.0, max(0.0, load_fraction))
        i = min(3, int(x * 4))
        lo, hi = self.litres_per_h[i], self.litres_per_h[i + 1]
        return lo + (hi - lo) * (x - LOAD_POINTS[i]) / 0.25

    def best_load_fraction(self) -> float:
        """The point of the curve with the fewest litres per kWh (never 0 %)."""
        per_kwh = [self.litres_per_h[i] / LOAD_POINTS[i] for i in range(1, 5)]
        return LOAD_POINTS[1 + per_kwh.index(min(per_kwh))]
