"""Backtest outputs: a self-contained HTML report (matplotlib charts as inline SVG, no
script, no network) for people, and JSON + CSV for machines."""

from ems.backtest.report.outputs import write_outputs
from ems.backtest.report.page import html_report

__all__ = ["html_report", "write_outputs"]
