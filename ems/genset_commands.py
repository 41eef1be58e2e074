"""What the live loop tells the site's genset device from the period step's dispatch.

The step's genset dispatch (policies/genset_dispatch.py) says which gensets should run and
what each should give; live, each genset device is named by its dispatch id (the site's
`genset` device is the first of the list, `gensets:` the others). Pure: from the dispatch and
each device's fresh reading, the commands to send this period.

* run: start while the dispatch has it starting, warming up or running and the device is
  stopped or cooling down; stop while the dispatch has it off or cooling down and the device
  is starting, warming up or running. Level-triggered, so a write that failed is repeated
  next period. A device that reports a failed start is left as it is: the dispatch holds it
  out of service while it does (GENSET_START_FAILED), and a stop would acknowledge the
  failure and have it tried again at once; an operator acknowledges it on the genset.
* charge request: the running gensets share the island's load (isochronous, by rating) up to
  their rating; what the dispatch plans beyond the site's demand (GENSET_CHARGING: the
  surplus that charges the battery) is asked for on top, each its share of it, and 0 W
  otherwise.
* Without a fresh reading, nothing is sent (never acting on a guess).
"""

from __future__ import annotations

from dataclasses import dataclass

from ems.model.readings import GensetReading, GensetState
from policies.genset_dispatch import Phase
from policies.microgrid import MicrogridOutcome

_ON = (Phase.STARTING, Phase.WARMUP, Phase.RUNNING)
_DEVICE_ON = (GensetState.STARTING, GensetState.WARMUP, GensetState.RUNNING)
CHARGE_DEADBAND_W = 1000.0  # the charge request is rewritten when it moves by more than this


@dataclass(frozen=True, slots=True)
class GensetCommand:
    genset_id: str
    run: str | None = None  # "start", "stop" or None (nothing to change)
    charge_request_w: float | None = None  # None: unchanged


def commands(outcome: MicrogridOutcome, readings: dict[str, GensetReading]) -> list[GensetCommand]:
    """The commands for every genset device with a fresh reading this period, in the dispatch's order."""
    out = []
    for gid in outcome.dispatch.phases:
        cmd = command(outcome, readings.get(gid), gid)
        if cmd is not None:
            out.append(cmd)
    return out


def command(outcome: MicrogridOutcome, reading: GensetReading | None, gid: str | None = None) -> GensetCommand | None:
    """The commands for one genset device this period (None: no genset, or no reading); `gid`:
    its dispatch id (by default the first of the list, the site's `genset` device)."""
    phases = outcome.dispatch.phases
    if not phases or reading is None:
        return None
    gid = next(iter(phases)) if gid is None else gid
    phase = phases[gid]
    if reading.state is GensetState.FAILED:
        return GensetCommand(gid)
    run = None
    if phase in _ON and reading.state in (GensetState.STOPPED, GensetState.COOLDOWN):
        run = "start"
    elif phase not in _ON and reading.state in _DEVICE_ON:
        run = "stop"
    want_w = 0.0
    total_w = outcome.dispatch.total_w
    if phase is Phase.RUNNING and outcome.demand_w is not None and total_w > 0:
        # the surplus over the demand, this genset's share of it (the dispatch shares by rating)
        surplus_w = total_w - max(outcome.demand_w - outcome.grid_allowance_w, 0.0)
        want_w = max(0.0, surplus_w * outcome.dispatch.output_w[gid] / total_w)
    charge = want_w if abs(want_w - reading.charge_request_w) > CHARGE_DEADBAND_W else None
    return GensetCommand(gid, run, charge)
