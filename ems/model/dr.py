"""A demand-response event as the period step sees it: a window and what import it asks for.

Whoever brought it (an OpenADR VTN, the site's aggregator over MQTT, an operator over
HTTP, a backtest's CSV) it becomes this one value; the step (ems/period.py) turns it into
constraints. Times are the site's wall clock (epoch seconds), as the programs state them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# an event starting later than this from now is no program's (and one to the year 9999
# overflowed the planner's local calendar): every channel refuses it. A year, not a month: a
# refusal is remembered per event version (OpenADR 3) or answered once (2.0b opts out), so an
# event refused as too far ahead would stay refused when its day came
MAX_AHEAD_S = 366 * 86400.0


@dataclass(frozen=True, slots=True)
class DrEvent:
    event_id: str
    start_s: float  # wall clock, epoch seconds
    end_s: float
    target_import_w: float | None = None  # hold grid import at or under this ...
    reduction_w: float | None = None  # ... or this much under the baseline
    reduction_fraction: float | None = None  # ... or this share of the baseline under it
    baseline_w: float | None = None  # the program's baseline; None: the site's own import before the event
    price_per_kwh: float = 0.0  # what the program pays per kWh shifted below the baseline
    price_per_kw: float = 0.0  # and per kW of average reduction over the window
    penalty_per_kwh: float = 0.0  # what it charges per kWh imported over the target (the planner weighs it)
    source: str = "operator"  # openadr, mqtt, operator, backtest
    priority: int = 0  # where events overlap, the higher one is in force

    def __post_init__(self) -> None:
        asks = [v for v in (self.target_import_w, self.reduction_w, self.reduction_fraction) if v is not None]
        if len(asks) != 1:
            raise ValueError("a demand-response event needs exactly one of target_import_w, reduction_w and "
                             "reduction_fraction")
        if not all(math.isfinite(v) for v in (*asks, self.start_s, self.end_s, self.price_per_kwh, self.price_per_kw,
                                                   self.penalty_per_kwh)):
            raise ValueError("a demand-response event's numbers must be finite")
        if self.reduction_fraction is not None and not 0 <= self.reduction_fraction <= 1:
            raise ValueError("reduction_fraction must be within 0..1")
        if not self.end_s > self.start_s:
            raise ValueError("a demand-response event must end after it starts")

    def target_w(self, baseline_w: float) -> float:
        """The import target, given the baseline in force."""
        if self.target_import_w is not None:
            return self.target_import_w
        if self.reduction_fraction is not None:
            return baseline_w * (1.0 - self.reduction_fraction)
        assert self.reduction_w is not None
        return baseline_w - self.reduction_w
