"""What the live loop tells the site's genset device from the period step's dispatch.

The step's genset dispatch (policies/genset_dispatch.py) says which gensets should run and
what each should give; live, the site's one `genset` device is the first of the list. Pure:
from the dispatch and the device's fresh reading, the commands to send this period.

* run: start while the dispatch has it starting, warming up or running and the device is
  stopped or cooling down; stop while the dispatch has it off or cooling down and the device
  is starting, warming up or running. Level-triggered, so a write that failed is repeated
  next period. A device that reports a failed start is left as it is: the dispatch holds it
  out of service while it does (GENSET_START_FAILED), and a stop would acknowledge the
  failure and have it tried again at once; an operator acknowledges it on the genset.
* charge request: the genset follows the island's load (isochronous) up to its rating; what
  the dispatch plans beyond the site's demand (GENSET_CHARGING: the surplus that charges
  the battery) is asked for on top, and 0 W otherwise.
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


def command(outcome: MicrogridOutcome, reading: GensetReading | None) -> GensetCommand | None:
    """The commands for the site's genset device this period (None: no genset, or no reading)."""
    phases = outcome.dispatch.phases
    if not phases or reading is None:
        return None
    gid = next(iter(phases))  # the device is the first of the list
    phase = phases[gid]
    if reading.state is GensetState.FAILED:
        return GensetCommand(gid)
    run = None
    if phase in _ON and reading.state in (GensetState.STOPPED, GensetState.COOLDOWN):
        run = "start"
    elif phase not in _ON and reading.state in _DEVICE_ON:
        run = "stop"
    want_w = 0.0
    if phase is Phase.RUNNING and outcome.demand_w is not None:
        want_w = max(0.0, outcome.dispatch.output_w[gid] - max(outcome.demand_w - outcome.grid_allowance_w, 0.0))
    charge = want_w if abs(want_w - reading.charge_request_w) > CHARGE_DEADBAND_W else None
    return GensetCommand(gid, run, charge)
