"""What `ems backtest` writes: the report page for people; summary.json, monthly.csv and
(with --timeseries) timeseries.csv for machines."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

import numpy as np

from ems.backtest.report.page import html_report
from ems.backtest.results import COMPONENTS
from ems.backtest.run import Backtest
from ems.model.reasons import Reason


def write_outputs(out_dir: Path, bt: Backtest, timeseries: bool = False) -> list[Path]:
    result, trace = bt.result, bt.trace
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    summary = out_dir / "summary.json"
    summary.write_text(json.dumps(result.to_json(), indent=2, default=float))
    written.append(summary)
    monthly = out_dir / "monthly.csv"
    with monthly.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["month", "bill_without", "bill_with", "savings", *[f"savings_{c}" for c in COMPONENTS],
                    "peak_without_kw", "peak_with_kw", "discharged_kwh", "charged_kwh",
                    "equivalent_full_cycles", "foresight_savings"])
        for m in result.months:
            w.writerow([m.month, f"{m.bill_without:.2f}", f"{m.bill_with:.2f}", f"{m.savings:.2f}",
                        *[f"{m.savings_by_component[c]:.2f}" for c in COMPONENTS], f"{m.peak_without_kw:.1f}",
                        f"{m.peak_with_kw:.1f}", f"{m.discharged_kwh:.1f}", f"{m.charged_kwh:.1f}",
                        f"{m.equivalent_full_cycles:.2f}",
                        "" if m.foresight_savings is None else f"{m.foresight_savings:.2f}"])
    written.append(monthly)
    page = out_dir / "report.html"
    page.write_text(html_report(bt), encoding="utf-8")
    written.append(page)
    if timeseries:
        ts = out_dir / "timeseries.csv"
        with ts.open("w", newline="") as fh:
            w = csv.writer(fh)
            units = list(trace.unit_setpoint_w)
            w.writerow(["timestamp", "load_w", "grid_w", "battery_w", "setpoint_w", "soc", "reserve_soc", "cap_w",
                        "reason", *[f"setpoint_w_{u}" for u in units]])
            for k in range(trace.grid_w.size):
                t = trace.start + timedelta(seconds=trace.step_s * k)
                cap = trace.cap_w[k]
                w.writerow([t.isoformat(), f"{trace.load_w[k]:.0f}", f"{trace.grid_w[k]:.0f}",
                            f"{trace.battery_w[k]:.0f}", f"{trace.setpoint_w[k]:.0f}", f"{trace.soc[k]:.4f}",
                            f"{trace.reserve_soc[k]:.4f}", "" if np.isnan(cap) else f"{cap:.0f}",
                            Reason(int(trace.reason[k])).code,
                            *[f"{trace.unit_setpoint_w[u][k]:.0f}" for u in units]])
        written.append(ts)
    return written
