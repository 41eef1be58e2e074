"""The transition observer: each change between consecutive period results is logged and
recorded once, with a reason code; a flapping site reason is rate-limited."""

from __future__ import annotations

from dataclasses import replace

from ems.envelope import EnvelopeParams
from ems.events import EventLog
from ems.model.reasons import Reason
from ems.period import StepParams, StepState, step
from ems.published import PeriodResult
from ems.transitions import TransitionObserver
from policies.battery_limits import BatteryLimitsParams
from policies.peak_shaving import PeakShavingParams
from tests.snapshots import snapshot, unit

PARAMS = StepParams(limits=BatteryLimitsParams(0.1, 0.95), envelope=EnvelopeParams(0.1, 0.95),
                    peak=PeakShavingParams(1_000_000, 500_000))


def result(n: int, grid_w: float | None = 800_000, units=None, **kw) -> PeriodResult:
    snap = snapshot(grid_w, units or (unit("u1"), unit("u2")), now_s=float(n))
    return PeriodResult(n, snap, step(snap, PARAMS, StepState()), 0, 0.001, 0.0, **kw)


def observe(*results: PeriodResult) -> EventLog:
    events = EventLog()
    observer = TransitionObserver(events)
    for r in results:
        observer(r)
    return events


def kinds(events: EventLog) -> list[tuple[str, str | None]]:
    return [(e.kind, e.reason) for e in reversed(events.query(limit=100))]


def test_a_steady_site_records_nothing() -> None:
    assert kinds(observe(*(result(n) for n in range(5)))) == []


def test_DEVICE_LOST() -> None:
    events = observe(result(0), result(1, devices_down={"u2.bms": "DeviceTimeout: read timed out"}),
                     result(2, devices_down={"u2.bms": "DeviceTimeout: read timed out"}), result(3))
    assert kinds(events) == [("device_lost", "DEVICE_LOST"), ("device_recovered", "DEVICE_LOST")]
    assert events.query(kind="device_lost")[0].data == {"device": "u2.bms", "error": "DeviceTimeout: read timed out"}


def test_BROKER_LOST() -> None:
    events = observe(result(0), result(1, broker_connected=False), result(2, broker_connected=False), result(3))
    assert kinds(events) == [("broker_lost", "BROKER_LOST"), ("broker_back", "BROKER_LOST")]


def test_NO_PLAN() -> None:
    events = observe(result(0, plan_error="NotEnoughHistory"), result(1, plan_error="NotEnoughHistory"),
                     result(2), result(3, plan_error="PlanInfeasible"))
    assert kinds(events) == [("plan_failed", "NO_PLAN"), ("plan_recovered", "NO_PLAN"), ("plan_failed", "NO_PLAN")]
    assert [e.data.get("error") for e in events.query(kind="plan_failed")] == ["PlanInfeasible", "NotEnoughHistory"]


def test_a_unit_isolated_for_a_fault_is_recorded_and_so_is_its_return() -> None:
    faulted = (unit("u1"), unit("u2", faults=("internal",)))
    events = observe(result(0), result(1, units=faulted), result(2, units=faulted), result(3))
    assert ("unit_unavailable", "PCS_FAULT") in kinds(events) and ("unit_available", "PCS_FAULT") in kinds(events)
    assert events.query(kind="unit_unavailable")[0].data == {"unit": "u2"}


def test_meter_validity_and_the_island_are_transitions_too() -> None:
    stale = result(1, grid_w=None)
    stale = replace(stale, snapshot=replace(stale.snapshot, meter_invalid=Reason.METER_FROZEN))
    events = observe(result(0), stale, result(2), result(3, islanded=True), result(4))
    got = kinds(events)
    assert ("meter_invalid", "METER_FROZEN") in got and ("meter_valid", "METER_FROZEN") in got
    assert ("island_entered", "ISLANDED") in got and ("island_left", "RECONNECT_WAIT") in got


def test_the_site_reason_is_recorded_on_change_and_rate_limited_when_it_flaps() -> None:
    flapping = [result(n, grid_w=1_200_000 if n % 2 else 800_000) for n in range(100)]  # 100 s
    events = observe(*flapping)
    changes = events.query(kind="reason_changed", limit=1000)
    assert {e.reason for e in changes} == {"PEAK_SHAVING_ACTIVE", "IDLE"}
    assert 30 <= len(changes) <= 60  # 99 changes in 100 s: at most 30 a minute recorded
    assert any("not_recorded_since_last" in e.data for e in changes)


def test_each_genset_start_and_stop_is_recorded_with_its_reason() -> None:
    from policies import genset_dispatch as gd
    from policies.fuel_curve import FuelCurve
    from policies.microgrid import MicrogridParams, Mode

    g = gd.GensetSpec("g1", 1e6, FuelCurve.default_for(1e6), start_delay_s=0.0, warmup_s=0.0, min_run_s=0.0)
    params = StepParams(limits=BatteryLimitsParams(0.1, 0.95), envelope=EnvelopeParams(0.1, 0.95),
                        microgrid=MicrogridParams(Mode.OFF_GRID, gd.DispatchParams((g,))))
    state = StepState()
    results = []
    for n, soc in enumerate((0.6, 0.25, 0.5, 0.9)):
        genset_w = sum(u.output_w for u in state.microgrid.gensets.units)  # the meter sees the load less it
        snap = snapshot(200_000 - genset_w, (unit("u1", soc=soc), unit("u2", soc=soc)), now_s=float(n))
        r = step(snap, params, state)
        state = r.state
        results.append(PeriodResult(n, snap, r, 0, 0.001, 0.0))
    recorded = [k for k in kinds(observe(*results)) if k[0].startswith("genset")]
    assert recorded == [("genset_start", "GENSET_START_LOW_SOC"), ("genset_stop", "GENSET_STOP_SOC_RECOVERED")]
