"""Backtest: the live policies against the plant model in fast time, billed under a tariff.

`ems backtest` (ems/cli.py) ties it together; docs/backtest.md explains the method.
"""

from ems.backtest.errors import BacktestError, BacktestInputError

__all__ = ["BacktestError", "BacktestInputError"]
