"""`ems demo`'s site clock: it reads the plant's time of day, in the site's zone, so that the
console, the dashboard and the plant tell one time."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ems.demo import site_epoch

NOW = datetime(2026, 11, 28, 22, 53, 26, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("start_hour", "zone", "expected"), [
    (0.0, UTC, datetime(2026, 11, 28, 0, 0, tzinfo=UTC)),
    (14.0, UTC, datetime(2026, 11, 28, 14, 0, tzinfo=UTC)),
    (23.5, UTC, datetime(2026, 11, 27, 23, 30, tzinfo=UTC)),  # not yet today: yesterday's, never ahead of now
    (14.0, ZoneInfo("America/New_York"), datetime(2026, 11, 28, 14, 0, tzinfo=ZoneInfo("America/New_York"))),
    (6.0, ZoneInfo("Asia/Kolkata"), datetime(2026, 11, 28, 6, 0, tzinfo=ZoneInfo("Asia/Kolkata"))),  # 04:23 there
])
def test_site_time_zero_is_the_plants_start_hour_in_the_site_zone(start_hour, zone, expected) -> None:
    epoch = site_epoch(NOW, start_hour, zone)
    assert epoch == expected.timestamp()
    assert NOW - 86_400 < epoch <= NOW
