"""The method box: what ran, in plain words for a reader who has not read the code."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ems.backtest.report.formatting import Currency, days, duration, number, percent, period
from ems.backtest.setup import Setup
from ems.tariff.model import Tariff


def method_box(s: Setup, tariff: Tariff, run: Mapping[str, Any], start: datetime, steps: int) -> str:
    policies = "peak shaving and tariff arbitrage" if s.planning_interval_s is not None else "peak shaving only"
    load = Path(str(run.get("load_csv", "the load series"))).name
    scale = float(run.get("load_scale", 1.0))
    cur = Currency.of(tariff)
    span = f"{days(steps * s.step_s / 86400)} ({period(start, steps, s.step_s)})"
    items = [
        f"<b>What ran.</b> The site's own control software, the same decision step the live controller runs "
        f"({policies}), decided the battery's power once every {duration(s.step_s)} over {span}, "
        f"against a model of the battery in place of the real one: "
        f"{s.units} unit{'s' if s.units != 1 else ''}, {number(s.capacity_kwh)} kWh usable, "
        f"{number(s.rated_power_kw)} kW, {percent(s.round_trip_efficiency, 0)} round trip. The site's load "
        f"is the series {html.escape(load)}" + (f" scaled &times; {scale:,g}" if scale != 1 else "") + ".",
    ]
    if s.planning_interval_s is not None:
        fallback = ("" if s.fixed_cap_kw is None
                    else f" Without a fresh plan the fixed import cap of {number(s.fixed_cap_kw)} kW applies.")
        items.append(f"<b>Planning.</b> Every {duration(s.planning_interval_s)} a planner made a "
                     f"{number(s.horizon_h or 0, 0)}-hour plan from the load seen so far and a forecast of the rest; "
                     f"it never sees the future.{fallback}")
    elif s.fixed_cap_kw is not None:
        items.append(f"<b>Control.</b> The battery holds grid import at or under a fixed cap of "
                     f"{number(s.fixed_cap_kw)} kW while it has energy, and recharges when import is low.")
    items.append(f"<b>Battery limits.</b> State of charge between {percent(s.soc_min, 0)} and "
                 f"{percent(s.soc_max, 0)}, never discharged below the reserve floor of "
                 f"{percent(s.reserve_soc, 0)} (kept for outages and not spent for money).")
    name = f" ({html.escape(tariff.name)})" if tariff.name else ""
    items.append(f"<b>Bills.</b> Both bills, with the battery (on the grid import) and without it (on the load), "
                 f"come from the tariff{name} and the same bill engine, which matches NREL SAM to the cent. Demand "
                 f"charges are on the {duration(tariff.demand_interval_s)} average.")
    if s.foresight_step_s is not None:
        items.append(f"<b>Perfect foresight.</b> The most any dispatch of this battery could save knowing each "
                     f"load in advance: one optimisation over the whole run at {duration(s.foresight_step_s)}, "
                     f"with the same limits, each month billed as the bill engine bills it and the charge "
                     f"carried freely from month to month. No real controller reaches it; the share captured "
                     f"says how close this one came.")
    money = f"in {cur.code}, the tariff's currency" if cur.code else "in the tariff's units (it names no currency)"
    depth = ""
    if s.wear_depth_cost_per_kwh:
        depth = (f", plus by the depth it is drawn from ({len(s.wear_depth_cost_per_kwh)} equal parts of the SoC "
                 f"window, from the top down: {', '.join(number(c, 3) for c in s.wear_depth_cost_per_kwh)}),")
    items.append(f"<b>Money</b> is {money}. Battery wear is priced at {number(s.wear_cost_per_kwh, 3)} "
                 f"{cur.per('kWh')} discharged{depth} in the plan only, not in the bills.")
    items.append("<b>Details:</b> docs/backtest.md in the ems repository.")
    return ("<aside class=method><h2>Method and assumptions</h2><ul>" +
            "".join(f"<li>{i}</li>" for i in items) + "</ul></aside>")
