"""Cross-check of the bill engine against NREL SAM (PySAM Utilityrate5) on public data.

Both engines bill the same series under the same URDB rate; SAM's numbers are computed
here, never stored. Each case is built from the shared tariff and hourly load so that a
specific part of the arithmetic is exercised (tiers, demand tiers, export, minimums).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PySAM")
import PySAM.Utilityrate5 as utilityrate5
import PySAM.UtilityRateTools as rate_tools

from ems.tariff import Bill, compute_bill, load_urdb

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TARIFF_FILE = DATA / "tariffs" / "sam_urdbv7.json"
LOAD_FILE = DATA / "loads" / "sam_sample_load_8760h.csv"

if not (TARIFF_FILE.is_file() and LOAD_FILE.is_file()):
    pytest.skip(f"shared reference data not found under {DATA}", allow_module_level=True)

# 2018 is a non-leap year starting on a Monday: SAM's calendar for hour 0.
YEAR_START = datetime(2018, 1, 1)
CENT = 0.005

# (our MonthlyBill attribute, SAM output matrix)
COMPONENTS = [
    ("energy", "charge_w_sys_ec_ym"),
    ("demand_tou", "charge_w_sys_dc_tou_ym"),
    ("demand_flat", "charge_w_sys_dc_fixed_ym"),
    ("fixed", "charge_w_sys_fixed_ym"),
    ("minimum", "charge_w_sys_minimum_ym"),
    ("total", "utility_bill_w_sys_ym"),
]


def _urdb() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TARIFF_FILE.read_text())
    return data


def _load_kw() -> np.ndarray:
    return np.loadtxt(LOAD_FILE, skiprows=1, dtype=np.float64)


def _solar_kw(peak_kw: float, steps_per_hour: int = 1) -> np.ndarray:
    """A clear-sky-like day shape (06:00-18:00) repeated over the year."""
    hour = np.arange(8760 * steps_per_hour) / steps_per_hour % 24
    return np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None) * peak_kw


def _sam_bill(urdb: dict[str, Any], load_kw: np.ndarray, gen_kw: np.ndarray) -> dict[str, Any]:
    model = utilityrate5.new()
    # URDBv8_to_ElectricityRates edits schedules in place (+1): give it a copy.
    model.ElectricityRates.assign(rate_tools.URDBv8_to_ElectricityRates(copy.deepcopy(urdb)))
    # The converter only reads the v8 names (fixedchargefirstmeter, mincharge); this file
    # uses the v7 names, so they are passed to SAM directly.
    model.ElectricityRates.ur_monthly_fixed_charge = urdb.get("fixedmonthlycharge", 0.0)
    model.ElectricityRates.ur_monthly_min_charge = urdb.get("minmonthlycharge", 0.0)
    model.ElectricityRates.ur_annual_min_charge = urdb.get("annualmincharge", 0.0)
    model.ElectricityRates.ur_en_ts_sell_rate = 0
    model.ElectricityRates.ur_en_ts_buy_rate = 0
    model.Load.load = load_kw.tolist()
    model.SystemOutput.gen = gen_kw.tolist()
    model.SystemOutput.degradation = [0]
    model.Lifetime.analysis_period = 1
    model.Lifetime.system_use_lifetime_output = 0
    model.Lifetime.inflation_rate = 0
    model.execute(0)
    # Row 0 of each *_ym matrix is year 0 (empty); row 1 is the billed year.
    out = {name: np.asarray(getattr(model.Outputs, name))[1] for _, name in COMPONENTS}
    out["ur_metering_option"] = model.ElectricityRates.ur_metering_option
    return out


def _our_bill(urdb: dict[str, Any], load_kw: np.ndarray, gen_kw: np.ndarray) -> Bill:
    step_s = 3600 * 8760 // load_kw.size
    return compute_bill(load_urdb(urdb), load_kw - gen_kw, start=YEAR_START, step_s=step_s)


def _base() -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    load = _load_kw()
    return _urdb(), load, np.zeros_like(load)


def _scaled_1000() -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    # Peaks of ~4 MW: the 100 kW demand tier break binds in every month.
    urdb, load, gen = _base()
    return urdb, load * 1000.0, gen


def _solar_net_metering() -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    # Midday export; spring months end with net surplus that rolls over as kWh.
    urdb, load, _ = _base()
    return urdb, load, _solar_kw(6.0)


def _evening_export_net_metering() -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    # Export in the 15:00-20:00 peak period: exercises SAM's time-of-day rollover mapping.
    urdb, load, _ = _base()
    hour = np.arange(8760) % 24
    return urdb, load, np.where((hour >= 15) & (hour < 20), 6.0, 0.0)


def _raised_minimums() -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    # Minimums above some monthly bills and above the annual bill, with export on top.
    urdb, load, _ = _base()
    urdb["minmonthlycharge"] = 150.0
    urdb["annualmincharge"] = 3000.0
    return urdb, load, _solar_kw(6.0)


def _net_billing_15min() -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    # Net billing with sell rates, at 15-minute resolution with a varying load.
    urdb, load, _ = _base()
    urdb["dgrules"] = "Net Billing Instantaneous"
    for period in urdb["energyratestructure"]:
        for tier in period:
            tier["sell"] = round(tier["rate"] * 0.5, 4)
    load_15 = np.repeat(load, 4) * (1.0 + 0.3 * np.sin(np.arange(8760 * 4)))
    return urdb, load_15, _solar_kw(6.0, steps_per_hour=4)


def _net_billing_scaled() -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    urdb, load, gen = _net_billing_15min()
    return urdb, load * 1000.0, gen * 1000.0


CASES: dict[str, Callable[[], tuple[dict[str, Any], np.ndarray, np.ndarray]]] = {
    "base": _base,
    "load_x1000": _scaled_1000,
    "solar_net_metering": _solar_net_metering,
    "evening_export_net_metering": _evening_export_net_metering,
    "raised_minimums": _raised_minimums,
    "net_billing_15min": _net_billing_15min,
    "net_billing_15min_x1000": _net_billing_scaled,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_monthly_components_match_sam_to_the_cent(case: str) -> None:
    urdb, load, gen = CASES[case]()
    sam = _sam_bill(urdb, load, gen)
    ours = _our_bill(urdb, load, gen)
    assert len(ours.months) == 12
    for attr, sam_name in COMPONENTS:
        mine = np.array([getattr(m, attr) for m in ours.months])
        np.testing.assert_allclose(mine, sam[sam_name], rtol=0, atol=CENT, err_msg=attr)
    assert abs(ours.total - float(np.sum(sam["utility_bill_w_sys_ym"]))) < CENT


def test_cases_exercise_what_they_claim() -> None:
    """Guard the inputs: tiers, export and minimums are really in play."""
    urdb, load, _ = _base()
    kwh_tier = urdb["energyratestructure"][0][0]["max"]
    kw_tier = urdb["demandratestructure"][0][0]["max"]
    assert load.sum() / 12 > kwh_tier  # monthly kWh tier break is crossed
    assert load.max() < kw_tier < 1000.0 * load.min()  # scaled case crosses the kW break
    for name in ("solar_net_metering", "evening_export_net_metering", "net_billing_15min"):
        _, case_load, case_gen = CASES[name]()
        assert np.any(case_gen > case_load), name
    urdb_min, load, gen = _raised_minimums()
    sam = _sam_bill(urdb_min, load, gen)
    assert np.any(sam["charge_w_sys_minimum_ym"] > 0)
    assert _sam_bill(*_net_billing_15min())["ur_metering_option"] == 2
