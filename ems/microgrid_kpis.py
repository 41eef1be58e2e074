"""Off-grid and weak-grid KPIs, live: the status's `microgrid` section and `/metrics`.

Read from the period result alone (the step's state carries the gensets' fuel, hours and
starts and the energy the periods served, did not serve and could not place), so every
reader sees the numbers the step computed, never its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ems.period import StepResult
from policies import genset_dispatch


def pue(it_w: float, overhead_w: float | None) -> float | None:
    """(IT + facility overhead) / IT, where the overhead is configured and the IT load known."""
    if overhead_w is None or it_w <= 0:
        return None
    return (it_w + overhead_w) / it_w


def microgrid_status(step: StepResult, racks_w: float = 0.0) -> dict[str, Any] | None:
    """`racks_w`: the racks' load now (the IT load, for PUE)."""
    mg = step.microgrid
    if mg is None:
        return None
    st = step.state.microgrid
    litres, hours, starts = genset_dispatch.fleet_totals(st.gensets)
    return {
        "mode": mg.mode.value,
        "demand_w": None if mg.demand_w is None else round(mg.demand_w, 1),
        "grid_allowance_w": round(mg.grid_allowance_w, 1),
        "battery_target_w": None if mg.battery_target_w is None else round(mg.battery_target_w, 1),
        "recharging": st.gensets.recharge,
        "gensets": {g: {"phase": mg.dispatch.phases[g].value, "power_w": round(w, 1)}
                    for g, w in mg.dispatch.output_w.items()},
        "events": [{"genset": e.genset_id, "action": e.action, "reason": e.reason.code}
                   for e in mg.dispatch.events],
        "held": list(mg.dispatch.held),
        "diesel_l": round(litres, 2), "co2_kg": round(litres * mg.co2_kg_per_l, 1),
        "genset_hours": round(hours, 3), "genset_starts": starts,
        "served_kwh": round(st.served_wh / 1000.0, 3), "unserved_kwh": round(st.unserved_wh / 1000.0, 3),
        "surplus_kwh": round(st.surplus_wh / 1000.0, 3),
        "pue": None if (v := pue(racks_w, mg.facility_overhead_w)) is None else round(v, 3),
    }


def microgrid_metrics(step: StepResult) -> Iterator[Metric]:
    mg = step.microgrid
    if mg is None:
        return
    st = step.state.microgrid
    litres, hours, starts = genset_dispatch.fleet_totals(st.gensets)
    yield CounterMetricFamily("ems_diesel_litres", "diesel burnt by the gensets", value=litres)
    yield CounterMetricFamily("ems_co2_kilograms", "CO2 of the diesel burnt", value=litres * mg.co2_kg_per_l)
    yield CounterMetricFamily("ems_genset_hours", "genset engine hours, all gensets", value=hours)
    yield CounterMetricFamily("ems_genset_starts", "genset starts, all gensets", value=float(starts))
    yield CounterMetricFamily("ems_energy_served_wh", "energy the site's sources served", value=st.served_wh)
    yield CounterMetricFamily("ems_energy_unserved_wh", "energy the site's sources could not serve",
                              value=st.unserved_wh)
    yield CounterMetricFamily("ems_energy_surplus_wh", "a surplus nowhere could take (PV curtailed)",
                              value=st.surplus_wh)
    power = GaugeMetricFamily("ems_genset_power_watts", "genset output this period", labels=["genset"])
    for g, w in mg.dispatch.output_w.items():
        power.add_metric([g], w)
    yield power
