"""What the live loop tells the genset device from the step's dispatch (ems/genset_commands.py)."""

from __future__ import annotations

import pytest

from ems.genset_commands import GensetCommand, command
from ems.model.readings import GensetReading, GensetState
from ems.model.reasons import Reason
from policies.genset_dispatch import Dispatch, Phase
from policies.microgrid import MicrogridOutcome, Mode

MW = 1e6


def outcome(phase: Phase, output_w: float = 0.0, demand_w: float | None = 0.6 * MW) -> MicrogridOutcome:
    d = Dispatch({"gen-1": output_w, "gen-2": 0.0}, {"gen-1": phase, "gen-2": Phase.OFF}, (),
                 reason=Reason.GENSET_CHARGING if demand_w is not None and output_w > demand_w else None)
    target = None if demand_w is None else demand_w - output_w
    return MicrogridOutcome(Mode.OFF_GRID, demand_w, 0.0, d, target, 0.0)


def reading(state: GensetState, charge_w: float = 0.0) -> GensetReading:
    return GensetReading(state, 0.0, 1 * MW, charge_w, 0.0, 0.0, 0, 0.0)


@pytest.mark.parametrize(("phase", "device", "run"), [
    (Phase.STARTING, GensetState.STOPPED, "start"),
    (Phase.WARMUP, GensetState.COOLDOWN, "start"),  # still warm: back into service
    (Phase.RUNNING, GensetState.RUNNING, None),
    (Phase.STARTING, GensetState.STARTING, None),  # already under way: nothing sent twice
    (Phase.COOLDOWN, GensetState.RUNNING, "stop"),
    (Phase.OFF, GensetState.WARMUP, "stop"),
    (Phase.OFF, GensetState.STOPPED, None),
    (Phase.OFF, GensetState.COOLDOWN, None),  # cools down by itself
])
def test_start_and_stop_follow_the_dispatch_level_triggered(phase: Phase, device: GensetState,
                                                            run: str | None) -> None:
    cmd = command(outcome(phase), reading(device))
    assert cmd is not None and cmd.genset_id == "gen-1" and cmd.run == run


def test_a_failed_start_is_left_as_it_is_so_the_dispatch_keeps_it_out() -> None:
    # a stop would acknowledge the failure and the dispatch would try it again at once
    assert command(outcome(Phase.OFF), reading(GensetState.FAILED)) == GensetCommand("gen-1")
    assert command(outcome(Phase.STARTING), reading(GensetState.FAILED)) == GensetCommand("gen-1")


def test_no_reading_or_no_genset_sends_nothing() -> None:
    assert command(outcome(Phase.STARTING), None) is None
    empty = MicrogridOutcome(Mode.OFF_GRID, 0.0, 0.0, Dispatch({}, {}, ()), 0.0, 0.0)
    assert command(empty, reading(GensetState.STOPPED)) is None


def test_the_charge_request_is_the_dispatch_s_surplus_over_the_demand() -> None:
    # GENSET_CHARGING: 900 kW planned against a 600 kW demand: 300 kW on top of the load it follows
    cmd = command(outcome(Phase.RUNNING, 0.9 * MW), reading(GensetState.RUNNING))
    assert cmd is not None and cmd.charge_request_w == pytest.approx(0.3 * MW)
    # unchanged within the deadband: not rewritten
    cmd = command(outcome(Phase.RUNNING, 0.9 * MW), reading(GensetState.RUNNING, 0.3 * MW + 500))
    assert cmd is not None and cmd.charge_request_w is None
    # carrying less than the demand, warming up, or the demand unknown: no surplus asked for
    for o in (outcome(Phase.RUNNING, 0.5 * MW), outcome(Phase.WARMUP, 0.9 * MW),
              outcome(Phase.RUNNING, 0.9 * MW, demand_w=None)):
        cmd = command(o, reading(GensetState.RUNNING, 0.3 * MW))
        assert cmd is not None and cmd.charge_request_w == 0.0


def test_several_devices_each_get_their_own_commands_and_share_the_surplus_by_rating() -> None:
    from ems.genset_commands import commands

    # gen-1 (1 MW) and gen-2 (0.5 MW) run at 900 + 450 kW against 1.05 MW of demand: 300 kW of surplus,
    # 200 kW asked of gen-1 and 100 kW of gen-2; gen-3 is off and its device stopped: nothing sent
    d = Dispatch({"gen-1": 0.9 * MW, "gen-2": 0.45 * MW, "gen-3": 0.0},
                 {"gen-1": Phase.RUNNING, "gen-2": Phase.RUNNING, "gen-3": Phase.OFF}, (),
                 reason=Reason.GENSET_CHARGING)
    out = MicrogridOutcome(Mode.OFF_GRID, 1.05 * MW, 0.0, d, -0.3 * MW, 0.0)
    cmds = commands(out, {"gen-1": reading(GensetState.RUNNING), "gen-2": reading(GensetState.STOPPED),
                          "gen-3": reading(GensetState.STOPPED)})
    assert [(c.genset_id, c.run) for c in cmds] == [("gen-1", None), ("gen-2", "start"), ("gen-3", None)]
    assert cmds[0].charge_request_w == pytest.approx(0.2 * MW) and cmds[1].charge_request_w == pytest.approx(0.1 * MW)
    assert cmds[2].charge_request_w is None  # 0 W asked, 0 W held: unchanged
    # a device without a fresh reading is told nothing
    assert [c.genset_id for c in commands(out, {"gen-2": reading(GensetState.STOPPED)})] == ["gen-2"]
