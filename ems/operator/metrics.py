"""Prometheus metrics of one controller, in a registry of its own (tests run several).

Everything here lives on the operator server's thread and reads only what the controller
published (ems/published.py). Gauges come from the latest period result and operator
state when scraped; what must see every period (duration and lateness histograms, policy
decisions) is observed from each result as the server takes it in, and failover latency
from the event log. A value the controller does not have fresh (stale meter, unit
without a reading) is left out of the scrape, never exported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ems.events import Event
from ems.microgrid_kpis import microgrid_metrics
from ems.openadr3_ven import PROTOCOL as OPENADR3
from ems.openadr3_ven import REFUSED_KINDS

if TYPE_CHECKING:
    from ems.published import PeriodResult, Published

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PERIOD_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
FAILOVER_BUCKETS_S = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0)


def failover_latency_s(event: Event) -> float | None:
    """Grid loss detected -> last device acknowledged, from a `failover` event's data."""
    d = event.data
    for key, scale in (("last_ack_ms", 1e-3), ("latency_ms", 1e-3), ("latency_s", 1.0)):
        v = d.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v) * scale
    return None


def ven_metrics(status: Mapping[str, Any]) -> Iterator[Metric]:
    """The demand-response VEN's health (the site status's `dr.ven`, either protocol); nothing
    without a VEN. Events the site refused and polls or reports that failed are counted by
    kind: an alert on them is how an operator learns that the VTN and the site disagree."""
    dr = status.get("dr")
    ven = dr.get("ven") if isinstance(dr, Mapping) else None
    if not isinstance(ven, Mapping):
        return
    info = GaugeMetricFamily("ems_dr_ven_info", "the demand-response VEN", labels=["protocol", "vtn"])
    info.add_metric([str(ven.get("protocol", "")), str(ven.get("vtn", ""))], 1.0)
    yield info
    if _count(failing := ven.get("polls_failing")):  # 3.0
        yield GaugeMetricFamily("ems_dr_ven_polls_failing", "polls failed in a row (0: the last one completed)",
                                value=failing)
    if _count(elsewhere := ven.get("targeted_elsewhere")):  # 3.0
        yield GaugeMetricFamily("ems_dr_ven_events_targeted_elsewhere",
                                "events of the last poll targeted at other sites (not acted on)", value=elsewhere)
    if isinstance(programs := ven.get("programs_targeted_elsewhere"), list):  # 3.0
        yield GaugeMetricFamily("ems_dr_ven_programs_targeted_elsewhere",
                                "followed programs whose targets name only other sites (events not read)",
                                value=len(programs))
    if isinstance(registered := ven.get("registered"), bool):  # 2.0b
        yield GaugeMetricFamily("ems_dr_ven_registered", "1 while the VEN is registered with its VTN",
                                value=1.0 if registered else 0.0)
    refused = CounterMetricFamily("ems_dr_ven_events_refused", "events from the VTN the site refused, by kind",
                                  labels=["kind"])
    counts = _counts(ven, "refused")
    if ven.get("protocol") == OPENADR3:  # its kinds from 0 (see REFUSED_KINDS)
        counts = {**dict.fromkeys(REFUSED_KINDS, 0), **counts}
    for kind, n in sorted(counts.items()):
        refused.add_metric([kind], n)
    if _count(malformed := ven.get("malformed")):  # 2.0b counts one kind
        refused.add_metric(["Malformed"], malformed)
    yield refused
    failures = CounterMetricFamily("ems_dr_ven_failures", "failed polls and reports, by kind", labels=["kind"])
    for kind, n in sorted(_counts(ven, "failures").items()):
        failures.add_metric([kind], n)
    yield failures
    for key, name, doc in (("polls", "ems_dr_ven_polls", "complete polls of the VTN"),
                           ("reports", "ems_dr_ven_reports", "reports the VTN accepted"),
                           ("opted_in", "ems_dr_ven_opted_in", "events the VEN opted in to"),
                           ("opted_out", "ems_dr_ven_opted_out", "events the VEN opted out of")):
        if _count(count := ven.get(key)):
            yield CounterMetricFamily(name, doc, value=count)


def grid_limit_metrics(status: Mapping[str, Any]) -> Iterator[Metric]:
    """The utility's ramp and oscillation limits against what the meter measured (the site
    status's `smoothing`); nothing on a site without either."""
    sm = status.get("smoothing")
    if not isinstance(sm, Mapping):
        return
    ramp = sm.get("ramp")
    if isinstance(ramp, Mapping) and isinstance(measured := ramp.get("measured"), Mapping):
        yield GaugeMetricFamily("ems_grid_ramp_limit_watts", "the grid's ramp limit over its window",
                                value=ramp["limit_w"])
        yield GaugeMetricFamily("ems_grid_ramp_swing_watts", "the metered grid's spread over the ramp window now",
                                value=measured["swing_w"])
        yield CounterMetricFamily("ems_grid_ramp_exceeded_seconds", "time the metered grid's spread was over "
                                  "the ramp limit", value=measured["exceeded_s"])
        yield CounterMetricFamily("ems_grid_ramp_episodes", "stretches of the metered grid over the ramp limit",
                                  value=measured["episodes"])
    for key, name, doc in (("grid_band_rms_w", "ems_grid_band_rms_watts", "the grid's oscillation in the band (RMS)"),
                           ("load_band_rms_w", "ems_load_band_rms_watts", "the load's oscillation in the band (RMS)"),
                           ("oscillation_limit_w_rms", "ems_grid_oscillation_limit_watts",
                            "the grid's oscillation limit (RMS)")):
        if _count(v := sm.get(key)) or (isinstance(v, float) and math.isfinite(v)):
            yield GaugeMetricFamily(name, doc, value=v)


def ha_metrics(site: str, status: Mapping[str, Any]) -> Iterator[Metric]:
    """An active/standby pair's state (the site status's `ha`); nothing without HA. Labelled by
    site, so that `sum by (site)` over both controllers says whether exactly one writes."""
    ha = status.get("ha")
    if not isinstance(ha, Mapping):
        return
    for key, name, doc in (("writing", "ems_ha_writing", "1 while this controller writes to the devices"),
                           ("nats", "ems_ha_nats_connected", "1 while NATS (the lease) answers"),
                           ("failsafe", "ems_ha_failsafe", "1 while writing on the peer's word, NATS down")):
        if isinstance(v := ha.get(key), bool):
            g = GaugeMetricFamily(name, doc, labels=["site"])
            g.add_metric([site], 1.0 if v else 0.0)
            yield g


def _count(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _counts(ven: Mapping[str, Any], key: str) -> dict[str, int]:
    v = ven.get(key)
    return {str(k): n for k, n in v.items() if _count(n)} if isinstance(v, Mapping) else {}


class _Live(Collector):
    """Scrape-time gauges and counters read from what the controller published."""

    def __init__(self, published: Published) -> None:
        self.published = published

    def collect(self) -> Iterator[Metric]:
        pub = self.published
        now = pub.clock.monotonic()
        r, c = pub.result, pub.operator
        if r is not None:
            s = r.snapshot
            site = [("ems_battery_setpoint_watts", "site battery setpoint written (> 0 discharge)", r.setpoint_w),
                    ("ems_battery_power_watts", "measured battery AC power of units with a fresh PCS reading",
                     s.battery_power_w),
                    ("ems_rack_load_watts", "rack power reported by racks with fresh telemetry",
                     s.racks.reported_power_w),
                    ("ems_rack_load_estimate_watts", "rack load with stale racks at their cap or nameplate",
                     s.racks.load_estimate_w),
                    ("ems_racks_stale", "racks without fresh telemetry", float(s.racks.stale_count))]
            if s.meter is not None:
                site.append(("ems_grid_power_watts", "grid power at the meter (> 0 import)", s.meter.grid_power_w))
            if s.site_load_w is not None:
                site.append(("ems_site_load_watts", "grid + battery: import without the battery", s.site_load_w))
            if r.step.cap_w is not None:
                site.append(("ems_grid_import_cap_watts", "import cap in force", r.step.cap_w))
            for name, doc, value in site:
                yield GaugeMetricFamily(name, doc, value=value)
            soc = GaugeMetricFamily("ems_unit_soc_ratio", "state of charge, 0..1", labels=["unit"])
            power = GaugeMetricFamily("ems_unit_power_watts", "unit AC power (> 0 discharge)", labels=["unit"])
            setp = GaugeMetricFamily("ems_unit_setpoint_watts", "unit setpoint this period", labels=["unit"])
            avail = GaugeMetricFamily("ems_unit_available", "1 if the unit can take a setpoint", labels=["unit"])
            for u in s.units:
                if u.bms is not None:
                    soc.add_metric([u.unit_id], u.bms.soc)
                if u.pcs is not None:
                    power.add_metric([u.unit_id], u.pcs.power_w)
                setp.add_metric([u.unit_id], r.step.unit_setpoints_w.get(u.unit_id, 0.0))
                avail.add_metric([u.unit_id], 1.0 if u.available else 0.0)
            yield from (soc, power, setp, avail)
            yield GaugeMetricFamily("ems_period_duration_last_seconds", "duration of the last period",
                                    value=r.duration_s)
            yield from microgrid_metrics(r.step)
            yield from ven_metrics(r.status)
            yield from ha_metrics(pub.site, r.status)
            yield from grid_limit_metrics(r.status)
        age = GaugeMetricFamily("ems_telemetry_age_seconds", "site seconds since the last good reading",
                                labels=["source"])
        if r is not None:
            for source, read_at_s in r.read_at_s.items():
                age.add_metric([source], now - read_at_s)
            ages = [a for a in r.snapshot.racks.age_s.tolist() if math.isfinite(a)]
            if ages:
                age.add_metric(["racks_oldest"], max(ages) + (now - r.snapshot.now_s))
        yield age
        errors = CounterMetricFamily("ems_driver_errors", "failed device reads and writes", labels=["device"])
        for device, n in sorted(({} if r is None else r.driver_errors).items()):
            errors.add_metric([device], n)
        yield errors
        yield GaugeMetricFamily("ems_devices_down", "devices currently lost",
                                value=0 if r is None else len(r.devices_down))
        yield CounterMetricFamily("ems_periods", "control periods run", value=0 if r is None else r.period)
        yield CounterMetricFamily("ems_period_overruns", "periods that ran past their slot",
                                  value=0 if r is None else r.overruns)
        yield CounterMetricFamily("ems_pcs_write_failures", "failed PCS writes",
                                  value=0 if r is None else r.write_failures)
        yield GaugeMetricFamily("ems_operator_force_active", "1 while an operator's forced mode is in force",
                                value=1.0 if c.force_active else 0.0)
        maint = GaugeMetricFamily("ems_unit_in_maintenance", "1 while an operator has the unit in maintenance",
                                  labels=["unit"])
        for unit_id in sorted(c.unit_ids):
            maint.add_metric([unit_id], 1.0 if unit_id in c.maintenance else 0.0)
        yield maint
        yield GaugeMetricFamily("ems_operator_overrides", "policy parameters overridden at run time",
                                value=len(c.params))


class ControllerMetrics:
    """Registry, collectors and the hooks that feed them; `render()` is the /metrics body."""

    def __init__(self, published: Published) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Live(published))
        self.duration = Histogram("ems_period_duration_seconds", "control period: gather to write",
                                  buckets=PERIOD_BUCKETS_S, registry=self.registry)
        self.lateness = Histogram("ems_period_lateness_seconds", "how late a period started",
                                  buckets=PERIOD_BUCKETS_S, registry=self.registry)
        self.decisions = Counter("ems_policy_decisions", "periods in which a policy returned a reason",
                                 ["policy", "reason"], registry=self.registry)
        self.setpoint_reason = Counter("ems_setpoint_reason", "periods by the reason of the site setpoint",
                                       ["reason", "decided_by"], registry=self.registry)
        self.failover = Histogram("ems_failover_latency_seconds", "grid loss detected -> last device acknowledged",
                                  buckets=FAILOVER_BUCKETS_S, registry=self.registry)
        self.events = Counter("ems_events", "events recorded, by kind", ["kind"], registry=self.registry)
        self.actions = Counter("ems_operator_actions", "operator actions and timed reverts", ["kind", "action"],
                               registry=self.registry)
        self.limited = Counter("ems_http_requests_limited", "operator server requests refused with 429",
                               ["kind", "scope"], registry=self.registry)

    def on_period(self, r: PeriodResult) -> None:
        self.duration.observe(r.duration_s)
        self.lateness.observe(r.lateness_s)
        for d in r.step.decisions:
            self.decisions.labels(d.policy, d.reason.code).inc()
        self.setpoint_reason.labels(r.step.reason.code, r.step.decided_by).inc()

    def on_event(self, event: Event) -> None:
        self.events.labels(event.kind).inc()
        if event.kind == "failover" and (latency := failover_latency_s(event)) is not None:
            self.failover.observe(latency)
        elif event.kind in ("operator_action", "operator_revert"):
            action: Any = event.data.get("action", "unknown")
            self.actions.labels(event.kind, str(action)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
