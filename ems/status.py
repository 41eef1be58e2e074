"""The site status of one period, as published on `PREFIX/site/status` and served to operators.

Built once per period from what the period produced (docs/topics.md has the fields); the
site setpoint is the one written, after the safety envelope.
"""

from __future__ import annotations

from typing import Any

from ems.demand import DemandMeter
from ems.microgrid_kpis import microgrid_status
from ems.model.snapshot import SiteSnapshot
from ems.period import StepResult
from ems.validity import ValidityTracker


def site_status(site: str, period: int, snap: SiteSnapshot, step: StepResult, *, duration_s: float,
                lateness_s: float, overruns: int, devices_down: list[str], status_failures: int,
                plan: dict[str, object] | None, failover: dict[str, Any] | None, demand: DemandMeter,
                validity: ValidityTracker, periods_clamped: int, forced_w: float | None = None,
                smoothing: dict[str, Any] | None = None) -> dict[str, Any]:
    arb = step.arbitration
    # a forced setpoint the site could not deliver as asked says what held it (never shown as done)
    forced = None if forced_w is None else {
        "asked_w": round(forced_w, 1), "written_w": round(step.setpoint_w, 1),
        "held_by": None if abs(step.setpoint_w - forced_w) < 1.0 else step.reason.code}
    return {
        "site": site, "ts": round(snap.wall_s, 3), "period": period,
        "grid_power_w": None if snap.meter is None else round(snap.meter.grid_power_w, 1),
        "grid_import_cap_w": step.cap_w,
        "site_load_w": None if snap.site_load_w is None else round(snap.site_load_w, 1),
        "battery_setpoint_w": round(step.setpoint_w, 1),
        "battery_power_w": round(snap.battery_power_w, 1),
        "reason": step.reason.code, "decided_by": step.decided_by,
        "policies": {d.policy: d.reason.code for d in step.decisions},
        "overruled": list(arb.overruled),
        "reserve_soc": round(step.reserve_soc, 4),
        "forced": forced,
        "smoothing": smoothing,
        "units": {
            u.unit_id: {
                "available": u.available,
                "reason": None if u.unavailable is None else u.unavailable.code,
                "soc": None if u.bms is None else round(u.bms.soc, 4),
                "power_w": None if u.pcs is None else round(u.pcs.power_w, 1),
                "setpoint_w": round(step.unit_setpoints_w[u.unit_id], 1),
                "mode": None if u.pcs is None else u.pcs.mode.value,
            } for u in snap.units
        },
        "racks": {"count": len(snap.racks.rack_ids), "stale": snap.racks.stale_count,
                  "reported_power_w": round(snap.racks.reported_power_w, 1),
                  "load_estimate_w": round(snap.racks.load_estimate_w, 1)},
        "loop": {"duration_ms": round(duration_s * 1e3, 3), "lateness_ms": round(lateness_s * 1e3, 3),
                 "overruns": overruns, "devices_down": devices_down, "status_publish_failures": status_failures},
        "plan": plan,
        "failover": failover,
        "pv": None if snap.pv is None else {
            "power_w": round(snap.pv.power_w, 1), "rated_power_w": round(snap.pv.rated_power_w, 1),
            "limit_w": None if step.pv_limit_w is None else round(step.pv_limit_w, 1),
            "gross_load_w": None if snap.gross_load_w is None else round(snap.gross_load_w, 1)},
        "microgrid": microgrid_status(step, snap.racks.load_estimate_w),  # off-grid, weak grid: gensets, diesel
        "genset": None if snap.genset is None else {
            "state": snap.genset.state.value, "power_w": round(snap.genset.power_w, 1),
            "fuel_used_l": round(snap.genset.fuel_used_l, 2), "run_s": round(snap.genset.run_s)},
        "demand": {"month": demand.month, "month_peak_w": round(demand.month_peak_w, 1),
                   "interval_average_w": round(demand.current_average_w, 1), "interval_s": demand.interval_s,
                   "interval_start_wall_s": demand.interval_start_s},
        "validity": {"meter": None if snap.meter_invalid is None else snap.meter_invalid.code,
                     "units": {k: v.code for k, v in validity.unit_invalid.items()},
                     "rejected": dict(validity.rejected)},
        "envelope": {"narrowed": list(step.clamped), "periods_narrowed": periods_clamped},
    }
