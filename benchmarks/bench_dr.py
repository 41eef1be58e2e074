"""Demand-response benchmark: a 3-hour event asking 25 % less import on the simulated GPU site.

The fast simulator (ems/fast_sim.py: the period step every second on the plant model, the
same step `ems run` runs) on 64 racks of 40 kW in four rows running synchronous training
(30-100 % swings at 0.2-3 Hz), PUE 1.25, with a 1 MWh / 300 kW battery at 50 % SoC (too
small to give a quarter of the import alone). Rows have flex tiers 1 (a critical row), 2,
3 and 4. The site's baseline is its own import averaged over the 15 minutes before the
pre-charge; the pre-charge (1 h) fills the battery towards 95 %; the event asks for 25 %
under the baseline for 3 hours. Measured at the plant's meter (1-s averages of 5 Hz
ticks): the seconds from the start until the next minute's average is at or under the
target, the share of the event's whole minutes at or under it, the battery's discharge,
and the GPU energy the caps held back with each tier's throughput given up (the plant's
demand not served, the truth; the controller's own estimate beside it). The same event
with every row at tier 0 (the battery alone) for comparison. `--quick`: a 10-minute event
with shorter warm-up and pre-charge.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, update_section, write_json  # noqa: E402
from ems.config import parse_config  # noqa: E402
from ems.fast_sim import FastRun, simulate  # noqa: E402
from ems.model.dr import DrEvent  # noqa: E402
from plant.config import PlantConfig  # noqa: E402

ROWS, PER_ROW, NAMEPLATE_W = 4, 16, 40_000.0
TIERS = {"row01": 1, "row02": 2, "row03": 3, "row04": 4}
REDUCTION = 0.25


def site(tiers: dict[str, int], baseline_s: float, precharge_s: float) -> dict[str, Any]:
    port = iter(range(20000, 20010))
    return {
        "site": "bench-dr", "control": {"period_s": 1.0},
        "meter": {"port": next(port), "profile": "meter_v1", "average_s": 1.0},  # averages a second, as meters do
        "bess_units": [{"id": "bess-1", "bms": {"port": next(port), "profile": "bms_v1"},
                        "pcs": {"port": next(port), "profile": "pcs_v1"}}],
        "racks": {"rows": ROWS, "racks_per_row": PER_ROW, "nameplate_w": NAMEPLATE_W, "critical_rows": ["row01"]},
        "policies": {"battery": {"soc_min": 0.1, "soc_max": 0.95},
                     # the fast loop is not what is measured here: off, and the plant ticks at 5 Hz
                     "smoothing": {"enabled": False, "rate_hz": 5},
                     "demand_response": {"flex_tiers": tiers, "precharge_s": precharge_s, "baseline_s": baseline_s}},
    }


def plant(seed: int = 11) -> PlantConfig:
    return PlantConfig.model_validate({
        "seed": seed, "pue": 1.25,
        "bess": [{"capacity_wh": 1e6, "rated_power_w": 0.3e6, "initial_soc": 0.5, "ramp_w_per_s": 20e6,
                  "heartbeat_timeout_s": 0.0}],
        "racks": {"model": "training", "racks_per_job": 16, "swing_low_fraction": 0.3, "swing_high_fraction": 1.0,
                  "swing_hz_min": 0.2, "swing_hz_max": 3.0, "checkpoint_every_s": 1800.0, "checkpoint_s": 30.0,
                  "checkpoint_fraction": 0.3, "mean_job_s": 1e6, "mean_idle_s": 60.0, "ramp_s": 60.0},
    })


def per_second(x: np.ndarray, tick_s: float) -> np.ndarray:
    n = round(1.0 / tick_s)
    return x[: x.size // n * n].reshape(-1, n).mean(axis=1)


def figures(run: FastRun, start_s: float, event_s: float) -> dict[str, Any]:
    [tally] = [t for t in run.dr_results if t.event_id == "bench"]
    target = tally.target_w
    grid = per_second(run.grid_w, run.tick_s)[int(start_s): int(start_s + event_s)]
    batt = per_second(run.battery_w, run.tick_s)[int(start_s): int(start_s + event_s)]
    ahead = np.convolve(grid, np.ones(60) / 60, mode="valid")  # the minute from each second on
    at = np.flatnonzero(ahead <= target)
    minutes = grid[: grid.size // 60 * 60].reshape(-1, 60).mean(axis=1)
    demand, held = run.dr_demand_wh, run.dr_held_back_wh
    assert demand is not None and held is not None
    tier_of = np.repeat([TIERS[f"row{r + 1:02d}"] for r in range(ROWS)], PER_ROW)
    by_tier = {str(t): float(held[tier_of == t].sum() / demand[tier_of == t].sum())
               for t in sorted(set(TIERS.values()))}
    return {
        "baseline_w": tally.baseline_w, "target_w": target, "achieved_w": float(grid.mean()),
        "seconds_to_target": None if at.size == 0 else float(at[0]),
        "seconds_to_first_second_at_target": None if not (grid <= target).any() else float(np.argmax(grid <= target)),
        "share_minutes_at_target": float((minutes <= target).mean()),
        "worst_minute_over_target_w": float(max(minutes.max() - target, 0.0)),
        "battery_kwh": float(np.maximum(batt, 0.0).sum() / 3600.0 / 1e3),
        "gpu_throttled_kwh": float(held.sum() / 1e3),
        "gpu_throttled_kwh_estimated": tally.gpu_throttled_wh / 1e3,
        "throughput_given_up_by_tier": by_tier,
        "throughput_given_up_by_tier_estimated": {str(k): v for k, v in tally.throughput_given_up().items()
                                                  if k in TIERS.values()},
        "shifted_kwh": tally.shifted_wh / 1e3, "minutes": int(minutes.size),
    }


def run_event(tiers: dict[str, int], quick: bool) -> dict[str, Any]:
    baseline_s, precharge_s, event_s = (300.0, 300.0, 600.0) if quick else (900.0, 3600.0, 3 * 3600.0)
    start_s = baseline_s + precharge_s
    cfg = parse_config(site(tiers, baseline_s, precharge_s), "bench")
    run = simulate(cfg, plant(), start_s + event_s + 5.0, smoothing_on=False,
                   dr_events=[DrEvent("bench", start_s, start_s + event_s, reduction_fraction=REDUCTION,
                                      source="backtest")])
    return figures(run, start_s, event_s)


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.0f}"


def report(f: dict[str, Any], alone: dict[str, Any], command: str, wall_s: float) -> str:
    tiers = ", ".join(f"tier {t}: {s:.1%} (estimated {f['throughput_given_up_by_tier_estimated'].get(t, 0.0):.1%})"
                      for t, s in f["throughput_given_up_by_tier"].items())
    s2t = f["seconds_to_target"]
    return "\n".join([
        "## Demand response (`bench_dr.py`)", "",
        f"`{command}` ({machine()}; {wall_s:.0f} s wall). " + (__doc__ or "").split("\n\n", 1)[1].replace("\n", " "),
        "",
        "| figure | battery + GPU flex tiers | battery alone |", "|---|---|---|",
        f"| baseline / target import | {f['baseline_w'] / 1e3:,.0f} / {f['target_w'] / 1e3:,.0f} kW | "
        f"{alone['baseline_w'] / 1e3:,.0f} / {alone['target_w'] / 1e3:,.0f} kW |",
        f"| average import in the window | {f['achieved_w'] / 1e3:,.0f} kW | {alone['achieved_w'] / 1e3:,.0f} kW |",
        f"| seconds to target (next minute's average) | {_s(s2t)} | {_s(alone['seconds_to_target'])} |",
        f"| seconds to the first second at or under it | {_s(f['seconds_to_first_second_at_target'])} | "
        f"{_s(alone['seconds_to_first_second_at_target'])} |",
        f"| minutes at or under the target | {f['share_minutes_at_target']:.1%} of {f['minutes']} | "
        f"{alone['share_minutes_at_target']:.1%} |",
        f"| worst minute over the target | {f['worst_minute_over_target_w'] / 1e3:,.1f} kW | "
        f"{alone['worst_minute_over_target_w'] / 1e3:,.1f} kW |",
        f"| battery discharge in the window | {f['battery_kwh']:,.0f} kWh | {alone['battery_kwh']:,.0f} kWh |",
        f"| GPU energy held back (plant truth; controller's estimate) | {f['gpu_throttled_kwh']:,.0f} kWh "
        f"({f['gpu_throttled_kwh_estimated']:,.0f} kWh) | {alone['gpu_throttled_kwh']:,.0f} kWh |",
        "",
        f"Throughput given up per tier (work not served / demand, plant truth): {tiers}. Tier limits: 1 at most 10 %, "
        "2 at most 25 %, 3 at most 50 %, 4 may pause.",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--quick", action="store_true", help="a 10-minute event (docs left alone)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    f = run_event(TIERS, args.quick)
    alone = run_event({}, args.quick)
    wall = time.perf_counter() - t0
    f["battery_alone"] = alone
    command = "python benchmarks/bench_dr.py" + (" --quick" if args.quick else "")
    body = report(f, alone, command, wall)
    print(body)
    write_json(args.json, f)
    if not args.quick:
        update_section("dr", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
