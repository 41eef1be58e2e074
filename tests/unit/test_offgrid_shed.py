"""Graded shedding by the shed order on an off-grid or weak-grid site (policies/offgrid_shed.py)."""

from __future__ import annotations

import numpy as np

from ems.model.racks import RacksReading
from ems.model.reasons import Reason
from policies import offgrid_shed as shed
from policies.fuel_curve import FuelCurve
from policies.genset_dispatch import Dispatch, GensetSpec, Phase
from policies.microgrid import MicrogridOutcome, Mode

ROWS = ("row01", "row02", "row03", "row04")
P = shed.ShedParams(shed_order=("row02",), critical_rows=frozenset({"row01"}), min_cap_fraction=0.25,
                    step_s=30.0, release_hold_s=120.0, release_margin=0.25)


def _racks() -> RacksReading:
    # 4 rows of 2 racks of 40 kW
    ids = tuple(f"{r}-rack0{k}" for r in ROWS for k in (1, 2))
    rows = tuple(r for r in ROWS for _ in (1, 2))
    return RacksReading(ids, rows, np.full(8, 30e3), np.full(8, np.nan), np.full(8, 40e3), np.zeros(8), 5.0)


def x(now_s: float, unserved_w: float = 0.0, no_relief: bool = False, headroom_w: float = 0.0) -> shed.ShedInputs:
    return shed.ShedInputs(now_s, unserved_w, no_relief, headroom_w)


def test_the_order_is_the_configured_one_then_the_rest_from_the_last_back_never_a_critical_row() -> None:
    assert shed.sequence(_racks(), P) == ["row02", "row04", "row03"]


def test_OFFGRID_SHED() -> None:
    # the sources cannot carry the load: one row more every step_s, in shed order, never all at once
    racks, s = _racks(), shed.ShedState()
    out, s = shed.decide(racks, x(0.0, unserved_w=50e3), P, s)
    assert out.change is Reason.OFFGRID_SHED and out.row == "row02" and out.rows == ("row02",)
    assert out.caps_w["row02-rack01"] == 10e3 and out.caps_w["row04-rack01"] is None
    assert out.caps_w["row01-rack01"] is None
    out, s = shed.decide(racks, x(10.0, unserved_w=30e3), P, s)  # still short, but too soon for the next row
    assert out.change is None and out.rows == ("row02",)
    out, s = shed.decide(racks, x(30.0, unserved_w=30e3), P, s)
    assert out.change is Reason.OFFGRID_SHED and out.rows == ("row02", "row04")
    out, s = shed.decide(racks, x(60.0, unserved_w=10e3), P, s)
    out, s = shed.decide(racks, x(90.0, unserved_w=10e3), P, s)  # every non-critical row is capped: no further
    assert out.rows == ("row02", "row04", "row03") and out.change is None
    assert all(out.caps_w[f"row01-rack0{k}"] is None for k in (1, 2))  # critical: kept


def test_no_relief_coming_sheds_step_by_step_too() -> None:
    # the battery runs low and no genset can come: the battery's energy is stretched, row by row
    out, _ = shed.decide(_racks(), x(0.0, no_relief=True, headroom_w=1e6), P, shed.ShedState())
    assert out.change is Reason.OFFGRID_SHED and out.rows == ("row02",)


def test_OFFGRID_SHED_RELEASED() -> None:
    # shed two rows; the shortfall is gone: released in reverse, one per release_hold_s, only with headroom
    racks, s = _racks(), shed.ShedState()
    _, s = shed.decide(racks, x(0.0, unserved_w=50e3), P, s)
    _, s = shed.decide(racks, x(30.0, unserved_w=50e3), P, s)
    row_w = 2 * 40e3 * 0.75  # what row04 may draw back at nameplate
    out, s = shed.decide(racks, x(60.0, headroom_w=10 * row_w), P, s)  # too soon after the last change
    assert out.change is None and len(out.rows) == 2
    out, s = shed.decide(racks, x(150.0, headroom_w=1.2 * row_w), P, s)  # headroom under the margin: kept
    assert out.change is None and len(out.rows) == 2
    out, s = shed.decide(racks, x(160.0, headroom_w=1.3 * row_w), P, s)
    assert out.change is Reason.OFFGRID_SHED_RELEASED and out.row == "row04" and out.rows == ("row02",)
    assert out.caps_w["row04-rack01"] is None and out.caps_w["row02-rack01"] == 10e3
    out, s = shed.decide(racks, x(200.0, headroom_w=10 * row_w), P, s)  # the next one waits its hold
    assert out.change is None
    out, s = shed.decide(racks, x(280.0, headroom_w=10 * row_w), P, s)
    assert out.change is Reason.OFFGRID_SHED_RELEASED and out.rows == ()
    assert all(c is None for c in out.caps_w.values())


def test_the_inputs_come_from_the_step_s_outcome() -> None:
    g = GensetSpec("g1", 1e6, FuelCurve.default_for(1e6))
    running = Dispatch({"g1": 600e3}, {"g1": Phase.RUNNING}, ())
    # 1.5 MW of demand, the genset gives 600 kW, the battery can give 700 kW at most: 200 kW short
    out = MicrogridOutcome(Mode.OFF_GRID, 1.5e6, 0.0, running, 900e3, 0.0)
    got = shed.inputs(0.0, out, 700e3, 700e3, (g,), recharging=False)
    assert got.unserved_w == 200e3 and not got.no_relief and got.headroom_w == 700e3 + 1e6 - 1.5e6
    # recharging and the genset failed (off): no relief is coming
    off = Dispatch({"g1": 0.0}, {"g1": Phase.OFF}, ())
    got = shed.inputs(0.0, MicrogridOutcome(Mode.OFF_GRID, 500e3, 0.0, off, 500e3, 0.0), 500e3, 700e3, (g,), True)
    assert got.no_relief and got.unserved_w == 0.0
    starting = Dispatch({"g1": 0.0}, {"g1": Phase.STARTING}, ())
    got = shed.inputs(0.0, MicrogridOutcome(Mode.OFF_GRID, 500e3, 0.0, starting, 500e3, 0.0), 500e3, 700e3, (g,), True)
    assert not got.no_relief  # one is on its way
    # a weak grid that carries the whole load (500 kW under its 800 kW allowance): nothing to stretch
    weak = MicrogridOutcome(Mode.WEAK_GRID, 500e3, 800e3, off, -300e3, 0.0)
    assert not shed.inputs(0.0, weak, -300e3, 700e3, (g,), recharging=True).no_relief
