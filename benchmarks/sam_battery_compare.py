"""Side by side: ems's policies vs NREL SAM's own battery dispatch, same load, tariff, battery.

SAM (PySAM 7 `Battery`, behind the meter) dispatches a 2 MW / 4 MWh battery on the shared
load x1000 with its peak-shaving (perfect look-ahead, and look-behind) and its
retail-rate (price-signal) dispatch; each resulting grid series is billed by ems's bill
engine (which matches SAM's Utilityrate5 to the cent, tests/crosscheck). ems runs
`ems backtest`'s engine on the same year at 15 min. Slow (a minute or two): not a test.

    python benchmarks/sam_battery_compare.py [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ems.backtest.config import load_backtest_config  # noqa: E402
from ems.backtest.run import BacktestOptions, run  # noqa: E402
from ems.tariff import compute_bill, load_urdb  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
LOAD = SHARED / "loads" / "sam_sample_load_8760h.csv"
URDB = SHARED / "tariffs" / "sam_urdbv7.json"
SITE = ROOT / "config" / "backtest-site.yaml"
SCALE = 1000.0
POWER_KW, ENERGY_KWH = 2000.0, 4000.0
YEAR = datetime(2018, 1, 1)
# (batt_dispatch_choice, batt_dispatch_wf_forecast_choice) -> name; behind the meter, SAM 2024+
# (look-behind, forecast choice 1, gave output identical to look-ahead: left out, see docs/backtest.md)
DISPATCH = {(0, 0): "peak shaving, perfect look-ahead", (4, 0): "retail rate dispatch, look-ahead"}


def sam_dispatch(choice: tuple[int, int], load_kw: np.ndarray, urdb: dict) -> np.ndarray:
    """SAM's battery power (kW AC, > 0 discharge) for a year of hourly load."""
    import PySAM.Battery as battery
    import PySAM.BatteryTools as tools
    import PySAM.UtilityRateTools as rate_tools

    m = battery.default("StandaloneBatteryCommercial")
    tools.battery_model_sizing(m, POWER_KW, ENERGY_KWH, 500)
    m.Load.load = load_kw.tolist()
    m.Lifetime.analysis_period = 1
    m.BatterySystem.batt_meter_position = 0  # behind the meter
    m.BatteryCell.batt_minimum_SOC = 20.0  # ems: reserve 0.20
    m.BatteryCell.batt_maximum_SOC = 95.0
    m.BatteryCell.batt_initial_SOC = 50.0
    m.BatteryDispatch.batt_dispatch_choice = choice[0]
    m.BatteryDispatch.batt_dispatch_wf_forecast_choice = choice[1]
    m.BatteryDispatch.batt_dispatch_auto_can_gridcharge = 1  # a stand-alone battery charges from the grid
    m.BatteryDispatch.batt_dispatch_auto_can_charge = 1
    m.ElectricityRates.assign(rate_tools.URDBv8_to_ElectricityRates(copy.deepcopy(urdb)))
    m.ElectricityRates.ur_en_ts_sell_rate = 0
    m.ElectricityRates.ur_en_ts_buy_rate = 0
    m.execute(0)
    return np.asarray(m.Outputs.batt_power[:8760], dtype=np.float64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    urdb = json.loads(URDB.read_text())
    tariff = load_urdb(URDB)
    load_kw = np.loadtxt(LOAD, skiprows=1) * SCALE
    without = compute_bill(tariff, load_kw, start=YEAR, step_s=3600).total
    rows = {}
    for choice, name in DISPATCH.items():
        try:
            batt_kw = sam_dispatch(choice, load_kw, urdb)
        except Exception as exc:  # report what SAM said, do not invent a number
            rows[f"SAM: {name}"] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        bill = compute_bill(tariff, load_kw - batt_kw, start=YEAR, step_s=3600).total
        rows[f"SAM: {name}"] = {"savings": without - bill,
                                "discharged_kwh": float(np.maximum(batt_kw, 0).sum()),
                                "peak_kw": float((load_kw - batt_kw).max())}
    cfg = load_backtest_config(SITE)
    bt = run(cfg, BacktestOptions(load_csv=LOAD, tariff=URDB, load_scale=SCALE))
    t = bt.result.total
    rows["ems: peak shaving + arbitrage planner (15 min)"] = {
        "savings": t["savings"], "discharged_kwh": t["discharged_kwh"], "peak_kw": t["peak_with_kw"]}
    if bt.result.foresight is not None:
        rows["perfect foresight (LP per month, 15 min)"] = {"savings": bt.result.foresight["savings"]}
    print(f"bill without battery: {without:,.0f}")
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:55s} did not run: {r['error']}")
        else:
            extra = "" if "peak_kw" not in r else f"  peak {r['peak_kw']:,.0f} kW, {r['discharged_kwh']:,.0f} kWh out"
            print(f"{name:55s} savings {r['savings']:12,.0f}{extra}")
    if args.json:
        args.json.write_text(json.dumps({"bill_without": without, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
