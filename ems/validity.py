"""Telemetry validity beyond staleness: every value has an age and a validity.

A reading that is stale, out of physical range or implausible (a meter frozen on the
very same value, a SoC jump no battery can make, a PCS power far beyond its rating) is
set aside with a stable reason code — never read as 0 — and counted. The transition
observer (ems/transitions.py) logs and records each change once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ems.model.readings import MeterReading
from ems.model.reasons import Reason
from ems.model.snapshot import UnitSnapshot


@dataclass(frozen=True, slots=True)
class ValidityParams:
    meter_max_abs_w: float  # beyond this the meter reading is implausible
    meter_frozen_s: float  # the exact same power for this long means a frozen meter (0: off)
    soc_max_rate_per_s: float  # fastest SoC change a unit can make (from C-rate), plus slack below
    soc_jump_slack: float = 0.02
    pcs_power_margin: float = 1.6  # a PCS reporting more than rated x this is implausible
    temperature_range_c: tuple[float, float] = (-40.0, 90.0)


class ValidityTracker:
    def __init__(self, p: ValidityParams) -> None:
        self.p = p
        self._meter_value: float | None = None
        self._meter_same_since_s: float | None = None
        self._last_soc: dict[str, tuple[float, float]] = {}  # unit -> (soc, read_at_s) last trusted
        self.meter_invalid: Reason | None = None
        self.meter_invalid_since_s: float | None = None
        self.unit_invalid: dict[str, Reason] = {}
        self.rejected: dict[str, int] = {}

    def _count(self, what: str) -> None:
        self.rejected[what] = self.rejected.get(what, 0) + 1

    def check_meter(self, m: MeterReading | None, now_s: float) -> MeterReading | None:
        """The meter reading if trusted, else None with `meter_invalid` saying why."""
        why: Reason | None = None
        if m is None:
            why = Reason.STALE_METER
        elif abs(m.grid_power_w) > self.p.meter_max_abs_w:
            why = Reason.METER_IMPLAUSIBLE
        elif self.p.meter_frozen_s > 0:
            if self._meter_value != m.grid_power_w or self._meter_same_since_s is None:
                self._meter_value, self._meter_same_since_s = m.grid_power_w, m.read_at_s
            elif m.read_at_s - self._meter_same_since_s >= self.p.meter_frozen_s:
                why = Reason.METER_FROZEN
        if why is not None and why is not Reason.STALE_METER:
            self._count(why.code)
        if why is None:
            self.meter_invalid = self.meter_invalid_since_s = None
            return m
        if self.meter_invalid is None:
            self.meter_invalid_since_s = now_s
        self.meter_invalid = why
        return None

    def check_unit(self, u: UnitSnapshot) -> UnitSnapshot:
        """The unit as given, or made unavailable with the reason its data is not trusted."""
        why: Reason | None = None
        bms, pcs = u.bms, u.pcs
        if bms is not None:
            lo, hi = self.p.temperature_range_c
            if not lo <= bms.temperature_c <= hi or bms.max_charge_w < 0 or bms.max_discharge_w < 0 \
                    or bms.capacity_wh <= 0:
                why = Reason.BMS_IMPLAUSIBLE
            last = self._last_soc.get(u.unit_id)
            if why is None and last is not None and bms.read_at_s > last[1]:
                allowed = self.p.soc_max_rate_per_s * (bms.read_at_s - last[1]) + self.p.soc_jump_slack
                if abs(bms.soc - last[0]) > allowed:
                    why = Reason.BMS_IMPLAUSIBLE
            if why is None or last is None:
                # trust the first reading; after a rejected jump keep comparing against the last good one
                self._last_soc[u.unit_id] = (bms.soc, bms.read_at_s)
        if why is None and pcs is not None and abs(pcs.power_w) > self.p.pcs_power_margin * max(pcs.rated_power_w, 1.0):
            why = Reason.PCS_IMPLAUSIBLE
        if why is None:
            self.unit_invalid.pop(u.unit_id, None)
            return u
        self._count(why.code)
        self.unit_invalid[u.unit_id] = why
        return replace(u, unavailable=why)
