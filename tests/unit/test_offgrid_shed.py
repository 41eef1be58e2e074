"""Off-grid shedding when the genset failed and the battery runs low (policies/offgrid_shed.py)."""

from __future__ import annotations

import numpy as np

from ems.model.racks import RacksReading
from policies import offgrid_shed


def _racks() -> RacksReading:
    ids = ("row01-rack01", "row01-rack02", "row02-rack01", "row02-rack02")
    return RacksReading(ids, ("row01", "row01", "row02", "row02"), np.full(4, 30e3), np.full(4, np.nan),
                        np.full(4, 40e3), np.zeros(4), 5.0)


def test_every_non_critical_rack_goes_to_its_minimum_critical_rows_kept() -> None:
    caps = offgrid_shed.caps(_racks(), frozenset({"row01"}), 0.25, shed=True)
    assert caps == {"row01-rack01": None, "row01-rack02": None, "row02-rack01": 10e3, "row02-rack02": 10e3}


def test_without_the_need_every_cap_is_released() -> None:
    assert offgrid_shed.caps(_racks(), frozenset({"row01"}), 0.25, shed=False) == dict.fromkeys(_racks().rack_ids)
