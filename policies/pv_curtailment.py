"""PV curtailment: when the connection allows no (or little) export and the battery cannot
take what PV would export, the PV inverter is limited to what the site can use.

With the site load P (grid + battery, PV netted out) and the battery setpoint B of this
period, the grid will carry P - B; an export limit E asks P - B >= -E. Where the battery
alone cannot keep it there (full, or at its charge limit), the PV limit takes the excess
off the PV output: limit = PV + (P - B) + E. A PV not curtailed stays so while the
grid keeps within the limit; a held limit follows the same sum up when there is room
again, and at the rating it is lifted (None). Without a trusted meter
or PV reading, PV is held at zero export the safe way: a limit of what the site is known
to use is not known, so the limit stays where it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.snapshot import SiteSnapshot


@dataclass(frozen=True, slots=True)
class PvCurtailmentParams:
    export_limit_w: float | None  # None: export allowed without limit, never curtail
    deadband_w: float = 1000.0  # a limit within this of the rating is no limit


def decide(snap: SiteSnapshot, battery_setpoint_w: float, p: PvCurtailmentParams) -> float | None:
    """The PV limit in W for this period, or None: no limit. Pure."""
    pv = snap.pv
    if p.export_limit_w is None or pv is None:
        return None
    load_w = snap.site_load_w
    if load_w is None:
        return pv.limit_w  # not known what the site uses: keep what holds
    grid_w = load_w - battery_setpoint_w  # what the grid will carry with this period's battery
    limit_w = pv.power_w + grid_w + p.export_limit_w
    if pv.limit_w is None and limit_w >= pv.power_w - p.deadband_w:
        return None  # not curtailed, and no need to
    if limit_w >= pv.rated_power_w - p.deadband_w:
        return None
    return max(0.0, limit_w)
