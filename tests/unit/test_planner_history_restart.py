"""The planner's load history kept across a restart: a restarted controller plans at once from
the history it had, instead of waiting a day for new history; a history too old, of another
step or unreadable is not taken."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from ems.clock import ManualClock
from ems.config import SiteConfig, parse_config
from ems.control_loop import Controller
from ems.planning.builder import BatteryNow, NotEnoughHistory
from ems.planning.history import StepHistory
from ems.tariff.calendar import local_seconds
from tests.conftest import site_dict
from tests.unit.test_tariff_signals import URDB

STEP_S = 900.0


def _filled(hours: float, start_s: float = 0.0) -> StepHistory:
    h = StepHistory(STEP_S, 4 * 24 * 28)
    t = start_s
    while t < start_s + hours * 3600.0:
        t += 60.0
        h.observe(t, 1e6 + 1e5 * math.sin(t / 7200.0), 60.0)
    return h


def test_the_history_round_trips_and_bad_or_old_ones_are_refused() -> None:
    h = _filled(30.0)
    saved = h.state()
    assert saved is not None and len(saved["values"]) == len(h.values) > 100
    again = StepHistory(STEP_S, 4 * 24 * 28)
    now = saved["bin"] * STEP_S + 600.0
    assert again.restore(saved, now, 86_400.0)
    assert list(again.values) == pytest.approx(list(h.values), abs=0.1) and again.end_s == h.end_s
    fresh = StepHistory(STEP_S, 4 * 24 * 28)
    assert not fresh.restore(saved, now + 2 * 86_400.0, 86_400.0)  # too old: its gap would be a guess
    assert not fresh.restore(saved, saved["bin"] * STEP_S - 3600.0, 86_400.0)  # from the future
    assert not StepHistory(300.0, 10).restore(saved, now, 86_400.0)  # another step
    for bad in (None, [], {**saved, "values": [1.0, float("nan")]}, {**saved, "values": ["1"]},
                {**saved, "bin": 1.5}, {**saved, "bin": True}, {**saved, "values": []},
                # written by someone with write access to state.db: refused, not an OverflowError at start-up
                {**saved, "bin": 10**400}, {**saved, "values": [1.0, 10**400]}, {**saved, "values": [1e300]},
                {**saved, "values": [1.0, float("inf")]}):
        assert not fresh.restore(bad, now, 86_400.0)
    assert fresh.end_s is None and not fresh.values


def _arbitrage_site(state_dir: Path) -> SiteConfig:
    if not URDB.exists():
        pytest.skip("shared data not present")
    d = site_dict("mqtt://127.0.0.1:1", state={"dir": str(state_dir)})
    d["policies"]["arbitrage"] = {"tariff": str(URDB)}
    return parse_config(d, "test")


def test_a_restarted_controller_plans_at_once_from_its_saved_history(tmp_path: Path) -> None:
    cfg = _arbitrage_site(tmp_path)
    clock = ManualClock()
    ctl = Controller(cfg, clock)
    assert ctl.planner is not None
    zone = ctl.planner.zone
    battery = BatteryNow(0.5, 4e6, 2e6, 2e6)
    for _ in range(26 * 60):  # 26 h of the site's load, a minute at a time, as the loop gives it
        clock.advance(60.0)
        ctl.planner.runner.observe(local_seconds(clock.wall(), zone), 60.0, 1e6, None)
    builder = ctl.planner.runner.builder
    now_local = local_seconds(clock.wall(), zone)
    builder.request(now_local, battery, ctl.demand)  # enough history: plans
    ctl.persisted.save(ctl)
    ctl.persisted.store.close()
    ctl.events.close()

    clock.advance(300.0)  # a restart five minutes later
    again = Controller(cfg, clock)
    assert again.planner is not None
    b2 = again.planner.runner.builder
    assert list(b2.load.values) == pytest.approx(list(builder.load.values))
    b2.request(local_seconds(clock.wall(), zone), battery, again.demand)  # no NotEnoughHistory

    again.persisted.store.close()
    again.events.close()
    clock.advance(3 * 86_400.0)  # down for three days: the history is not taken, planning waits
    late = Controller(cfg, clock)
    assert late.planner is not None
    with pytest.raises(NotEnoughHistory):
        late.planner.runner.builder.request(local_seconds(clock.wall(), zone), battery, late.demand)


def test_a_controller_starts_on_a_planner_history_row_crafted_to_break_the_parser(tmp_path: Path) -> None:
    cfg = _arbitrage_site(tmp_path)
    clock = ManualClock()
    ctl = Controller(cfg, clock)
    ctl.persisted.save(ctl)  # the demand so far, as a run leaves it
    ctl.persisted.store.close()
    ctl.events.close()
    db = sqlite3.connect(tmp_path / "state.db")  # someone with write access to the state dir
    with db:
        db.execute("INSERT INTO state (key, value, wall_s) VALUES ('planner_history', ?, 0) ON CONFLICT(key) "
                   "DO UPDATE SET value=excluded.value", ("[" * 200_000,))  # past the JSON parser's depth
        db.execute("UPDATE state SET value = '{\"bin\": ' WHERE key = 'periods'")  # not JSON
    db.close()
    again = Controller(cfg, clock)  # starts: the unreadable values are left out, the rest restored
    assert again.planner is not None and again.planner.runner.builder.load.end_s is None
    assert "demand" in again.persisted.store.load()
    again.persisted.store.close()
    again.events.close()
