"""GPU racks running synchronous training jobs, as a vectorised fleet.

Racks are grouped into jobs of `racks_per_job` neighbours. A job cycles idle -> ramp up
-> training (compute/communication swings at 0.2-3 Hz between ~40 % and 100 % of
nameplate, in step across the job, with periodic checkpoint dips) -> ramp down -> idle.
A power cap is obeyed after `cap_response_s`, down to `min_cap_fraction` of nameplate.
A smoothing profile (GPU power smoothing: a floor held while a job runs, and a ramp
rate) is taken after the same response time; the energy the floor burns above the
demand and the work the caps and ramps hold back are counted. Each step reports the
rack's average power over the step, as a meter integrating over it would, so a long
step does not alias the swing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from ems.model.racks import SmoothingProfile
from plant.config import SimRackLoadConfig

FloatArray = npt.NDArray[np.float64]


class JobState(IntEnum):
    IDLE = 0
    RAMP_UP = 1
    TRAINING = 2
    CHECKPOINT = 3
    RAMP_DOWN = 4


_SQUARENESS = 3.0  # tanh sharpness of the compute/communication wave
_MAX_WAVE_SAMPLES = 64  # samples per step when averaging a swing over a long step


@dataclass(frozen=True, slots=True)
class JobTransition:
    job: str
    event: str  # "start" or "stop"
    at_s: float
    rack_ids: tuple[str, ...]
    step_w: float  # the job's mean training power above idle


class RackFleet:
    def __init__(
        self,
        rack_ids: list[str],
        row_of_rack: list[str],
        nameplate_w: float,
        cfg: SimRackLoadConfig,
        rng: np.random.Generator,
    ) -> None:
        n = len(rack_ids)
        self.cfg = cfg
        self.rack_ids = rack_ids
        self.index = {rid: i for i, rid in enumerate(rack_ids)}
        self.row_of_rack = np.array(row_of_rack)
        self.nameplate_w: FloatArray = np.full(n, float(nameplate_w))
        self.power_w: FloatArray = np.zeros(n)
        self.cap_w: FloatArray = np.full(n, np.nan)  # cap in effect; NaN = none
        self._cap_pending_w: FloatArray = np.full(n, np.nan)
        self._cap_pending_at: FloatArray = np.full(n, np.inf)
        self._override: FloatArray = np.full(n, np.nan)  # scenario: demand fraction
        self._jitter = 1.0 + rng.uniform(-0.03, 0.03, n)
        self._rng = rng
        n_jobs = (n + cfg.racks_per_job - 1) // cfg.racks_per_job
        self.job_of_rack = np.arange(n) // cfg.racks_per_job
        self.job_state = np.full(n_jobs, JobState.TRAINING, dtype=np.int64)
        self._job_hz = rng.uniform(cfg.swing_hz_min, cfg.swing_hz_max, n_jobs)
        self._job_phase = rng.uniform(0.0, 1.0, n_jobs)
        self._job_since = -rng.uniform(0.0, cfg.checkpoint_every_s, n_jobs)
        self._job_until = rng.exponential(cfg.mean_job_s, n_jobs)
        self._job_next_ckpt = rng.uniform(0.0, cfg.checkpoint_every_s, n_jobs)
        self._job_runs = np.zeros(n_jobs, dtype=np.int64)  # starts so far: a job's run is its id to the scheduler
        self.demand_w: FloatArray = np.zeros(n)
        self.floor_w: FloatArray = np.zeros(n)  # smoothing profile in effect (0, inf: none)
        self.ramp_w_per_s: FloatArray = np.full(n, np.inf)
        self._profile_pending: dict[int, tuple[float, float, float]] = {}  # rack -> (floor, ramp, at)
        self.filler_wh = 0.0  # energy the floors burned above the demand
        self.held_back_wh = 0.0  # demand the caps and ramps did not serve (then)
        self.reboot_s = 120.0
        self.down_until_s: FloatArray = np.zeros(n)  # a lost rack draws 0 W until then (inf: no power yet)

    # --- commands --------------------------------------------------------------------
    def command_cap(self, rack: int, cap_w: float | None, now_s: float) -> None:
        self._cap_pending_w[rack] = np.nan if cap_w is None else cap_w
        self._cap_pending_at[rack] = now_s + self.cfg.cap_response_s

    def command_profile(self, rack: int, profile: SmoothingProfile | None, now_s: float) -> None:
        floor_w, ramp = (0.0, np.inf) if profile is None else (profile.floor_w, profile.ramp_w_per_s)
        self._profile_pending[rack] = (floor_w, ramp, now_s + self.cfg.cap_response_s)

    def lose(self, mask: npt.NDArray[np.bool_]) -> int:
        """Racks in `mask` lose power (those already down are not counted twice)."""
        newly = mask & (self.down_until_s != np.inf)
        self.down_until_s[newly] = np.inf
        return int(newly.sum())

    def power_restored(self, now_s: float) -> None:
        """Power is back: racks that lost it reboot and draw load again after reboot_s."""
        self.down_until_s[self.down_until_s == np.inf] = now_s + self.reboot_s

    def set_override(self, fraction: float | None, rows: list[str] | None = None) -> None:
        mask = np.ones(len(self.rack_ids), bool) if rows is None else np.isin(self.row_of_rack, rows)
        self._override[mask] = np.nan if fraction is None else fraction

    # --- physics ---------------------------------------------------------------------
    def _advance_jobs(self, now_s: float) -> None:
        cfg, rng = self.cfg, self._rng
        for j in np.flatnonzero(now_s >= self._job_until):
            state = JobState(self.job_state[j])
            if state is JobState.TRAINING or state is JobState.CHECKPOINT:
                nxt, dur = JobState.RAMP_DOWN, cfg.ramp_s
            elif state is JobState.RAMP_DOWN:
                nxt, dur = JobState.IDLE, rng.exponential(cfg.mean_idle_s)
            elif state is JobState.IDLE:
                nxt, dur = JobState.RAMP_UP, cfg.ramp_s
                self._job_runs[j] += 1
            else:
                nxt, dur = JobState.TRAINING, rng.exponential(cfg.mean_job_s)
                self._job_hz[j] = rng.uniform(cfg.swing_hz_min, cfg.swing_hz_max)
                self._job_next_ckpt[j] = now_s + cfg.checkpoint_every_s
            self.job_state[j] = nxt
            self._job_since[j] = now_s
            self._job_until[j] = now_s + dur
        # checkpoints interrupt training for checkpoint_s, then training resumes
        training = self.job_state == JobState.TRAINING
        start_ckpt = training & (now_s >= self._job_next_ckpt)
        self.job_state[start_ckpt] = JobState.CHECKPOINT
        self._job_since[start_ckpt] = now_s
        in_ckpt = self.job_state == JobState.CHECKPOINT
        end_ckpt = in_ckpt & (now_s - self._job_since >= cfg.checkpoint_s)
        self.job_state[end_ckpt] = JobState.TRAINING
        self._job_next_ckpt[end_ckpt] = now_s + cfg.checkpoint_every_s

    def upcoming(self, now_s: float, horizon_s: float) -> list[JobTransition]:
        """The job starts and stops due within `horizon_s`, as a cluster scheduler knows them
        (it starts and stops the jobs): what the simulator announces (docs/topics.md)."""
        cfg = self.cfg
        if cfg.model == "steady":
            return []
        step_fraction = 0.5 * (cfg.swing_low_fraction + cfg.swing_high_fraction) - cfg.idle_fraction
        out = []
        for j in np.flatnonzero(self._job_until <= now_s + horizon_s):
            state = JobState(self.job_state[j])
            if state is JobState.IDLE:
                event, run = "start", self._job_runs[j] + 1
            elif state in (JobState.TRAINING, JobState.CHECKPOINT):
                event, run = "stop", self._job_runs[j]
            else:
                continue
            racks = np.flatnonzero(self.job_of_rack == j)
            out.append(JobTransition(f"job{j}-run{run}", event, float(self._job_until[j]),
                                     tuple(self.rack_ids[i] for i in racks),
                                     float(step_fraction * self.nameplate_w[racks].sum())))
        return out

    def _training_fraction(self, now_s: float, dt_s: float) -> FloatArray:
        """Average of each job's compute/communication wave over the step (t - dt, t],
        as a meter integrating over the step sees it."""
        cfg = self.cfg
        lo, hi = cfg.swing_low_fraction, cfg.swing_high_fraction
        n_samples = int(min(_MAX_WAVE_SAMPLES, max(1, np.ceil(dt_s * cfg.swing_hz_max * 8))))
        if dt_s * cfg.swing_hz_min * 8 >= _MAX_WAVE_SAMPLES:
            # even the slowest swing repeats many times within the step: its mean
            return np.full(len(self._job_hz), 0.5 * (lo + hi))
        t = now_s - dt_s * (np.arange(n_samples) + 0.5) / n_samples
        x = np.sin(2 * np.pi * (np.outer(t, self._job_hz) + self._job_phase))
        wave = 0.5 + 0.5 * np.tanh(_SQUARENESS * x) / np.tanh(_SQUARENESS)
        mean: FloatArray = wave.mean(axis=0)
        return lo + (hi - lo) * mean

    def _job_fraction(self, now_s: float, dt_s: float) -> FloatArray:
        cfg = self.cfg
        mean_training = 0.5 * (cfg.swing_low_fraction + cfg.swing_high_fraction)
        frac = self._training_fraction(now_s, dt_s)
        state = self.job_state
        elapsed = now_s - self._job_since
        ramp = np.clip(elapsed / max(cfg.ramp_s, 1e-9), 0.0, 1.0)
        frac = np.where(state == JobState.IDLE, cfg.idle_fraction, frac)
        frac = np.where(state == JobState.CHECKPOINT, cfg.checkpoint_fraction, frac)
        span = mean_training - cfg.idle_fraction
        frac = np.where(state == JobState.RAMP_UP, cfg.idle_fraction + span * ramp, frac)
        return np.where(state == JobState.RAMP_DOWN, mean_training - span * ramp, frac)

    def step(self, now_s: float, dt_s: float) -> None:
        cfg = self.cfg
        if cfg.model == "steady":
            frac = np.full(len(self.rack_ids), cfg.steady_fraction)
        else:
            self._advance_jobs(now_s)
            frac = self._job_fraction(now_s, dt_s)[self.job_of_rack]
        frac = np.where(np.isnan(self._override), frac, self._override)
        self.demand_w = np.minimum(frac * self._jitter, 1.0) * self.nameplate_w
        due = now_s >= self._cap_pending_at
        if due.any():
            self.cap_w[due] = self._cap_pending_w[due]
            self._cap_pending_at[due] = np.inf
        for rack, (floor_w, ramp, at) in list(self._profile_pending.items()):
            if now_s >= at:
                self.floor_w[rack], self.ramp_w_per_s[rack] = floor_w, ramp
                del self._profile_pending[rack]
        lowest_cap_w = cfg.min_cap_fraction * self.nameplate_w
        cap = np.where(np.isnan(self.cap_w), np.inf, np.maximum(self.cap_w, lowest_cap_w))
        working = np.ones(len(self.rack_ids), bool) if cfg.model == "steady" else \
            (self.job_state != JobState.IDLE)[self.job_of_rack]
        target = np.maximum(self.demand_w, np.where(working, self.floor_w, 0.0))
        # a ramp limit from the last step's power; a cap binds at once all the same
        most_w = self.ramp_w_per_s * dt_s
        ramped = self.power_w + np.clip(target - self.power_w, -most_w, most_w)
        power = np.where(now_s < self.down_until_s, 0.0, np.minimum(ramped, cap))
        self.filler_wh += float(np.maximum(power - self.demand_w, 0.0).sum()) * dt_s / 3600.0
        self.held_back_wh += float(np.maximum(self.demand_w - power, 0.0).sum()) * dt_s / 3600.0
        self.power_w = power

    @property
    def total_power_w(self) -> float:
        return float(self.power_w.sum())

    @property
    def total_demand_w(self) -> float:
        """What the racks would draw without caps (for the counterfactual)."""
        return float(self.demand_w.sum())
