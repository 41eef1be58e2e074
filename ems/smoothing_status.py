"""The smoothing part of the site status: the fast loop, the GPU lever, job ramps, the ramp envelope.

A ramp limit without the fast loop (the 720x demo) still shows its envelope; the fast loop's
own figures are null there.
"""

from __future__ import annotations

from typing import Any

from ems.config import SiteConfig
from ems.gpu_lever import GpuLever
from ems.job_ramps import JobRamps
from ems.ramp_watch import RampWatch
from ems.smoothing_loop import SmoothingLoop
from policies import grid_ramp


def smoothing_status(cfg: SiteConfig, now_s: float, ramp_p: grid_ramp.GridRampParams | None,
                     ramp: grid_ramp.GridRampState,
                     fast: SmoothingLoop | None, gpu: GpuLever | None, jobs: JobRamps | None,
                     watch: RampWatch | None = None) -> dict[str, Any] | None:
    g = cfg.grid_connection
    if fast is None and ramp_p is None:
        return None
    why = None if fast is None else fast.reason
    # as of this period's time: on an accelerated clock a period's own work can outlast the window
    allowed = None if ramp_p is None else grid_ramp.envelope(now_s, ramp_p, ramp)
    return {"reason": None if why is None else why.code, "owns_setpoints": fast is not None and fast.owns_setpoints,
            "swing_w": None if fast is None else round(fast.swing_w, 1), "ticks": 0 if fast is None else fast.ticks,
            "gpu": None if gpu is None or gpu.reason is None else gpu.reason.code,
            # how the fast loop sees the load a command delay ahead: the fitted model (periodic
            # swings), else the last change carried on; with its fits and the share the model won
            "predictor": None if fast is None or fast.predictor.taps == 0 else {
                "model": fast.predictor.modelled, "fits": fast.predictor.fits, "model_won": fast.predictor.used},
            # what the filler was last told (null: none, or unknown after a failed write)
            "filler_w": None if fast is None or fast.filler is None or fast.filler_written_w is None
            else round(fast.filler_written_w, 1),
            "jobs": None if jobs is None else {
                "reason": None if jobs.reason is None else jobs.reason.code, "ramping": jobs.ramping,
                "announced": jobs.book.received, "rejected": jobs.book.malformed + jobs.book.refused_full},
            # the grid's and the load's (no battery) oscillation in the band, against the limit
            "grid_band_rms_w": None if fast is None else round(fast.grid_band.rms, 1),
            "load_band_rms_w": None if fast is None else round(fast.load_band.rms, 1),
            "oscillation_limit_w_rms": g.oscillation_limit_w_rms,
            "ramp": None if ramp_p is None else {
                "limit_w": ramp_p.limit_w, "window_s": ramp_p.window_s,
                "allowed_w": None if allowed is None else [round(allowed[0], 1), round(allowed[1], 1)],
                # what the meter measured against the limit (ems/ramp_watch.py)
                "measured": None if watch is None else watch.status()}}
