"""One error root for the backtest package."""

from __future__ import annotations

from ems.model.errors import EmsError


class BacktestError(EmsError):
    """Root of every error raised by ems.backtest."""


class BacktestInputError(BacktestError):
    """An input series or setting cannot be used; the message names the file or field."""
