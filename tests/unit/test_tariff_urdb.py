"""URDB import: field mapping, unit conversions, wrappers and unsupported features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ems.tariff import TariffFormatError, UnsupportedTariffFeature, load_urdb

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "tariffs"
SAM_FILE = SHARED / "sam_urdbv7.json"


def _schedule(value: int) -> list[list[int]]:
    return [[value] * 24 for _ in range(12)]


def _minimal(**extra: Any) -> dict[str, Any]:
    rate: dict[str, Any] = {
        "name": "test rate",
        "energyratestructure": [[{"rate": 0.1, "unit": "kWh"}]],
        "energyweekdayschedule": _schedule(0),
        "energyweekendschedule": _schedule(0),
    }
    rate.update(extra)
    return rate


@pytest.fixture
def sam_rate() -> dict[str, Any]:
    if not SAM_FILE.is_file():
        pytest.skip(f"shared tariff not found at {SAM_FILE}")
    data: dict[str, Any] = json.loads(SAM_FILE.read_text())
    return data


def test_shared_file_maps_every_structure(sam_rate: dict[str, Any]) -> None:
    tariff = load_urdb(SAM_FILE)
    ers = sam_rate["energyratestructure"]
    assert len(tariff.energy_periods) == len(ers)
    for period, raw in zip(tariff.energy_periods, ers, strict=True):
        assert [t.rate_per_kwh for t in period.tiers] == [r["rate"] for r in raw]
        assert [t.sell_per_kwh for t in period.tiers] == [r["sell"] for r in raw]
        assert period.tiers[0].max_kwh == raw[0]["max"]
        assert period.tiers[-1].max_kwh is None
    assert tariff.energy_weekday_schedule == tuple(
        tuple(int(v) for v in row) for row in sam_rate["energyweekdayschedule"]
    )
    assert tariff.demand_weekend_schedule == tuple(
        tuple(int(v) for v in row) for row in sam_rate["demandweekendschedule"]
    )
    drs = sam_rate["demandratestructure"]
    assert [[t.charge_per_kw for t in p.tiers] for p in tariff.demand_periods] == [
        [r["rate"] for r in p] for p in drs
    ]
    assert tariff.flat_demand_months == tuple(int(m) for m in sam_rate["flatdemandmonths"])
    assert [p.tiers[0].charge_per_kw for p in tariff.flat_demand_periods] == [
        p[0]["rate"] for p in sam_rate["flatdemandstructure"]
    ]
    assert tariff.fixed_monthly == sam_rate["fixedmonthlycharge"]
    assert tariff.minimum_monthly == sam_rate["minmonthlycharge"]
    assert tariff.minimum_annual == sam_rate["annualmincharge"]
    assert tariff.metering == "net_metering"
    assert tariff.demand_interval_s == 900


def test_dict_and_items_wrapper_give_the_same_tariff(sam_rate: dict[str, Any]) -> None:
    assert load_urdb({"items": [sam_rate]}) == load_urdb(sam_rate)


def test_items_with_several_rates_needs_a_choice() -> None:
    first, second = _minimal(name="a"), _minimal(name="b")
    with pytest.raises(TariffFormatError, match="items"):
        load_urdb({"items": [first, second]})
    assert load_urdb({"items": [first, second]}, item=1).name == "b"


def test_adjustment_is_added_and_huge_max_is_open() -> None:
    rate = _minimal(
        energyratestructure=[
            [
                {"max": 500, "rate": 0.1, "adj": 0.02, "unit": "kWh"},
                {"max": 1e38, "rate": 0.2, "unit": "kWh"},
            ]
        ]
    )
    (period,) = load_urdb(rate).energy_periods
    assert period.tiers[0].rate_per_kwh == pytest.approx(0.12)
    assert period.tiers[0].max_kwh == 500
    assert period.tiers[1].max_kwh is None


@pytest.mark.parametrize(
    ("units", "expected"),
    [("$/month", 30.0), ("$/day", 30.0 * 365 / 12), ("$/year", 30.0 / 12)],
)
def test_fixed_charge_units_follow_sam(units: str, expected: float) -> None:
    rate = _minimal(fixedchargefirstmeter=30.0, fixedchargeunits=units)
    assert load_urdb(rate).fixed_monthly == pytest.approx(expected)


def test_mincharge_units_select_monthly_or_annual() -> None:
    assert load_urdb(_minimal(mincharge=120.0, minchargeunits="$/year")).minimum_annual == 120.0
    assert load_urdb(_minimal(mincharge=2.0, minchargeunits="$/day")).minimum_monthly == (
        pytest.approx(2.0 * 365 / 12)
    )


def test_demand_window_sets_interval() -> None:
    assert load_urdb(_minimal(demandwindow=30)).demand_interval_s == 1800


def test_urdb_rates_are_in_us_dollars() -> None:
    # the US Utility Rate Database: its JSON names no currency, every rate in it is in USD
    assert load_urdb(_minimal()).currency == "USD"


def test_net_billing_rule_maps() -> None:
    assert load_urdb(_minimal(dgrules="Net Billing Instantaneous")).metering == "net_billing"


@pytest.mark.parametrize(
    ("extra", "feature"),
    [
        ({"coincidentratestructure": [[{"rate": 3.0}]]}, "coincident"),
        ({"demandratchetpercentage": [0.5] * 12}, "ratchet"),
        ({"demandunit": "kVA"}, "kVA"),
        ({"flatdemandunit": "hp"}, "hp"),
        ({"dgrules": "Buy All Sell All"}, "Buy All Sell All"),
        ({"dgrules": "Net Billing Hourly"}, "Net Billing Hourly"),
        ({"fueladjustmentsmonthly": [0.01] * 12}, "fuel"),
        (
            {"energyratestructure": [[{"rate": 0.1, "unit": "kWh daily"}]]},
            "kWh daily",
        ),
        (
            {
                "demandratestructure": [[{"rate": 5.0, "unit": "kVA"}]],
                "demandweekdayschedule": _schedule(0),
                "demandweekendschedule": _schedule(0),
            },
            "kVA",
        ),
    ],
)
def test_unsupported_features_raise_and_name_the_feature(
    extra: dict[str, Any], feature: str
) -> None:
    with pytest.raises(UnsupportedTariffFeature) as info:
        load_urdb(_minimal(**extra))
    assert feature in info.value.feature


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"energyweekdayschedule": _schedule(0)[:11]}, "energyweekdayschedule"),
        ({"energyweekendschedule": [[0.5] * 24] * 12}, "energyweekendschedule"),
        ({"energyratestructure": [[{"unit": "kWh"}]]}, "energyratestructure[0][0].rate"),
        ({"flatdemandstructure": [[{"rate": 5.0}]]}, "flatdemandmonths"),
        ({"fixedchargefirstmeter": 1.0, "fixedchargeunits": "$/week"}, "fixedchargeunits"),
    ],
)
def test_malformed_fields_are_named(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(TariffFormatError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_urdb(_minimal(**extra))


def test_schedule_pointing_past_the_structure_is_a_format_error() -> None:
    with pytest.raises(TariffFormatError, match="energy_weekday_schedule"):
        load_urdb(_minimal(energyweekdayschedule=_schedule(1)))


def test_unreadable_file_is_a_format_error(tmp_path: Path) -> None:
    bad = tmp_path / "rate.json"
    bad.write_text("{not json")
    with pytest.raises(TariffFormatError):
        load_urdb(bad)


def test_an_unsupported_feature_keeps_its_message_through_pickling() -> None:
    """A sizing worker's error is pickled back to the sweep: it came back as 'unsupported tariff
    feature: unsupported tariff feature: ...' (rebuilt from its message as the feature)."""
    import pickle

    exc = UnsupportedTariffFeature("coincident demand", "peak of the utility")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is UnsupportedTariffFeature and str(back) == str(exc) and back.feature == exc.feature
