"""The trailing average the controller keeps of the battery's power (ems/time_average.py)."""

from __future__ import annotations

import pytest

from ems.time_average import TimeAverage


def test_a_step_is_averaged_over_the_window_and_then_forgotten() -> None:
    avg = TimeAverage(20.0)
    assert avg.add(0.0, 100.0) == 100.0  # one sample: itself
    assert avg.add(20.0, 100.0) == pytest.approx(100.0)
    assert avg.add(20.0, 300.0) == pytest.approx(200.0)  # a repeated instant: the newer value, a ramp from 100
    assert avg.add(30.0, 300.0) == pytest.approx(275.0)  # the ramp's second half (avg 250) for 10 s, then 300
    assert avg.add(40.0, 300.0) == pytest.approx(300.0)  # the old level has left the window


def test_uneven_samples_weigh_by_time() -> None:
    avg = TimeAverage(10.0)
    avg.add(0.0, 0.0)
    avg.add(1.0, 0.0)
    assert avg.add(10.0, 0.0) == 0.0
    assert avg.add(11.0, 10.0) == pytest.approx(0.5)  # 9 s at 0, 1 s ramping 0 -> 10 over a 10 s window
