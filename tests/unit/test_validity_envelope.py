"""Bad data never drives the battery; the final envelope always holds (property tests)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.envelope import EnvelopeParams, clamp, unit_bounds
from ems.model.readings import MeterReading
from ems.model.reasons import Reason
from ems.model.snapshot import unit_snapshot
from ems.period import StepParams, StepState, step
from ems.validity import ValidityParams, ValidityTracker
from policies import peak_shaving
from policies.battery_limits import BatteryLimitsParams
from policies.grid_limits import GridLimitsParams
from policies.operator_force import ForceParams
from policies.peak_shaving import PeakShavingParams, PeakShavingState
from policies.reserve import ReserveParams
from tests.snapshots import bms, pcs, snapshot, unit

VP = ValidityParams(meter_max_abs_w=50e6, meter_frozen_s=10.0, soc_max_rate_per_s=2.0 / 3600)


def _meter(w: float, at: float) -> MeterReading:
    return MeterReading(w, 230.0, 50.0, 0.0, 0.0, at)


def test_METER_FROZEN() -> None:
    v = ValidityTracker(VP)
    for t in range(10):
        assert v.check_meter(_meter(1_234_567.0, float(t)), float(t)) is not None
    assert v.check_meter(_meter(1_234_567.0, 10.0), 10.0) is None
    assert v.meter_invalid is Reason.METER_FROZEN and v.meter_invalid_since_s == 10.0
    assert v.check_meter(_meter(1_234_600.0, 11.0), 11.0) is not None  # moves again: trusted
    assert v.meter_invalid is None and v.rejected["METER_FROZEN"] == 1


def test_a_stale_reading_repeated_is_not_frozen() -> None:
    v = ValidityTracker(VP)
    same = _meter(1_000.0, 0.0)  # the same reading object again: read_at_s does not move
    for t in range(30):
        assert v.check_meter(same, float(t)) is not None


def test_METER_IMPLAUSIBLE() -> None:
    v = ValidityTracker(VP)
    assert v.check_meter(_meter(9e9, 0.0), 0.0) is None and v.meter_invalid is Reason.METER_IMPLAUSIBLE


def test_BMS_IMPLAUSIBLE() -> None:
    v = ValidityTracker(VP)
    ok = unit_snapshot("u1", bms(soc=0.50, at=0.0), pcs(at=0.0), 0.0, 5.0)
    assert v.check_unit(ok).available
    jump = unit_snapshot("u1", bms(soc=0.80, at=1.0), pcs(at=1.0), 1.0, 5.0)  # +30 % in 1 s
    assert v.check_unit(jump).unavailable is Reason.BMS_IMPLAUSIBLE
    back = unit_snapshot("u1", bms(soc=0.5003, at=2.0), pcs(at=2.0), 2.0, 5.0)
    assert v.check_unit(back).available  # compared with the last trusted value
    hot = replace(bms(soc=0.5, at=3.0), temperature_c=400.0)
    assert v.check_unit(unit_snapshot("u1", hot, pcs(at=3.0), 3.0, 5.0)).unavailable is Reason.BMS_IMPLAUSIBLE


def test_PCS_IMPLAUSIBLE() -> None:
    v = ValidityTracker(VP)
    u = unit_snapshot("u1", bms(at=0.0), pcs(power_w=5e6, rated_w=500e3, at=0.0), 0.0, 5.0)
    assert v.check_unit(u).unavailable is Reason.PCS_IMPLAUSIBLE


def test_invalid_meter_holds_then_rests_never_reads_zero() -> None:
    p = PeakShavingParams(1e6, 5e5, meter_invalid_hold_s=30.0)
    snap = replace(snapshot(None, now_s=100.0, last_setpoint_w=400e3), meter_invalid=Reason.METER_FROZEN,
                   meter_invalid_since_s=90.0)
    d, _ = peak_shaving.decide(snap, p, PeakShavingState())
    assert d.reason is Reason.METER_FROZEN and d.target_w == 400e3  # hold the last safe setpoint
    later = replace(snap, now_s=121.0)
    d, _ = peak_shaving.decide(later, p, PeakShavingState())
    assert d.target_w == 0.0  # then 0 W


EP = EnvelopeParams(soc_min=0.1, soc_max=0.95, reserve_soc=0.2, unit_ramp_w_per_s=100e3)


def test_ENVELOPE_CLAMP() -> None:
    units = (unit("u1", soc=0.15), unit("u2", soc=0.5))
    out, narrowed = clamp({"u1": 300e3, "u2": 300e3}, units, EP, {"u1": 0.0, "u2": 250e3}, 1.0)
    assert out == {"u1": 0.0, "u2": 300e3}  # u1 is under the reserve; u2 within its ramp
    assert narrowed == ["u1"]
    out, narrowed = clamp({"u2": 900e3}, units, EP, {"u2": 0.0}, 1.0)
    assert out["u2"] == 100e3 and "u2" in narrowed  # ramp limit


def test_stopping_is_never_blocked_by_the_ramp() -> None:
    lo, hi = unit_bounds(unit("u1", soc=0.5), EP, last_w=400e3, period_s=1.0)
    assert lo <= 0.0 <= hi


def test_temperature_derating() -> None:
    hot = unit_snapshot("u1", replace(bms(soc=0.5), temperature_c=50.0), pcs(), 0.0, 5.0)
    lo, hi = unit_bounds(hot, EnvelopeParams(0.1, 0.95), None, 1.0)
    assert hi == pytest.approx(250e3) and lo == pytest.approx(-250e3)


socs = st.floats(0.0, 1.0)
powers = st.floats(0.0, 2e6)


@st.composite
def unit_snaps(draw, uid: str):
    b = replace(bms(soc=draw(socs), max_charge_w=draw(powers), max_discharge_w=draw(powers)),
                temperature_c=draw(st.floats(-20.0, 80.0)))
    p = pcs(rated_w=draw(st.floats(1e3, 2e6)), faults=draw(st.sampled_from([(), (), (), ("internal",)])))
    return unit_snapshot(uid, b, p, 0.0, 5.0)


@st.composite
def envelopes(draw):
    lo = draw(st.floats(0.0, 0.5))
    return EnvelopeParams(soc_min=lo, soc_max=draw(st.floats(lo + 0.01, 1.0)), reserve_soc=draw(st.floats(0.0, 0.6)),
                          unit_ramp_w_per_s=draw(st.one_of(st.none(), st.floats(1.0, 5e6))),
                          temp_derate_start_c=40.0, temp_max_c=draw(st.floats(41.0, 70.0)),
                          charge_efficiency=draw(st.floats(0.8, 1.0)), discharge_efficiency=draw(st.floats(0.8, 1.0)))


def _inside(w: float, u, p: EnvelopeParams, last: float | None, period_s: float) -> bool:
    """The envelope, stated independently of the clamp."""
    if not u.available:
        return w == 0.0
    b, c = u.bms, u.pcs
    if w > 0 and (b.soc <= max(p.soc_min, p.reserve_soc) or w > min(c.rated_power_w, b.max_discharge_w) + 1e-6):
        return False
    if w < 0 and (b.soc >= p.soc_max or -w > min(c.rated_power_w, b.max_charge_w) + 1e-6):
        return False
    # one period at w keeps the stored energy inside the window
    stored_after_wh = b.soc * b.capacity_wh - (w / p.discharge_efficiency if w > 0 else w * p.charge_efficiency) \
        * period_s / 3600.0
    if w > 0 and stored_after_wh < max(p.soc_min, p.reserve_soc) * b.capacity_wh - 1e-3:
        return False
    if w < 0 and stored_after_wh > p.soc_max * b.capacity_wh + 1e-3:
        return False
    derate = min(1.0, max(0.0, (p.temp_max_c - b.temperature_c) / (p.temp_max_c - p.temp_derate_start_c)))
    if abs(w) > derate * min(c.rated_power_w, b.max_discharge_w if w > 0 else b.max_charge_w) + 1e-6:
        return False
    if p.unit_ramp_w_per_s is not None and last is not None and w != 0.0:
        moving_away = abs(w) > abs(last) or (w > 0) != (last > 0)
        if moving_away and abs(w - last) > p.unit_ramp_w_per_s * period_s + 1e-6:
            return False
    return True


@settings(max_examples=2000, deadline=None)
@given(u1=unit_snaps("u1"), u2=unit_snaps("u2"), p=envelopes(),
       wants=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=2, max_size=2),
       lasts=st.lists(st.one_of(st.none(), st.floats(-2e6, 2e6)), min_size=2, max_size=2),
       period_s=st.floats(0.01, 60.0))
def test_no_setpoint_ever_leaves_the_envelope(u1, u2, p, wants, lasts, period_s) -> None:
    out, _ = clamp({"u1": wants[0], "u2": wants[1]}, (u1, u2), p, {"u1": lasts[0], "u2": lasts[1]}, period_s)
    for u, last in ((u1, lasts[0]), (u2, lasts[1])):
        w = out[u.unit_id]
        assert math.isfinite(w)
        assert _inside(w, u, p, last, period_s), (w, u, last)


@settings(max_examples=1000, deadline=None)
@given(u1=unit_snaps("u1"), u2=unit_snaps("u2"), grid_w=st.one_of(st.none(), st.floats(-5e6, 2e7)),
       cap=st.floats(1e5, 1e7), last=st.floats(-4e6, 4e6), p=envelopes())
def test_policy_stack_then_envelope_stays_inside(u1, u2, grid_w, cap, last, p) -> None:
    """Random snapshots and configs through the real period step: its setpoints are inside the
    envelope as stated independently here (_inside), and the step says when it clamped."""
    params = StepParams(limits=BatteryLimitsParams(p.soc_min, p.soc_max), envelope=p,
                        reserve=ReserveParams(reserve_soc=p.reserve_soc), peak=PeakShavingParams(cap, cap * 0.5, 0.0))
    snap = snapshot(grid_w, (u1, u2), last_setpoint_w=last)
    r = step(snap, params, StepState())
    holding = {u.unit_id: None if u.pcs is None else u.pcs.setpoint_w for u in (u1, u2)}
    in_force = replace(p, reserve_soc=r.reserve_soc)  # the floor over the available units, as the step had it
    for u in (u1, u2):
        assert _inside(r.unit_setpoints_w[u.unit_id], u, in_force, holding[u.unit_id], 1.0)
    assert (r.reason is Reason.ENVELOPE_CLAMP) == bool(r.clamped)



@settings(max_examples=2000, deadline=None)
@given(u1=unit_snaps("u1"), u2=unit_snaps("u2"), grid_w=st.floats(-5e6, 2e7), last=st.floats(-4e6, 4e6),
       p=envelopes(), cap=st.one_of(st.none(), st.floats(1e5, 1e7)),
       force_w=st.one_of(st.none(), st.floats(-1e7, 1e7)), import_w=st.one_of(st.none(), st.floats(1e5, 2e7)),
       export_w=st.one_of(st.none(), st.floats(0.0, 5e6)))
def test_no_setpoint_imports_or_exports_past_the_grid_connection(u1, u2, grid_w, last, p, cap, force_w, import_w,
                                                                 export_w) -> None:
    """Forced or not, the battery never makes the site export past its export limit, nor
    import past its import limit while the units could prevent it."""
    params = StepParams(limits=BatteryLimitsParams(p.soc_min, p.soc_max), envelope=p,
                        reserve=ReserveParams(reserve_soc=p.reserve_soc),
                        grid=GridLimitsParams(import_limit_w=import_w, export_limit_w=export_w),
                        peak=None if cap is None else PeakShavingParams(cap, cap * 0.5, 0.0))
    snap = snapshot(grid_w, (u1, u2), last_setpoint_w=last)
    r = step(snap, params, StepState(), force=None if force_w is None else ForceParams(force_w))
    load_w = snap.site_load_w
    assert load_w is not None
    grid_after_w = load_w - r.setpoint_w
    holding = {u.unit_id: None if u.pcs is None else u.pcs.setpoint_w for u in (u1, u2)}
    bounds = [unit_bounds(u, replace(p, reserve_soc=r.reserve_soc), holding[u.unit_id], 1.0) for u in (u1, u2)]
    most_charge_w = -sum(lo for lo, _ in bounds)
    most_discharge_w = sum(hi for _, hi in bounds)
    if export_w is not None:
        assert r.setpoint_w <= max(0.0, load_w + export_w) + 1e-3  # the battery never adds export
        if load_w + export_w >= -most_charge_w:  # and absorbs what it can
            assert grid_after_w >= -export_w - 1e-3
    if import_w is not None and load_w - import_w <= most_discharge_w and (export_w is None or import_w > -export_w):
        assert grid_after_w <= import_w + 1e-3
