"""Metrics and dashboard history of one controller, without sockets: a Controller is built
(it connects nothing until run) and fed events and the month's readings directly."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ems.clock import ManualClock
from ems.config import parse_config
from ems.control_loop import Controller
from ems.events import Event
from ems.operator.history import MonthPeak
from ems.operator.metrics import ControllerMetrics, failover_latency_s, ven_metrics
from tests.conftest import site_dict


def _controller() -> Controller:
    return Controller(parse_config(site_dict("mqtt://127.0.0.1:1"), "test"), ManualClock())


class _Status(Collector):
    def __init__(self, status: Mapping[str, object]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        return ven_metrics(self.status)


def _sample(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
                or line.startswith(name + "{"))


def test_failover_latency_comes_from_the_events_last_ack() -> None:
    ev = Event(1, 0.0, "failover", "FAILOVER_SHED", {"last_ack_ms": 12.5, "timeline": []})
    assert failover_latency_s(ev) == 0.0125
    assert failover_latency_s(Event(2, 0.0, "failover", "NO_PLAN", {"cause": "voltage"})) is None
    assert failover_latency_s(Event(3, 0.0, "failover", None, {"last_ack_ms": True})) is None


def test_failover_events_fill_the_latency_histogram_of_that_controller_only() -> None:
    ctl, other = _controller(), _controller()
    m, m_other = ControllerMetrics(ctl.published), ControllerMetrics(other.published)
    ctl.events.subscribe(m.on_event)
    for ms in (4.0, 9.0, 30.0):
        ctl.events.record("failover", 0.0, "FAILOVER_ARMED", last_ack_ms=ms)
    text = m.render().decode()
    assert _sample(text, "ems_failover_latency_seconds_count") == 3.0
    assert _sample(text, 'ems_failover_latency_seconds_bucket{le="0.01"}') == 2.0
    assert _sample(text, "ems_failover_latency_seconds_sum") == 0.043
    assert 'ems_events_total{kind="failover"} 3.0' in text
    assert _sample(m_other.render().decode(), "ems_failover_latency_seconds_count") == 0.0


def test_no_reading_no_sample() -> None:
    # before the first period the controller has no meter reading: the gauge is absent, not 0
    text = ControllerMetrics(_controller().published).render().decode()
    assert "ems_grid_power_watts" not in text and "ems_unit_soc_ratio{" not in text
    assert _sample(text, "ems_periods_total") == 0.0


def test_month_peak_restarts_with_the_month() -> None:
    p = MonthPeak()
    p.observe(1_767_225_600.0 - 60, 2e6)  # 2025-12-31 23:59 UTC
    p.observe(1_767_225_600.0 + 60, 1e6)  # 2026-01-01 00:01 UTC
    assert (p.month, p.peak_w) == ("2026-01", 1e6)
    p.observe(1_767_225_600.0 + 120, None)  # no reading: no change, never a 0
    p.observe(1_767_225_600.0 + 180, 1.5e6)
    assert p.peak_w == 1.5e6 and p.peak_at_wall_s == 1_767_225_600.0 + 180



def test_the_vens_health_is_in_the_metrics_by_kind_and_absent_without_a_ven() -> None:
    def render(status: Mapping[str, object]) -> str:
        registry = CollectorRegistry()
        registry.register(_Status(status))
        return generate_latest(registry).decode()

    v3 = {"dr": {"ven": {"protocol": "OpenADR 3.0.1", "vtn": "https://vtn.example/openadr3", "polls": 7,
                         "failures": {"poll:TimeoutError": 2, "report:VtnAnswer": 1},
                         "refused": {"Unsupported": 3}, "reports": 5, "targeted_elsewhere": 2,
                         "programs_targeted_elsewhere": ["south-flex"], "polls_failing": 3, "registered": True,
                         "ven_id": "v-7"}}}
    text = render(v3)
    assert 'ems_dr_ven_info{protocol="OpenADR 3.0.1",vtn="https://vtn.example/openadr3"} 1.0' in text
    assert 'ems_dr_ven_failures_total{kind="poll:TimeoutError"} 2.0' in text
    assert 'ems_dr_ven_failures_total{kind="report:VtnAnswer"} 1.0' in text
    assert 'ems_dr_ven_events_refused_total{kind="Unsupported"} 3.0' in text
    assert "ems_dr_ven_polls_total 7.0" in text and "ems_dr_ven_reports_total 5.0" in text
    assert "ems_dr_ven_events_targeted_elsewhere 2.0" in text
    assert "ems_dr_ven_programs_targeted_elsewhere 1.0" in text
    assert "ems_dr_ven_polls_failing 3.0" in text
    assert "ems_dr_ven_registered 1.0" in text and "opted_in" not in text
    v2 = {"dr": {"ven": {"protocol": "OpenADR 2.0b", "vtn": "http://127.0.0.1:8080/OpenADR2/Simple/2.0b",
                         "registered": False, "opted_in": 4, "opted_out": 1, "malformed": 2}}}
    text = render(v2)
    assert "ems_dr_ven_registered 0.0" in text and 'ems_dr_ven_events_refused_total{kind="Malformed"} 2.0' in text
    assert "ems_dr_ven_opted_in_total 4.0" in text and "ems_dr_ven_opted_out_total 1.0" in text
    assert "ems_dr_ven_polls" not in text
    # no VEN, or a status without the dr part: nothing, not zeros
    assert render({"dr": {"events": []}}) == render({}) == ""
    # a count that is not a count (a bool, a string) is left out, not exported
    text = render({"dr": {"ven": {"protocol": "x", "vtn": "y", "polls": True, "failures": {"a": "3"}}}})
    assert "ems_dr_ven_polls" not in text and 'kind="a"' not in text
    # the controller's scrape includes it: none here (no VEN configured)
    assert "ems_dr_ven" not in ControllerMetrics(_controller().published).render().decode()


def test_an_ha_pairs_state_is_labelled_by_site_and_absent_without_ha() -> None:
    from ems.operator.metrics import ha_metrics

    registry = CollectorRegistry()

    class _Ha(Collector):
        def collect(self) -> Iterator[Metric]:
            return ha_metrics("dc-1", {"ha": {"role": "standby", "writing": False, "nats": True, "failsafe": False}})

    registry.register(_Ha())
    text = generate_latest(registry).decode()
    assert 'ems_ha_writing{site="dc-1"} 0.0' in text and 'ems_ha_nats_connected{site="dc-1"} 1.0' in text
    assert 'ems_ha_failsafe{site="dc-1"} 0.0' in text
    assert list(ha_metrics("dc-1", {})) == [] and list(ha_metrics("dc-1", {"ha": None})) == []


def test_a_3_0_vens_refused_kinds_are_exported_at_zero_before_the_first_refusal() -> None:
    """`increase()` over a series that appears at 1 reads 0: a first refused event would never
    fire EmsVenEventsRefused (an event is counted once, so the series stays at 1)."""
    from ems.config import OpenAdr3Config
    from ems.dr_book import DrBook
    from ems.openadr3_ven import OpenAdr3Ven

    cfg = OpenAdr3Config.model_validate({
        "vtn_url": "http://127.0.0.1:1/openadr3", "token_url": "http://127.0.0.1:1/auth/token", "client_id": "c",
        "client_secret_env": "EMS_TEST_OADR3_SECRET", "programs": ["p"], "ven_name": "site-7"})
    ven = OpenAdr3Ven(cfg, "s", DrBook(), lambda: 0.0, lambda: None, lambda: None)
    registry = CollectorRegistry()
    registry.register(_Status({"dr": {"ven": ven.status()}}))
    text = generate_latest(registry).decode()
    for kind in ("Unsupported", "Malformed", "DrBookFull", "TooManyEvents"):
        assert f'ems_dr_ven_events_refused_total{{kind="{kind}"}} 0.0' in text
    ven.refused["Malformed"] += 1
    registry = CollectorRegistry()
    registry.register(_Status({"dr": {"ven": ven.status()}}))
    text = generate_latest(registry).decode()
    assert 'ems_dr_ven_events_refused_total{kind="Malformed"} 1.0' in text
    assert 'ems_dr_ven_events_refused_total{kind="Unsupported"} 0.0' in text
