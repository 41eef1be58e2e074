"""The site's smoothing in fast time: the plant at tick resolution, the live functions on it.

What `ems run` does with a fast loop beside the period loop, without sockets and faster
than real time (benchmarks/bench_smoothing.py, docs/smoothing.md): every tick (1 /
`policies.smoothing.rate_hz`) the plant's meter and units are read, the fast core
(policies/smoothing.py) commands the battery around the period's base, split across units
within their bounds (ems/smoothing_loop.py `split`); every control period the period step
(ems/period.py) runs on a snapshot read from the plant, arms the fast core, and the GPU
lever (ems/gpu_lever.py) and the job ramps (ems/job_ramps.py, on the plant's own job
schedule announced as a scheduler would) decide the racks' smoothing profiles. A command takes effect from
the next tick: the fast loop's latency. `smoothing=False` runs the same site with the
period step alone, the comparison the figures need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from ems.band_rms import BandRms
from ems.config import SiteConfig
from ems.dr_book import DrBook
from ems.gpu_lever import gpu_lever
from ems.job_ramps import job_ramps
from ems.model.dr import DrEvent
from ems.model.racks import RacksReading, SmoothingProfile
from ems.model.readings import MeterReading, PcsMode
from ems.model.snapshot import SiteSnapshot, unit_snapshot
from ems.period import StepState, step
from ems.plant_read import UnitReader
from ems.smoothing_loop import Armed, core_tick, load_predictor, smoothing_params, split
from ems.step_params import step_params
from ems.time_average import TimeAverage
from plant.config import PlantConfig
from plant.plant import Plant
from policies import job_ramp, smoothing
from policies.demand_response import EventTally
from policies.job_ramp import JobStep

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FastRun:
    tick_s: float
    load_w: FloatArray  # the site with neither battery nor GPU smoothing (the counterfactual), per tick
    grid_w: FloatArray  # per tick
    battery_w: FloatArray
    gpu_engaged_s: float  # time the GPU lever was engaged
    filler_wh: float  # energy the GPU floors burned above the demand
    held_back_wh: float  # demand the GPU ramps and caps did not serve then
    discharged_wh: float
    charged_wh: float
    stored_change_wh: float  # energy in the battery at the end minus at the start
    capacity_wh: float
    job_ramps_gpu: int = 0  # announced job steps the racks ramped (the battery had not the room)
    job_ramps_battery: int = 0  # announced job steps the battery took
    filler_load_wh: float = 0.0  # energy the filler load burned
    dr_results: tuple[EventTally, ...] = ()  # each demand-response event's figures, as the step booked them
    dr_demand_wh: FloatArray | None = None  # per rack, while a DR event is active: the demand ...
    dr_held_back_wh: FloatArray | None = None  # ... and what the caps did not serve of it (the truth)


def simulate(cfg: SiteConfig, plant_cfg: PlantConfig, seconds: float, smoothing_on: bool = True,
             announce_jobs: bool = True, dr_events: Sequence[DrEvent] = ()) -> FastRun:
    sm = cfg.policies.smoothing
    rate = 20.0 if sm is None else sm.rate_hz
    tick_s = 1.0 / rate
    period_s = cfg.control.period_s
    per_period = max(1, round(period_s / tick_s))
    racks = cfg.racks
    rack_ids = racks.rack_ids()
    update: dict[str, float] = {"max_substep_s": tick_s}
    if cfg.meter.average_s is not None:  # the meter averages as the site file says (as `ems sim` does)
        update["meter_average_s"] = cfg.meter.average_s
    plant = Plant(plant_cfg.model_copy(update=update), [u.id for u in cfg.bess_units],
                  rack_ids, [r.split("-")[0] for r in rack_ids], racks.nameplate_w)
    battery_avg = None if cfg.meter.average_s is None else TimeAverage(cfg.meter.average_s)
    for u in plant.units.values():
        u.command_mode(PcsMode.GRID_FOLLOWING, 0.0)
    readers = [(uid, UnitReader(u)) for uid, u in plant.units.items()]
    plant.step(tick_s)  # the site runs before the controller starts: its meter has a reading
    stored0 = sum(u.soc * u.capacity_wh for u in plant.units.values())
    params = step_params(cfg)
    g = cfg.grid_connection
    core = smoothing_params(cfg)
    predictor = load_predictor(cfg)
    filler = plant.filler if sm is not None and sm.filler else None
    if filler is not None:
        core = replace(core, filler_max_w=filler.cfg.rated_power_w)
    lever = gpu_lever(cfg) if smoothing_on else None
    jobs = job_ramps(cfg) if smoothing_on and announce_jobs else None
    commanded: dict[str, SmoothingProfile | None] = dict.fromkeys(rack_ids)
    band = BandRms(g.oscillation_band_hz[0], 10.0)
    loads: list[tuple[float, float]] = []
    n = round(seconds / tick_s)
    load_out, grid_out, batt_out = np.empty(n), np.empty(n), np.empty(n)
    dr_demand_wh, dr_held_wh = np.zeros(len(rack_ids)), np.zeros(len(rack_ids))
    dr_active = False
    caps_sent: dict[str, float | None] = dict.fromkeys(rack_ids)
    dr_results: list[EventTally] = []
    precharge_s = 0.0 if params.dr is None else params.dr.precharge_s
    book = DrBook()  # the live loop's event book, so the simulation picks the event it would
    for e in dr_events:
        book.add(e)
    state, fast = StepState(), smoothing.SmoothingState()
    armed: Armed | None = None
    last_setpoint_w, gpu_s = 0.0, 0.0
    job_ramps_gpu = job_ramps_battery = 0
    nameplate = np.full(len(rack_ids), racks.nameplate_w)
    for k in range(n):
        t = k * tick_s
        grid_w = plant.meter.grid_power_w
        load_w = grid_w + plant.battery_power_w - (0.0 if plant.filler is None else plant.filler.power_w)
        if k % per_period == 0:
            snaps = tuple(unit_snapshot(uid, *r.read(t), t, 3 * period_s) for uid, r in readers)
            reading = RacksReading(tuple(rack_ids), tuple(r.split("-")[0] for r in rack_ids),
                                   plant.racks.power_w.copy(), plant.racks.cap_w.copy(), nameplate,
                                   np.zeros(len(nameplate)),
                                   racks.telemetry_stale_after_s)
            # as the live loop's gather: the meter's average where configured, and the battery's
            # over the same window from one sample a period
            average_w = batt_avg_w = None
            if battery_avg is not None:
                average_w, batt_avg_w = plant.meter.average_w, battery_avg.add(t, plant.battery_power_w)
            meter = MeterReading(grid_w, 230.0, 50.0, 0.0, 0.0, t, average_w)
            snap = SiteSnapshot(t, t, period_s, meter, snaps, reading, last_setpoint_w, battery_avg_w=batt_avg_w)
            result = step(snap, params, state, dr=book.current(t, precharge_s))
            dr_active = result.dr is not None and result.dr.phase == "active"
            if result.dr is not None:  # the rack caps DR asks, as the live loop writes them
                if result.dr.finished is not None:
                    dr_results.append(result.dr.finished)
                for rid, cap in result.dr.caps_w.items():
                    if cap != caps_sent[rid]:
                        plant.racks.command_cap(plant.racks.index[rid], cap, t)
                        caps_sent[rid] = cap
            state = result.state
            last_setpoint_w = result.setpoint_w
            setpoints = result.unit_setpoints_w
            if smoothing_on:
                armed = Armed(t, dict(setpoints), dict(result.unit_bounds_w), g.import_limit_w, g.export_limit_w,
                              snap.site_load_avg_w)
            swing = max(w for _, w in loads) - min(w for _, w in loads) if len(loads) > 1 else 0.0
            profiles: dict[str, SmoothingProfile | None] = dict.fromkeys(rack_ids)
            if lever is not None:
                profiles = lever.decide(snap, result, swing, band.rms)
                gpu_s += period_s if lever.reason is not None else 0.0
            if jobs is not None:  # the scheduler announces what is due within the lead (and a period)
                for j in plant.racks.upcoming(t, jobs.params.lead_s + period_s):
                    jobs.book.add(JobStep(j.job, j.event, j.rack_ids, j.at_s, j.step_w))
                ramps, began = jobs.decide(snap, result, swing)
                for rid, ramp in ramps.items():
                    profiles[rid] = job_ramp.combine(profiles.get(rid), ramp)
                job_ramps_gpu += sum(r.lever == "gpu" for r in began)
                job_ramps_battery += sum(r.lever == "battery" for r in began)
            for rid, profile in profiles.items():
                if profile != commanded[rid]:
                    plant.racks.command_profile(plant.racks.index[rid], profile, t)
                    commanded[rid] = profile
        if armed is not None:
            tick, fast = core_tick(load_w, armed, tick_s, core, fast, predictor)
            setpoints = split(tick.battery_w, armed)
            if filler is not None:
                filler.command(tick.filler_w, t)
        for uid, w in setpoints.items():
            plant.units[uid].command_setpoint(w)
        band.add(t, grid_w, tick_s)
        loads.append((t, load_w))
        if len(loads) > 10.0 / tick_s:
            loads.pop(0)
        plant.step(tick_s)
        load_out[k] = plant.grid_without_battery_w
        grid_out[k] = plant.meter.grid_power_w
        batt_out[k] = plant.battery_power_w
        if dr_active:
            r = plant.racks
            dr_demand_wh += r.demand_w * tick_s / 3600.0
            dr_held_wh += np.maximum(r.demand_w - r.power_w, 0.0) * tick_s / 3600.0
    units = plant.units.values()
    return FastRun(
        tick_s, load_out, grid_out, batt_out, gpu_s, plant.racks.filler_wh, plant.racks.held_back_wh,
        sum(u.energy_discharged_wh for u in units), sum(u.energy_charged_wh for u in units),
        sum(u.soc * u.capacity_wh for u in units) - stored0, sum(u.capacity_wh for u in units),
        job_ramps_gpu, job_ramps_battery, 0.0 if plant.filler is None else plant.filler.energy_wh,
        tuple(dr_results) if state.dr.tally is None else (*dr_results, state.dr.tally), dr_demand_wh, dr_held_wh)
