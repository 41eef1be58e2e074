"""Metrics and dashboard history of one controller, without sockets: a Controller is built
(it connects nothing until run) and fed events and the month's readings directly."""

from __future__ import annotations

from ems.clock import ManualClock
from ems.config import parse_config
from ems.control_loop import Controller
from ems.events import Event
from ems.operator.history import MonthPeak
from ems.operator.metrics import ControllerMetrics, failover_latency_s
from tests.conftest import site_dict


def _controller() -> Controller:
    return Controller(parse_config(site_dict("mqtt://127.0.0.1:1"), "test"), ManualClock())


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

