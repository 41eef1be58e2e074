"""Import an OpenEI Utility Rate Database (URDB) rate, JSON API v3/v7/v8, into a `Tariff`.

Only features the bill engine models are mapped; any other rate feature present in the
file raises `UnsupportedTariffFeature` naming it, so a bill is never silently incomplete.
Descriptive fields (name, utility, dates, comments, ...) are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ems.tariff.model import (
    DemandLookback,
    DemandPeriod,
    DemandTier,
    EnergyPeriod,
    EnergyTier,
    Tariff,
    TariffFormatError,
    UnsupportedTariffFeature,
)

__all__ = ["load_urdb"]

# URDB writes "no upper limit" as a huge number (often 1e38 stored as float32).
_UNBOUNDED = 1e37

_DGRULES = {
    "Net Metering": "net_metering",
    "Net Billing Instantaneous": "net_billing",
}

# Present and non-empty -> the rate uses a feature we do not model.
_UNSUPPORTED = {
    "coincidentratestructure": "coincident demand charges",
    "coincidentrateschedule": "coincident demand charges",
    "coincidentrateunit": "coincident demand charges",
    "demandratchetpercentage": "demand ratchet (demandratchetpercentage)",
    "demandreactivepowercharge": "reactive power charge",
    "fueladjustmentsmonthly": "monthly fuel adjustments",
    "demandattrs": "free-form demand attributes",
}


def load_urdb(source: str | Path | Mapping[str, Any], *, item: int | None = None) -> Tariff:
    """Read a URDB rate from a JSON file path or an already parsed dict.

    An API response (``{"items": [...]}``) must hold one rate, or pick one with ``item``.
    """
    data = _read(source)
    if "items" in data:
        items = data["items"]
        if not isinstance(items, list) or not items:
            raise TariffFormatError("items: expected a non-empty list of rates")
        if item is None and len(items) != 1:
            raise TariffFormatError(f"items: {len(items)} rates in the file, choose one with item=")
        data = items[item or 0]
        if not isinstance(data, dict):
            raise TariffFormatError("items: each rate must be a JSON object")
    _reject_unsupported(data)
    # URDB is the US Utility Rate Database: its rates are in US dollars (the JSON has no currency field)
    fields: dict[str, Any] = {"name": str(data.get("name", "")), "currency": "USD"}
    fields.update(_energy(data))
    fields.update(_demand(data))
    fields.update(_fixed_and_minimum(data))
    try:
        return Tariff(**fields)
    except ValidationError as exc:
        raise TariffFormatError(f"URDB rate does not form a valid tariff: {exc}") from exc


def _read(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    try:
        parsed = json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TariffFormatError(f"cannot read URDB JSON from {source}: {exc}") from exc
    if not isinstance(parsed, dict):
        raise TariffFormatError("URDB JSON must be an object")
    return parsed


def _present(value: object) -> bool:
    return value not in (None, "", [], {}, 0, 0.0)


def _reject_unsupported(data: Mapping[str, Any]) -> None:
    for key, feature in _UNSUPPORTED.items():
        if _present(data.get(key)):
            raise UnsupportedTariffFeature(feature, f"URDB field {key!r}")
    for key in ("demandunit", "flatdemandunit"):
        unit = data.get(key)
        if unit not in (None, "", "kW"):
            raise UnsupportedTariffFeature(f"demand in {unit}", f"URDB field {key!r}")
    rules = data.get("dgrules")
    if rules is not None and rules not in _DGRULES:
        raise UnsupportedTariffFeature(f"metering rule {rules!r}", "URDB field 'dgrules'")


def _number(entry: Mapping[str, Any], key: str, field: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TariffFormatError(f"{field}.{key}: expected a number, got {value!r}")
    return float(value)


def _rate(entry: Mapping[str, Any], field: str) -> float:
    """URDB splits a price into ``rate`` and an optional adjustment ``adj``."""
    rate = _number(entry, "rate", field)
    if "adj" in entry and entry["adj"] is not None:
        rate += _number(entry, "adj", field)
    return rate


def _bound(entry: Mapping[str, Any], last: bool, field: str) -> float | None:
    # The last tier is open-ended by definition in the model; URDB sometimes writes a
    # placeholder there (1e38 or a finite cap), which bills beyond it at the last rate.
    if last or "max" not in entry or entry["max"] is None:
        return None
    value = _number(entry, "max", field)
    return None if value >= _UNBOUNDED else value


def _structure(data: Mapping[str, Any], key: str) -> list[list[Mapping[str, Any]]]:
    value = data.get(key)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(p, list) and p and all(isinstance(t, dict) for t in p) for p in value)
    ):
        raise TariffFormatError(f"{key}: expected a list of periods, each a list of tier objects")
    return value


def _schedule(data: Mapping[str, Any], key: str) -> tuple[tuple[int, ...], ...]:
    value = data.get(key)
    if not isinstance(value, list) or len(value) != 12:
        raise TariffFormatError(f"{key}: expected 12 rows (months) of 24 hours")
    rows = []
    for m, row in enumerate(value):
        if not isinstance(row, list) or len(row) != 24:
            raise TariffFormatError(f"{key}[{m}]: expected 24 hourly period indices")
        try:
            ints = tuple(int(v) for v in row)
        except (TypeError, ValueError) as exc:
            raise TariffFormatError(f"{key}[{m}]: period indices must be integers") from exc
        if any(i != v for i, v in zip(ints, row, strict=True)):
            raise TariffFormatError(f"{key}[{m}]: period indices must be integers")
        rows.append(ints)
    return tuple(rows)


def _energy(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"metering": _DGRULES.get(str(data.get("dgrules")), "net_metering")}
    if "energyratestructure" not in data:
        return out
    periods = []
    for p, period in enumerate(_structure(data, "energyratestructure")):
        tiers = []
        for t, entry in enumerate(period):
            field = f"energyratestructure[{p}][{t}]"
            unit = entry.get("unit", "kWh")
            if unit != "kWh":
                raise UnsupportedTariffFeature(f"energy tier unit {unit!r}", field)
            sell = _number(entry, "sell", field) if entry.get("sell") is not None else 0.0
            tiers.append(
                EnergyTier(
                    max_kwh=_bound(entry, t == len(period) - 1, field),
                    rate_per_kwh=_rate(entry, field),
                    sell_per_kwh=sell,
                )
            )
        periods.append(EnergyPeriod(tiers=tuple(tiers)))
    out["energy_periods"] = tuple(periods)
    out["energy_weekday_schedule"] = _schedule(data, "energyweekdayschedule")
    out["energy_weekend_schedule"] = _schedule(data, "energyweekendschedule")
    return out


def _demand_periods(data: Mapping[str, Any], key: str) -> tuple[DemandPeriod, ...]:
    periods = []
    for p, period in enumerate(_structure(data, key)):
        tiers = []
        for t, entry in enumerate(period):
            field = f"{key}[{p}][{t}]"
            unit = entry.get("unit", "kW")
            if unit != "kW":
                raise UnsupportedTariffFeature(f"demand in {unit}", field)
            tiers.append(
                DemandTier(
                    max_kw=_bound(entry, t == len(period) - 1, field),
                    charge_per_kw=_rate(entry, field),
                )
            )
        periods.append(DemandPeriod(tiers=tuple(tiers)))
    return tuple(periods)


def _demand(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    window = data.get("demandwindow")
    if _present(window):
        if not isinstance(window, int | float) or isinstance(window, bool):
            raise TariffFormatError(f"demandwindow: expected minutes, got {window!r}")
        out["demand_interval_s"] = round(float(window) * 60)
    if "demandratestructure" in data:
        out["demand_periods"] = _demand_periods(data, "demandratestructure")
        out["demand_weekday_schedule"] = _schedule(data, "demandweekdayschedule")
        out["demand_weekend_schedule"] = _schedule(data, "demandweekendschedule")
    if "flatdemandstructure" in data:
        out["flat_demand_periods"] = _demand_periods(data, "flatdemandstructure")
        months = data.get("flatdemandmonths")
        if not isinstance(months, list) or len(months) != 12:
            raise TariffFormatError("flatdemandmonths: expected 12 period indices")
        try:
            out["flat_demand_months"] = tuple(int(m) for m in months)
        except (TypeError, ValueError) as exc:
            raise TariffFormatError("flatdemandmonths: period indices must be integers") from exc
    elif "flatdemandmonths" in data:
        raise TariffFormatError("flatdemandmonths given without flatdemandstructure")
    lookback = _lookback(data)
    if lookback is not None:
        out["lookback"] = lookback
    return out


def _lookback(data: Mapping[str, Any]) -> DemandLookback | None:
    """The ratchet of lookbackpercent (a fraction, 0.35 = 35 %), lookbackrange (months) and
    lookbackmonths (12 flags); None without a percent. A range or months without a percent
    bill nothing and are refused rather than ignored."""
    percent = data.get("lookbackpercent")
    if not _present(percent):
        for key in ("lookbackrange", "lookbackmonths"):
            if _present(data.get(key)) and data.get(key) != [0] * 12 and data.get(key) != [False] * 12:
                raise TariffFormatError(f"{key} given without lookbackpercent")
        return None
    value = _number(data, "lookbackpercent", "rate")
    if not 0 < value <= 1:
        raise TariffFormatError(f"lookbackpercent: expected a fraction in (0, 1], got {value!r}")
    span = data.get("lookbackrange") or 0
    if isinstance(span, bool) or not isinstance(span, int | float) or span < 0 or span != int(span) or span > 36:
        raise TariffFormatError(f"lookbackrange: expected whole months 0..36, got {span!r}")
    months = data.get("lookbackmonths")
    flags: tuple[bool, ...]
    if months in (None, []):
        flags = (True,) * 12
    elif not isinstance(months, list) or len(months) != 12 or any(m not in (0, 1, True, False) for m in months):
        raise TariffFormatError("lookbackmonths: expected 12 flags (true/false or 1/0)")
    else:
        flags = tuple(bool(m) for m in months)
    if int(span) == 0 and not any(flags):
        raise TariffFormatError("lookbackmonths: no month flagged and no lookbackrange")
    return DemandLookback(percent=value, range_months=int(span), months=flags)


def _per_month(amount: float, units: object, field: str) -> float:
    """Convert a charge to $/month the way SAM does ($/day x 365/12, $/year / 12)."""
    if units in (None, "$/month"):
        return amount
    if units == "$/day":
        return amount * 365.0 / 12.0
    if units == "$/year":
        return amount / 12.0
    raise TariffFormatError(f"{field}: unknown units {units!r}")


def _fixed_and_minimum(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # v8 names the fixed charge fixedchargefirstmeter (+ units); v3/v7 fixedmonthlycharge.
    if data.get("fixedchargefirstmeter") is not None:
        amount = _number(data, "fixedchargefirstmeter", "rate")
        out["fixed_monthly"] = _per_month(amount, data.get("fixedchargeunits"), "fixedchargeunits")
    elif data.get("fixedmonthlycharge") is not None:
        out["fixed_monthly"] = _number(data, "fixedmonthlycharge", "rate")
    if data.get("minmonthlycharge") is not None:
        out["minimum_monthly"] = _number(data, "minmonthlycharge", "rate")
    if data.get("annualmincharge") is not None:
        out["minimum_annual"] = _number(data, "annualmincharge", "rate")
    if data.get("mincharge") is not None:
        amount = _number(data, "mincharge", "rate")
        units = data.get("minchargeunits")
        if units == "$/year":
            out["minimum_annual"] = amount
        else:
            out["minimum_monthly"] = _per_month(amount, units, "minchargeunits")
    return out
