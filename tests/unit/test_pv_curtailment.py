"""PV curtailment (policies/pv_curtailment.py): what the battery cannot keep off the grid
under an export limit comes off the PV inverter."""

from __future__ import annotations

import pytest

from ems.model.readings import MeterReading, PvReading
from ems.model.snapshot import SiteSnapshot
from policies.pv_curtailment import PvCurtailmentParams, decide
from tests.snapshots import racks


def _snap(grid_w: float | None, pv_w: float | None, limit_w: float | None = None) -> SiteSnapshot:
    meter = None if grid_w is None else MeterReading(grid_w, 230.0, 50.0, 0.0, 0.0, 0.0)
    pv = None if pv_w is None else PvReading(pv_w, 1_000_000.0, limit_w, 0.0)
    return SiteSnapshot(now_s=0.0, wall_s=0.0, period_s=1.0, meter=meter, units=(), racks=racks(),
                        last_setpoint_w=0.0, pv=pv)


@pytest.mark.parametrize(("grid_w", "pv_w", "held_w", "battery_w", "export_limit_w", "expected"), [
    (-300_000.0, 800_000.0, None, 0.0, 0.0, 500_000.0),  # exporting 300 kW, battery full: PV down by 300 kW
    (-300_000.0, 800_000.0, None, -300_000.0, 0.0, None),  # the battery takes it: no limit
    (-300_000.0, 800_000.0, None, -100_000.0, 0.0, 600_000.0),  # the battery takes a third
    (-300_000.0, 800_000.0, None, 0.0, 100_000.0, 600_000.0),  # 100 kW of export allowed
    (20_000.0, 800_000.0, None, 0.0, 0.0, None),  # importing, not curtailed: stays so
    (50_000.0, 500_000.0, 500_000.0, 0.0, 0.0, 550_000.0),  # importing: a held limit rises by the margin
    (400_000.0, 700_000.0, 700_000.0, 0.0, 0.0, None),  # enough room: lifted at the rating
    (-900_000.0, 200_000.0, None, 0.0, 0.0, 0.0),  # never below 0
])
def test_the_limit_takes_what_the_battery_cannot(grid_w: float, pv_w: float, held_w: float | None, battery_w: float,
                                                 export_limit_w: float, expected: float | None) -> None:
    got = decide(_snap(grid_w, pv_w, held_w), battery_w, PvCurtailmentParams(export_limit_w))
    assert got == (None if expected is None else pytest.approx(expected))


def test_export_allowed_without_limit_never_curtails() -> None:
    assert decide(_snap(-900_000.0, 900_000.0), 0.0, PvCurtailmentParams(None)) is None


def test_without_pv_reading_there_is_no_limit() -> None:
    assert decide(_snap(-900_000.0, None), 0.0, PvCurtailmentParams(0.0)) is None


def test_without_a_trusted_meter_the_held_limit_stays() -> None:
    assert decide(_snap(None, 300_000.0, limit_w=250_000.0), 0.0, PvCurtailmentParams(0.0)) == 250_000.0
