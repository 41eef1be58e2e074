"""Record NREL BLAST-Lite's LFP-Gr 250 Ah model on year-long SoC profiles (15 min), 10 years.

ems ports this model (ems/backtest/ageing.py) instead of depending on `blast-lite`: its
1.1.1 pins numpy < 2, ems pins numpy >= 2. tests/unit/test_ageing.py checks the port against
what this script wrote to tests/data/blast_lite_lfp_reference.json. To re-record, in a
separate virtual environment: `pip install blast-lite==1.1.1` and run this script.
The profiles must stay the same as in tests/unit/test_ageing.py (`reference_profiles`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

try:
    from blast.models import Lfp_Gr_250AhPrismatic
except ImportError:  # the profiles are still importable (tests/unit/test_ageing.py)
    Lfp_Gr_250AhPrismatic = None

STEP_S = 900
T_S = np.arange(365 * 96 + 1) * float(STEP_S)


def daily(lo: float, hi: float, charge_h: tuple[float, float] = (0, 4),
          discharge_h: tuple[float, float] = (16, 19)) -> np.ndarray:
    """Charge lo -> hi over charge_h, hold, discharge hi -> lo over discharge_h, every day."""
    h = (T_S / 3600.0) % 24
    soc = np.full(T_S.size, lo)
    up = (h >= charge_h[0]) & (h < charge_h[1])
    soc[up] = lo + (hi - lo) * (h[up] - charge_h[0]) / (charge_h[1] - charge_h[0])
    soc[(h >= charge_h[1]) & (h < discharge_h[0])] = hi
    down = (h >= discharge_h[0]) & (h < discharge_h[1])
    soc[down] = hi - (hi - lo) * (h[down] - discharge_h[0]) / (discharge_h[1] - discharge_h[0])
    return soc


def reference_profiles() -> dict[str, tuple[np.ndarray, float]]:
    return {
        "rest_50_25C": (np.full(T_S.size, 0.5), 25.0),
        "rest_90_35C": (np.full(T_S.size, 0.9), 35.0),
        "daily_20_90_25C": (daily(0.2, 0.9), 25.0),
        "daily_50_70_25C": (daily(0.5, 0.7), 25.0),
        "daily_10_95_35C": (daily(0.10, 0.95, discharge_h=(14, 16)), 35.0),
    }


def main(out: Path) -> None:
    result: dict[str, object] = {"model": "blast-lite 1.1.1 Lfp_Gr_250AhPrismatic", "step_s": STEP_S, "profiles": {}}
    profiles: dict[str, object] = {}
    for name, (soc, temp) in reference_profiles().items():
        m = Lfp_Gr_250AhPrismatic()
        m.simulate_battery_life({"Time_s": T_S, "SOC": soc, "Temperature_C": np.full(T_S.size, temp)},
                                threshold_time=10)
        days, q = m.stressors["t_days"], m.outputs["q"]
        profiles[name] = {"temperature_c": temp,
                          "q_at_year": {str(y): float(np.interp(365 * y, days, q)) for y in (1, 5, 10)},
                          "efc_10y": float(np.interp(3650, days, m.stressors["efc"]))}
    result["profiles"] = profiles
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tests/data/blast_lite_lfp_reference.json"))
