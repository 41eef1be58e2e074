"""One error root for the backtest package."""

from __future__ import annotations


class BacktestError(Exception):
    """Root of every error raised by ems.backtest."""


class BacktestInputError(BacktestError):
    """An input series or setting cannot be used; the message names the file or field."""
