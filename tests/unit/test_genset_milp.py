"""The gensets' MILP schedule (ems/planning/genset_milp.py) and the step taking it as a constraint."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest

from ems.model.plan import GensetSchedule
from ems.model.reasons import Reason
from ems.planning.genset_milp import GensetPlanProblem, fuel_line, plan_gensets, start_litres
from policies import genset_dispatch as gd
from policies.fuel_curve import FuelCurve

MW = 1e6
H = np.arange(24)
PV = 4 * MW * np.maximum(0.0, np.sin(np.pi * (H - 6) / 12))  # sun from 06:00 to 18:00, 4 MW at noon


def gensets() -> tuple[gd.GensetSpec, ...]:
    return tuple(gd.GensetSpec(g, 2 * MW, FuelCurve.default_for(2 * MW), min_run_s=3600.0) for g in ("g1", "g2"))


def problem(soc: float, load_w: float = 1.5 * MW, capacity_wh: float = 12e6, **kw: object) -> GensetPlanProblem:
    base = GensetPlanProblem(0.0, 3600.0, np.full(24, load_w), PV, gensets(), (False, False), capacity_wh, soc,
                             0.32, 0.95, 3 * MW, 3 * MW)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_the_fuel_line_runs_through_min_load_and_full_load() -> None:
    g = gensets()[0]
    a, b = fuel_line(g)
    assert a + b * 0.3 * 2000 == pytest.approx(g.fuel.l_per_h(0.3))
    assert a + b * 2000 == pytest.approx(g.fuel.l_per_h(1.0))
    assert start_litres(g) == pytest.approx(40.0 * (10 + 60 + 300) / 3600)  # idle, scaled to 2 MW


def test_no_genset_when_the_battery_reaches_the_sun_and_one_when_it_cannot() -> None:
    # 1.5 MW of load; from midnight to the sun the battery gives ~7 MWh: from 95 % of 12 MWh it gets there
    s = plan_gensets(problem(0.95, load_w=1.0 * MW))
    assert sum(s.on[:8]) == 0
    # from 50 % it cannot: gensets run in the night, never under their minimum loading, SoC kept above the floor
    s = plan_gensets(problem(0.5))
    assert sum(s.on[:8]) >= 1
    for n, w in zip(s.on, s.power_w, strict=True):
        assert (n == 0 and w == pytest.approx(0.0, abs=1.0)) or 0.3 * 2 * MW * n - 1.0 <= w <= 2 * MW * n + 1.0
    assert min(s.soc) >= 0.32 - 1e-6 and s.fuel_l > 0


def test_a_running_unit_is_kept_for_its_minimum_run() -> None:
    # a two-hour minimum run: whatever starts runs at least two planning steps
    long = tuple(replace(g, min_run_s=7200.0) for g in gensets())
    s = plan_gensets(problem(0.4, gensets=long))
    runs = [k for k in range(1, 24) if s.on[k] > s.on[k - 1]]
    assert runs and all(s.on[k + 1] >= 1 for k in runs if k + 1 < 24)


def _dispatch(planned_on: int | None, planned_w: float | None, soc: float = 0.6, t: float = 0.0,
              state: gd.DispatchState | None = None) -> tuple[gd.Dispatch, gd.DispatchState]:
    p = gd.DispatchParams(tuple(replace(g, start_delay_s=0.0, warmup_s=0.0, min_run_s=0.0) for g in gensets()))
    x = gd.DispatchInputs(t, 60.0, soc, 1 * MW, 0.0, 3 * MW, 3 * MW, planned_on=planned_on, planned_w=planned_w)
    return gd.decide(x, p, state or gd.initial_state(p))


def test_GENSET_START_PLAN() -> None:
    # SoC at 60 %, the battery can carry the load: the thresholds would start nothing; the plan has one on
    d, _ = _dispatch(None, None)
    assert d.events == ()
    d, s = _dispatch(1, 1.6 * MW)
    assert [(e.genset_id, e.reason) for e in d.events] == [("g1", Reason.GENSET_START_PLAN)]
    d, s = _dispatch(1, 1.6 * MW, t=60.0, state=s)
    assert d.output_w["g1"] == pytest.approx(1.6 * MW)  # what the plan gives: 1 MW to the load, 600 kW to the battery


def test_GENSET_STOP_PLAN() -> None:
    _, s = _dispatch(1, 1.6 * MW)
    _, s = _dispatch(1, 1.6 * MW, t=60.0, state=s)
    d, s = _dispatch(0, 0.0, t=120.0, state=s)
    assert [(e.genset_id, e.action, e.reason) for e in d.events] == [("g1", "stop", Reason.GENSET_STOP_PLAN)]


def test_the_soc_latch_stays_a_backstop_under_a_plan() -> None:
    # a plan with nothing on, but the battery at 25 %: the latch starts one anyway
    d, _ = _dispatch(0, 0.0, soc=0.25)
    assert [e.reason for e in d.events] == [Reason.GENSET_START_LOW_SOC]


def test_the_schedule_is_read_at_the_step_containing_now() -> None:
    s = GensetSchedule(100.0, 3600.0, (0, 1), (0.0, 1e6), (0.5, 0.5, 0.5), 10.0)
    assert s.step_at(50.0) is None and s.step_at(100.0) == 0 and s.step_at(3800.0) == 1 and s.step_at(7300.0) is None


def test_the_backtest_on_the_milp_schedule_burns_no_more_diesel_and_starts_less() -> None:
    from ems.backtest.config import parse_backtest_config
    from ems.backtest.offgrid_run import run_series
    from tests.unit.test_offgrid_backtest import STEP, days_of_load, site

    cfg = parse_backtest_config(site())
    load, pv = days_of_load(7)
    start = datetime(2025, 6, 1)
    _, thresholds = run_series(cfg, start, STEP, load, pv)
    trace, milp = run_series(cfg, start, STEP, load, pv, genset_plan="perfect")
    _, persistence = run_series(cfg, start, STEP, load, pv, genset_plan="persistence")
    assert milp["unserved_kwh"] == pytest.approx(0.0, abs=1e-6) and persistence["unserved_kwh"] == pytest.approx(0.0)
    assert milp["diesel_litres"] < thresholds["diesel_litres"]
    assert milp["genset_starts"] < thresholds["genset_starts"]
    assert milp["genset_plan"]["solves"] >= 7 * 4 and milp["genset_plan"]["failures"] == 0
    assert trace.microgrid is not None and trace.microgrid.events.get("GENSET_START_PLAN", 0) >= 1


def test_the_live_planner_forecasts_the_same_hour_a_day_before() -> None:
    from ems.planning.genset_live import DemandHistory

    h = DemandHistory()
    assert h.latest_w is None
    for k in range(0, 26 * 3600, 60):  # a day and two hours: 1 MW by day (06-18), 400 kW by night
        hour = (k // 3600) % 24
        h.observe(float(k), 1e6 if 6 <= hour < 18 else 400e3, 60.0)
    fc = h.persistence(26 * 3600.0, 24)  # from 02:00 the next day
    assert fc[0] == pytest.approx(400e3) and fc[4] == pytest.approx(1e6) and fc[16] == pytest.approx(400e3)
    # an hour with no history yet repeats the latest demand
    assert DemandHistory(latest_w=7.0).persistence(0.0, 2).tolist() == [7.0, 7.0]
    assert len(h.sums) == 26  # hours 0..25
    h.observe(30 * 3600.0, 5e5, 60.0)
    assert min(h.sums) == 4  # a day and two hours kept, the older dropped


def test_the_live_planner_is_the_site_file_s_choice() -> None:
    from pathlib import Path

    import yaml

    from ems.config import parse_config
    from ems.planning.genset_live import genset_planner

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "offgrid-sim-site.yaml").read_text())
    assert genset_planner(parse_config(data, "x")) is None  # the thresholds alone
    data["microgrid"]["genset_plan"] = {"every_s": 3600}
    gp = genset_planner(parse_config(data, "x"))
    assert gp is not None and gp.every_s == 3600 and gp.horizon_s == 86400
    with pytest.raises(Exception, match="every_s"):
        parse_config(data | {"microgrid": {**data["microgrid"], "genset_plan": {"every_s": 1}}}, "x")
