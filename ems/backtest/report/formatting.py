"""Numbers, money, power and dates as the report writes them: thousands separators, no
scientific notation, a real minus sign, the currency named, months as "Jan 2018"."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from ems.tariff.model import Tariff

MINUS = "\u2212"
# the bill's components (`results.COMPONENTS`) as a reader knows them
COMPONENT_LABELS = {
    "energy": "Energy charge",
    "demand_tou": "TOU demand charge",
    "demand_flat": "Flat demand charge",
    "fixed": "Fixed charge",
    "minimum": "Minimum charge",
}


def number(x: float | None, digits: int = 0) -> str:
    """1,234.5 with a minus sign; '–' for a missing value."""
    if x is None or math.isnan(x):
        return "\u2013"
    text = f"{abs(x):,.{digits}f}"
    return MINUS + text if x < 0 and text.strip("0.,") else text


def percent(fraction: float | None, digits: int = 1) -> str:
    return "\u2013" if fraction is None or math.isnan(fraction) else f"{number(100 * fraction, digits)} %"


@dataclass(frozen=True)
class Currency:
    """The tariff's currency: an ISO code, or "currency units" where the tariff does not say."""

    code: str

    @classmethod
    def of(cls, tariff: Tariff) -> Currency:
        return cls(tariff.currency)

    @property
    def unit(self) -> str:
        return self.code or "currency units"

    def money(self, x: float | None, digits: int = 0) -> str:
        if x is None or math.isnan(x):
            return "\u2013"
        return f"{self.code} {number(x, digits)}" if self.code else f"{number(x, digits)} currency units"

    def per(self, what: str) -> str:
        """'USD/kWh'; 'currency units per kWh' without a code."""
        return f"{self.code}/{what}" if self.code else f"currency units per {what}"


@dataclass(frozen=True)
class PowerUnit:
    """kW up to 10 MW, MW above: ticks stay short and whole."""

    name: str
    per_kw: float

    @classmethod
    def for_peak(cls, peak_kw: float) -> PowerUnit:
        return cls("MW", 1e-3) if peak_kw >= 10_000 else cls("kW", 1.0)


def month_label(month: str) -> str:
    """'2018-01' -> 'Jan 2018'."""
    return datetime.strptime(month, "%Y-%m").strftime("%b %Y")


def day(t: datetime) -> str:
    return f"{t.day} {t:%b %Y}"


def period(start: datetime, steps: int, step_s: int) -> str:
    """The days a run covers, the last one included: '2 Jul – 29 Jul 2018', '1 Dec 2018 – 31 Jan 2019'."""
    last = start + timedelta(seconds=step_s * (steps - 1))
    if (start.year, start.month, start.day) == (last.year, last.month, last.day):
        return day(start)
    first = f"{start.day} {start:%b}" if start.year == last.year else day(start)
    return f"{first} \u2013 {day(last)}"


def days(n: float) -> str:
    """'28 days', '1 day', '13.5 days'."""
    text = number(n, 0 if abs(n - round(n)) < 0.05 else 1)
    return f"{text} day" if text == "1" else f"{text} days"


def duration(seconds: float) -> str:
    """'15 min', '1 h', '30 s'."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
