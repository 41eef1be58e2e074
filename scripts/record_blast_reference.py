"""Record BLAST-Lite 1.1.1's LFP-Gr 250 Ah model on a few year-long SoC profiles (15 min)."""
import json, numpy as np, blast
from blast.models import Lfp_Gr_250AhPrismatic
step = 900
n = 365 * 96
t = np.arange(n + 1) * float(step)
h = (t / 3600.0) % 24
def daily(lo, hi, ch=(0, 4), dis=(16, 19)):
    soc = np.full(t.size, lo)
    for i, x in enumerate(h):
        if ch[0] <= x < ch[1]: soc[i] = lo + (hi - lo) * (x - ch[0]) / (ch[1] - ch[0])
        elif ch[1] <= x < dis[0]: soc[i] = hi
        elif dis[0] <= x < dis[1]: soc[i] = hi - (hi - lo) * (x - dis[0]) / (dis[1] - dis[0])
    return soc
profiles = {
    "rest_50_25C": (np.full(t.size, 0.5), 25.0),
    "rest_90_35C": (np.full(t.size, 0.9), 35.0),
    "daily_20_90_25C": (daily(0.2, 0.9), 25.0),
    "daily_50_70_25C": (daily(0.5, 0.7), 25.0),
    "daily_10_95_35C": (daily(0.10, 0.95, dis=(14, 16)), 35.0),
}
out = {"model": "blast-lite 1.1.1 Lfp_Gr_250AhPrismatic", "step_s": step, "profiles": {}}
for name, (soc, temp) in profiles.items():
    m = Lfp_Gr_250AhPrismatic()
    m.simulate_battery_life({"Time_s": t, "SOC": soc, "Temperature_C": np.full(t.size, temp)}, threshold_time=10)
    days = m.stressors["t_days"]; q = m.outputs["q"]
    rec = {str(y): float(np.interp(365 * y, days, q)) for y in (1, 5, 10)}
    out["profiles"][name] = {"temperature_c": temp, "q_at_year": rec, "efc_10y": float(np.interp(3650, days, m.stressors["efc"]))}
    print(name, rec, flush=True)
json.dump(out, open("/tmp/blast_ref.json", "w"), indent=1)
