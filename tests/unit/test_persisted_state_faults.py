"""The controller's persisted values read back at start when a row holds something else than
it wrote (a hand edit, a file from another version or tool): the controller starts, never
acting on the value, or says in one line which file it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ems.clock import ManualClock
from ems.config import parse_config
from ems.control_loop import Controller
from ems.demand import DemandMeterError
from ems.state_store import StateStore
from tests.conftest import site_dict


def _start(tmp_path: Path, values: dict[str, Any]) -> Controller:
    store = StateStore(tmp_path / "state.db")
    assert store.save(values, 1.0)
    store.close()
    cfg = parse_config(site_dict("mqtt://127.0.0.1:1", state={"dir": str(tmp_path)}, http={"enabled": False}), "t")
    return Controller(cfg, ManualClock())


def _close(ctl: Controller) -> None:
    ctl.persisted.store.close()
    ctl.events.close()


@pytest.mark.parametrize("values", [
    {"setpoints": {"site_w": float("nan")}},
    {"setpoints": {"site_w": float("inf")}},
    {"setpoints": {"site_w": "250000"}},
    {"setpoints": {"site_w": 1e15}},
    {"setpoints": [250_000.0]},
    {"setpoints": {"site_w": 0.0, "units_w": ["bess-1"]}},
    {"heartbeats": {"bess-1": float("nan")}},
    {"heartbeats": {"bess-1": "7"}},
    {"heartbeats": [7]},
    {"demand": [1]},
    {"demand": {"format": 2, "month": "2026-13"}},
])
def test_a_persisted_value_of_the_wrong_shape_is_not_restored_and_the_controller_starts(
        tmp_path: Path, values: dict[str, Any]) -> None:
    ctl = _start(tmp_path, values)
    assert ctl.last_setpoint_w == 0.0 and ctl.demand.month_peak_w == 0.0
    assert all(w.written_w is None and w.heartbeat == 1 for w in ctl.actuators.units)
    _close(ctl)


def test_a_nan_written_setpoint_is_not_restored(tmp_path: Path) -> None:
    """A NaN as the last setpoint a PCS accepted was restored (with a good site setpoint): |NaN -
    new| is never past the deadband, so a PCS that does not report its setpoint back got no
    setpoint but an exact 0 W. With a NaN site setpoint the controller did not start at all."""
    ctl = _start(tmp_path, {"setpoints": {"site_w": 300_000.0,
                                          "units_w": {"bess-1": float("nan"), "bess-2": 150_000.0}},
                            "heartbeats": {"bess-1": 41, "bess-2": 65535}})
    units = {w.io.unit_id: w for w in ctl.actuators.units}
    assert units["bess-1"].written_w is None and units["bess-2"].written_w == 150_000.0  # the good one kept
    assert ctl.last_setpoint_w == 300_000.0
    assert (units["bess-1"].heartbeat, units["bess-2"].heartbeat) == (42, 0)
    _close(ctl)


def test_a_demand_state_of_a_newer_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DemandMeterError, match=str(tmp_path / "state.db")):
        _start(tmp_path, {"demand": {"format": 99, "month": "2026-01", "month_peak_w": 1e6}})
    assert StateStore(tmp_path / "state.db").load()["demand"]["format"] == 99  # kept, not overwritten


def test_a_state_file_of_another_site_is_not_restored(tmp_path: Path) -> None:
    """A state dir copied from another site: its month's peak (what the planner takes as already
    paid for), setpoints and load history were taken as this site's."""
    first = _start(tmp_path, {})
    for i in range(3):  # a month's peak measured at the other site
        first.demand.add(2_000_000.0, 900.0, 1.7e9 + 900.0 * i)
    assert first.demand.month_peak_w > 1e6
    first.last_setpoint_w = 400_000.0
    first.persisted.save(first)
    _close(first)
    cfg = first.cfg.model_copy(update={"site": "another-site"})
    other = Controller(cfg, ManualClock())
    assert other.demand.month_peak_w == 0.0 and other.last_setpoint_w == 0.0 and other.restored == {}
    other.persisted.save(other)
    _close(other)
    again = Controller(cfg, ManualClock())  # its own state, saved since, is restored
    assert again.restored["site"] == "another-site"
    _close(again)
