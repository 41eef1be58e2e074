"""Dynamic price CSV loading."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from ems.tariff import TariffFormatError, load_price_csv


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_regular_csv_loads_with_unit_conversion(tmp_path: Path) -> None:
    csv_path = _write(
        tmp_path / "p.csv",
        "timestamp,lmp,export\n2024-03-01T00:00,42.0,10.0\n2024-03-01T01:00,-5.5,0\n",
    )
    series = load_price_csv(
        csv_path, buy_column="lmp", sell_column="export", unit="per_mwh", mode="add"
    )
    assert series.start == datetime(2024, 3, 1)
    assert series.step_s == 3600
    assert series.buy_per_kwh == pytest.approx((0.042, -0.0055))
    assert series.sell_per_kwh == pytest.approx((0.010, 0.0))
    assert series.mode == "add"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,price_per_kwh\n", "no price rows"),
        ("timestamp,price_per_kwh\n2024-01-01T00:00,0.1\n", "two rows"),
        ("time,price_per_kwh\n2024-01-01T00:00,0.1\n2024-01-01T01:00,0.1\n", "timestamp"),
        (
            "timestamp,price_per_kwh\n2024-01-01T00:00,0.1\n2024-01-01T01:00,0.1\n"
            "2024-01-01T03:00,0.1\n",
            "constant step",
        ),
        ("timestamp,price_per_kwh\n2024-01-01T00:00,abc\n2024-01-01T01:00,0.1\n", ":2:"),
        (
            "timestamp,price_per_kwh\n2024-01-01T00:00+01:00,0.1\n2024-01-01T01:00+01:00,0.1\n",
            "naive",
        ),
    ],
)
def test_bad_csv_is_a_format_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TariffFormatError, match=message):
        load_price_csv(_write(tmp_path / "p.csv", text))
