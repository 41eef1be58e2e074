"""The metered grid against the ramp limit: spread over the window, time over it, episodes."""

from __future__ import annotations

import pytest

from ems.ramp_watch import RampWatch

LIMIT_W, WINDOW_S, GAP_S = 100e3, 60.0, 10.0


def _feed(watch: RampWatch, readings: list[tuple[float, float]]) -> None:
    for t, w in readings:
        watch.observe(t, w, LIMIT_W, WINDOW_S, GAP_S)


def test_a_slow_ramp_within_the_limit_is_never_counted() -> None:
    w = RampWatch()
    _feed(w, [(float(t), 1e6 + 1500.0 * t) for t in range(600)])  # 90 kW a minute, for 10 minutes
    assert (w.episodes, w.exceeded_s) == (0, 0.0)
    assert w.swing_w == pytest.approx(1500.0 * 59) and w.worst_w == pytest.approx(1500.0 * 59)


def test_a_step_counts_for_as_long_as_the_window_holds_it_and_once() -> None:
    w = RampWatch()
    _feed(w, [(float(t), 1e6) for t in range(30)])
    _feed(w, [(float(t), 1.5e6) for t in range(30, 200)])  # +500 kW at t = 30 s
    assert w.episodes == 1 and w.worst_w == pytest.approx(500e3)
    # over the limit from the step (t = 30) until the window no longer holds t = 29 (t = 89)
    assert w.exceeded_s == pytest.approx(59.0)
    assert w.swing_w == 0.0
    _feed(w, [(200.0, 1.3e6), (201.0, 1.3e6)])  # a second step down: a second episode
    assert w.episodes == 2


def test_a_gap_in_the_readings_starts_the_window_again() -> None:
    w = RampWatch()
    _feed(w, [(0.0, 1e6), (1.0, 1e6)])
    _feed(w, [(30.0, 2e6), (31.0, 2e6)])  # 29 s without a reading: not a ramp anyone saw
    assert (w.episodes, w.exceeded_s, w.worst_w) == (0, 0.0, 0.0)


def test_its_status_is_json_ready() -> None:
    w = RampWatch()
    _feed(w, [(0.0, 1e6), (1.0, 1.2e6), (2.0, 1.2e6)])
    assert w.status() == {"swing_w": 200e3, "worst_w": 200e3, "exceeded_s": 2.0, "episodes": 1}
