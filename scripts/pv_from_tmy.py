"""A year of PV power from a typical meteorological year, for `ems size --pv` and `ems backtest --pv`.

    python scripts/pv_from_tmy.py --kw 1000 --out pv.csv [--tmy FILE] [--tilt 25] [--azimuth 180]

pvlib's PVWatts chain: the sun's position, the plane-of-array irradiance (Hay-Davies sky
diffuse), the SAPM cell temperature of an open-rack module, PVWatts DC (-0.37 %/°C) and the
PVWatts inverter (DC/AC 1.2, 14 % system losses as PVWatts's default). Default weather:
the TMY3 year of Greensboro, NC (station 723170) that pvlib ships, NREL's National Solar
Radiation Database. Writes 8,760 hourly values in kW AC after a header line, hour 0 at
1 January 00:00 (the layout of the shared load, ../shared/data/loads).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib

DEFAULT_TMY = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
LOSSES = 0.14  # PVWatts's default system losses (soiling, wiring, mismatch, availability...)
DC_AC = 1.2


def pv_kw(tmy: Path, kw_ac: float, tilt_deg: float, azimuth_deg: float) -> np.ndarray:
    weather, meta = pvlib.iotools.read_tmy3(str(tmy), coerce_year=2018, map_variables=True)
    loc = pvlib.location.Location(meta["latitude"], meta["longitude"], meta["TZ"], meta["altitude"])
    mid = weather.index - pd.Timedelta(minutes=30)  # TMY3 stamps end their hour: the sun at its middle
    sun = loc.get_solarposition(mid)
    sun.index = weather.index
    poa = pvlib.irradiance.get_total_irradiance(
        tilt_deg, azimuth_deg, sun["apparent_zenith"], sun["azimuth"], weather["dni"], weather["ghi"],
        weather["dhi"], dni_extra=pvlib.irradiance.get_extra_radiation(mid).to_numpy(), model="haydavies")
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_glass"]
    cell_c = pvlib.temperature.sapm_cell(poa["poa_global"], weather["temp_air"], weather["wind_speed"], **params)
    pdc0 = kw_ac * DC_AC * 1000.0
    dc = pvlib.pvsystem.pvwatts_dc(poa["poa_global"].fillna(0.0), cell_c, pdc0, -0.0037) * (1.0 - LOSSES)
    ac = pvlib.inverter.pvwatts(dc, pdc0 / DC_AC * 1.0)
    out: np.ndarray = np.clip(ac.to_numpy(dtype=np.float64), 0.0, None) / 1000.0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kw", type=float, required=True, help="AC rating of the array (kW)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tmy", type=Path, default=DEFAULT_TMY, help="a TMY3 CSV (default: Greensboro, NC)")
    ap.add_argument("--tilt", type=float, default=25.0)
    ap.add_argument("--azimuth", type=float, default=180.0, help="degrees from north (180: south)")
    args = ap.parse_args()
    kw = pv_kw(args.tmy, args.kw, args.tilt, args.azimuth)
    args.out.write_text("PV AC (kW)\n" + "\n".join(f"{v:.3f}" for v in kw) + "\n", encoding="utf-8")
    print(f"{args.out}: {kw.size} hours, {kw.sum() / 1000:.0f} MWh a year, "
          f"{kw.sum() / args.kw:.0f} kWh per kW, peak {kw.max():.0f} kW")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
