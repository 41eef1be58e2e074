"""A demand-response program's baseline: the import the site would have drawn in an event's
window, computed from the measured history the way the program settles it.

Pure: a history of step averages (the newest last, ending at a known local time), the
window, the rule and the days to leave out come in; the baseline comes out.

The rule is the "N similar days" family most programs use:

1. the last `days` days of the event day's class (weekday or weekend/holiday) before it,
   leaving out days with an event of their own, within `max_lookback_days`;
2. of those, the `top` days with the highest load over the window's hours, averaged step
   by step over the window (`top == days`: the plain average);
3. a day-of adjustment from the `adjust_hours` ending `adjust_gap_h` before the event: the
   event day's measured load there against the baseline days' load at the same hours, as
   a ratio capped at +-`adjust_cap` (`ratio`) or as a difference added (`additive`).

Presets, as the programs publish them (ours is an implementation of the rule as stated
there, not a settlement-grade copy: no holiday calendar beyond the one passed in, no
minimum-day fallbacks):

* `caiso_10in10`: CAISO's 10-in-10 customer load baseline (Business Practice Manual for
  Metering, performance evaluation methodologies): the average of the 10 most recent
  non-event like days (weekends/holidays: 4 in 4), with a load point adjustment from the
  hours before the event, capped at +-20 %.
* `pjm_high4of5`: PJM's economic customer baseline (Manual 11, "High 4 of 5"): of the 5
  most recent non-event weekdays within 45 days, the 4 with the highest load over the
  event hours (weekends: high 2 of 3), with the symmetric additive adjustment from the
  3 hours ending 1 hour before the event.
* `nyiso_high5of10`: NYISO's (and many US utilities') "high 5 of 10" weekday baseline,
  with a ratio adjustment from the 2 hours ending 1 hour before (capped at +-20 %; the
  programs differ on the cap).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from ems.model.errors import EmsError
from ems.tariff.calendar import local_datetime

FloatArray = npt.NDArray[np.float64]
DAY_S = 86_400.0
ADJUSTMENTS = ("none", "ratio", "additive")


class BaselineRuleError(EmsError):
    """A baseline rule's setting is out of range (the message names the field)."""


@dataclass(frozen=True, slots=True)
class BaselineRule:
    days: int = 10  # similar days looked back on (weekdays)
    top: int = 10  # of those, the highest by the window's load, averaged
    weekend_days: int = 4  # the same for an event on a weekend or holiday
    weekend_top: int = 4
    adjustment: str = "ratio"  # "none", "ratio" (capped), "additive"
    adjust_hours: float = 3.0  # the day-of adjustment's window: this long ...
    adjust_gap_h: float = 1.0  # ... ending this long before the event
    adjust_cap: float = 0.2  # the ratio adjustment within 1 +- this
    max_lookback_days: int = 45

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise BaselineRuleError(f"baseline.{name} {rule} (got {getattr(self, name)!r})")

        need(self.days >= 1, "days", "must be >= 1")
        need(1 <= self.top <= self.days, "top", "must be within 1..days")
        need(self.weekend_days >= 1, "weekend_days", "must be >= 1")
        need(1 <= self.weekend_top <= self.weekend_days, "weekend_top", "must be within 1..weekend_days")
        need(self.adjustment in ADJUSTMENTS, "adjustment", f"must be one of {', '.join(ADJUSTMENTS)}")
        need(self.adjust_hours > 0 and math.isfinite(self.adjust_hours), "adjust_hours", "must be > 0")
        need(self.adjust_gap_h >= 0 and math.isfinite(self.adjust_gap_h), "adjust_gap_h", "must be >= 0")
        need(0 <= self.adjust_cap <= 1, "adjust_cap", "must be within 0..1")
        need(self.max_lookback_days >= self.days, "max_lookback_days", "must be >= days")


PRESETS: dict[str, BaselineRule] = {
    "caiso_10in10": BaselineRule(10, 10, 4, 4, "ratio", 3.0, 1.0, 0.2),
    "pjm_high4of5": BaselineRule(5, 4, 3, 2, "additive", 3.0, 1.0, 0.0),
    "nyiso_high5of10": BaselineRule(10, 5, 4, 2, "ratio", 2.0, 1.0, 0.2),
}


@dataclass(frozen=True, slots=True)
class Baseline:
    baseline_w: float  # the window's average baseline, adjusted
    days: tuple[date, ...]  # the days averaged
    unadjusted_w: float
    adjustment: float  # the ratio applied (ratio) or the W added (additive); 1.0 / 0.0 for none


def _weekend(d: date, holidays: Collection[date]) -> bool:
    return d.weekday() >= 5 or d in holidays


def _mean(history_w: FloatArray, first_step_s: float, step_s: float, a_s: float, b_s: float) -> float | None:
    """The history's average over [a_s, b_s) (local seconds), None where not all of it is there."""
    i = math.floor((a_s - first_step_s) / step_s + 1e-9)
    j = math.ceil((b_s - first_step_s) / step_s - 1e-9)
    if i < 0 or j > history_w.size or j <= i:
        return None
    return float(history_w[i:j].mean())


def program_baseline(history_w: FloatArray, history_end_s: float, step_s: float, start_s: float, end_s: float,
                     rule: BaselineRule, event_days: Collection[date] = (),
                     holidays: Collection[date] = ()) -> Baseline | None:
    """The baseline of the window [start_s, end_s) (naive local seconds), from `history_w`:
    step averages (W), the newest covering [history_end_s - step_s, history_end_s).
    None when the history does not hold enough similar days."""
    first_s = history_end_s - history_w.size * step_s
    day0 = local_datetime(start_s).date()
    weekend = _weekend(day0, holidays)
    want, top = (rule.weekend_days, rule.weekend_top) if weekend else (rule.days, rule.top)
    picked: list[tuple[float, date]] = []  # (the day's window load, the day)
    for back in range(1, rule.max_lookback_days + 1):
        d = day0 - timedelta(days=back)
        if _weekend(d, holidays) != weekend or d in event_days:
            continue
        w = _mean(history_w, first_s, step_s, start_s - back * DAY_S, end_s - back * DAY_S)
        if w is None:  # the history ends here
            break
        picked.append((w, d))
        if len(picked) == want:
            break
    if len(picked) < want:
        return None
    chosen = sorted(picked, key=lambda p: -p[0])[:top]
    base_w = sum(w for w, _ in chosen) / len(chosen)
    days = tuple(sorted(d for _, d in chosen))
    if rule.adjustment == "none":
        return Baseline(base_w, days, base_w, 1.0)
    a_s = start_s - (rule.adjust_gap_h + rule.adjust_hours) * 3600.0
    b_s = start_s - rule.adjust_gap_h * 3600.0
    actual = _mean(history_w, first_s, step_s, a_s, b_s)
    backs = [(day0 - d).days for d in days]
    usual = [_mean(history_w, first_s, step_s, a_s - k * DAY_S, b_s - k * DAY_S) for k in backs]
    if actual is None or any(u is None for u in usual):  # no day-of data yet: unadjusted
        return Baseline(base_w, days, base_w, 1.0 if rule.adjustment == "ratio" else 0.0)
    usual_w = sum(u for u in usual if u is not None) / len(usual)
    if rule.adjustment == "additive":
        return Baseline(base_w + actual - usual_w, days, base_w, actual - usual_w)
    ratio = 1.0 if usual_w <= 0 else min(max(actual / usual_w, 1.0 - rule.adjust_cap), 1.0 + rule.adjust_cap)
    return Baseline(base_w * ratio, days, base_w, ratio)
