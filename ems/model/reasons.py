"""Stable reason codes: why the controller did what it did.

Every decision publishes one. Numbers are never reused or renumbered; add new codes at
the end. Each code has a test named after it (tests/unit/test_reason_codes.py lists them).
"""

from __future__ import annotations

from enum import IntEnum


class Reason(IntEnum):
    IDLE = 1  # nothing asks the battery to act: 0 W
    PEAK_SHAVING_ACTIVE = 2  # discharging to hold grid import at the cap
    PEAK_SHAVING_RECHARGE = 3  # import is under the recharge threshold: charging
    PEAK_SHAVING_STANDBY = 4  # import between the recharge threshold and the cap
    SOC_MIN_LIMIT = 5  # discharge limited because units reached soc_min
    SOC_MAX_LIMIT = 6  # charge limited because units reached soc_max
    UNIT_POWER_LIMIT = 7  # the request exceeds what available units can deliver
    RAMP_LIMIT = 8  # the site ramp limit held the setpoint back
    STALE_METER = 9  # no fresh grid meter reading: grid-trading policies stand down
    STALE_BMS = 10  # a unit's BMS reading is missing or stale: unit held at 0 W
    STALE_PCS = 11  # a unit's PCS reading is missing or stale: unit held at 0 W
    PCS_FAULT = 12  # a unit's PCS reports a fault: unit isolated
    BMS_FAULT = 13  # a unit's BMS reports a fault alarm: unit isolated
    NO_UNIT_AVAILABLE = 14  # no BESS unit can take a setpoint
    CAP_UNREACHABLE = 15  # the battery cannot hold the import cap (power or energy short)
    SHUTDOWN = 16  # the controller is stopping: units to 0 W
    ARBITRAGE_CHARGE = 17  # following the plan's SoC trajectory: charging
    ARBITRAGE_DISCHARGE = 18  # following the plan's SoC trajectory: discharging
    ARBITRAGE_HOLD = 19  # the plan's SoC is reached for this step: holding 0 W
    PLAN_STALE = 20  # no plan, or the plan is too old: arbitrage stands down
    RESERVE_FLOOR = 21  # discharge limited to keep the reserve energy for outages
    FAILOVER_ARMED = 22  # a grid loss now needs no rack caps: the BESS carries the island
    FAILOVER_SHED = 23  # a grid loss now caps racks in shed order so the load fits the BESS
    FAILOVER_SHORT = 24  # even capping every rack leaves the island short (or no unit can form it)
    ISLANDED = 25  # grid lost: running as an island; grid-trading policies stand down
    GENSET_START_FAILED = 26  # the genset did not start: deeper shedding, critical racks kept
    RECONNECT_WAIT = 27  # the grid is back: waiting for it to stay stable before reconnecting
    UNIT_MAINTENANCE = 28  # an operator put the unit in maintenance: held at 0 W, no mode commands
    OPERATOR_FORCED = 29  # an operator forced the battery power (0 W or a setpoint) for a time
    METER_FROZEN = 30  # the meter repeats the very same value: not trusted, safe action
    METER_IMPLAUSIBLE = 31  # a meter value outside physical range: not trusted, safe action
    BMS_IMPLAUSIBLE = 32  # a BMS value out of range or a SoC jump no battery can make: unit at 0 W
    PCS_IMPLAUSIBLE = 33  # a PCS power far beyond its rating: unit at 0 W
    ENVELOPE_CLAMP = 34  # the final safety envelope narrowed a unit's setpoint
    PLAN_CAP = 35  # a fresh plan's import cap is in force (the configured peak-shaving cap stands down)
    RESERVE_RECOVERY = 36  # below the reserve floor (after an outage, say): charging back to it
    NO_PLAN = 37  # the planner cannot give a plan (too little history, a failed solve): arbitrage stands down
    DEVICE_LOST = 38  # a device does not answer reads or writes
    BROKER_LOST = 39  # the MQTT broker is unreachable: no rack telemetry, caps or site status until it is back
    IMPORT_LIMIT = 40  # the grid connection's import limit: the battery discharges (or stops charging) to hold it
    EXPORT_LIMIT = 41  # the site's export limit (0: no export): discharge held back, or PV's excess absorbed
    RAMP_LIMITED = 42  # the grid connection's ramp limit holds the battery (the grid may not move faster)
    SMOOTHING_ACTIVE = 43  # the fast loop moves the battery to keep training swings off the grid
    SMOOTHING_CLIPPED = 44  # the battery's bounds clip the smoothing: part of the swing reaches the grid
    GPU_SMOOTHING = 45  # GPU power floors and ramp limits engaged on racks: the battery alone cannot hold the swing
    RIDE_THROUGH = 46  # a grid disturbance inside the ride-through curve: the site stays connected, the battery holds
    JOB_RAMP = 47  # an announced job start or stop the battery cannot take: its racks ramp at their share of the limit
    FILLER_LOAD = 48  # the filler load burns what the battery cannot absorb of a drop of the site's load
    # 50-59: demand response (policies/demand_response.py)
    DR_EVENT_ACTIVE = 50  # a demand-response event: the battery holds grid import at or under its target
    DR_TARGET_UNREACHABLE = 51  # battery and every GPU rack its flex tier allows together cannot reach the target
    DR_PRECHARGE = 52  # a demand-response event is due: the battery charges for it beforehand
    DR_GPU_THROTTLE = 53  # the battery alone cannot hold the target: GPU racks capped by flex tier
    # 70-89: off-grid and weak-grid sites (policies/microgrid.py, policies/genset_dispatch.py)
    MICROGRID_BALANCE = 70  # off-grid or weak-grid: the battery covers the load less gensets and the grid's allowance
    GENSET_START_LOW_SOC = 71  # SoC at or under the start threshold: a genset starts to recharge the battery
    GENSET_START_LOAD = 72  # battery and grid cannot carry the load: the next genset is staged in
    GENSET_STOP_SOC_RECOVERED = 73  # SoC back at the stop threshold and no genset needed for power: a genset stops
    GENSET_STOP_LOAD_FELL = 74  # the load fits on one genset fewer: the last one staged in stops
    GENSET_CHARGING = 75  # gensets run at their efficient load; the surplus charges the battery
    GENSET_MIN_RUN_HOLD = 76  # a genset is due to stop but has not run its minimum time: it keeps running
    PV_CURTAILED = 77  # a surplus the battery cannot take and the grid may not: PV curtailed
    UNSERVED_LOAD = 78  # battery, gensets and grid together cannot carry the load: energy not served
    # 79-89: off-grid and weak-grid sites, continued
    GENSET_TRIPPED = 79  # a running genset reports a failure (a trip): out of service, the next one staged in
    OFFGRID_SHED = 80  # the sources cannot carry the load (or the battery runs low, no genset coming): next row capped
    OFFGRID_SHED_RELEASED = 81  # the sources carry the load again with room to spare: the last row capped released
    GENSET_START_PLAN = 82  # the planner's genset schedule has one more genset on in this period: it starts
    GENSET_STOP_PLAN = 83  # the planner's schedule has one fewer on and nothing else needs it: the last in stops

    @property
    def code(self) -> str:
        return self.name
