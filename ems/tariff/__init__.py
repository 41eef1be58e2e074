"""Tariffs: the model, URDB import, dynamic prices and the bill engine."""

from ems.tariff.bill import Bill, BillInputError, MonthlyBill, check_prices_cover, compute_bill
from ems.tariff.model import (
    DemandPeriod,
    DemandTier,
    EnergyPeriod,
    EnergyTier,
    PriceSeries,
    Tariff,
    TariffError,
    TariffFormatError,
    UnsupportedTariffFeature,
)
from ems.tariff.prices import load_price_csv
from ems.tariff.urdb import load_urdb

__all__ = [
    "Bill",
    "BillInputError",
    "DemandPeriod",
    "DemandTier",
    "EnergyPeriod",
    "EnergyTier",
    "MonthlyBill",
    "PriceSeries",
    "Tariff",
    "TariffError",
    "TariffFormatError",
    "UnsupportedTariffFeature",
    "check_prices_cover",
    "compute_bill",
    "load_price_csv",
    "load_urdb",
]
