"""The report's tables: one row a month ("Jan 2018"), a totals row, the currency and unit in
each column's header and numbers right-aligned."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from ems.backtest.report.formatting import COMPONENT_LABELS, Currency, month_label, number, percent
from ems.backtest.results import COMPONENTS, MonthRow


@dataclass(frozen=True)
class Column:
    header: str
    numeric: bool = True


def table(columns: Sequence[Column], rows: Sequence[Sequence[str]], total: Sequence[str] | None = None,
          caption: str = "") -> str:
    """Cells are already formatted text; they are escaped here."""
    def row(cells: Sequence[str], tag: str) -> str:
        return "<tr>" + "".join(f'<{tag}{" class=num" if c.numeric else ""}>{html.escape(v)}</{tag}>'
                                for c, v in zip(columns, cells, strict=True)) + "</tr>"
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append("<thead>" + row([c.header for c in columns], "th") + "</thead>")
    parts.append("<tbody>" + "".join(row(r, "td") for r in rows) + "</tbody>")
    if total is not None:
        parts.append("<tfoot>" + row(total, "td") + "</tfoot>")
    parts.append("</table>")
    return "".join(parts)


def _share(saved: float, bound: float | None) -> str:
    return percent(saved / bound) if bound is not None and bound > 0 else "\u2013"


def monthly_table(months: Sequence[MonthRow], currency: Currency) -> str:
    """Bills, savings against the bound, peaks and throughput per month."""
    cur = currency.unit
    columns = [Column("Month", numeric=False), Column(f"Bill without battery ({cur})"),
               Column(f"Bill with battery ({cur})"), Column(f"Savings ({cur})"),
               Column(f"Perfect-foresight savings ({cur})"), Column("Share of the bound captured, net of wear"),
               Column("Peak without battery (kW)"), Column("Peak with battery (kW)"), Column("Peak reduction (kW)"),
               Column("Discharged (kWh)"), Column("Equivalent full cycles")]
    rows = [[month_label(m.month), number(m.bill_without), number(m.bill_with), number(m.savings),
             number(m.foresight_savings), "\u2013" if m.share is None else percent(m.share), number(m.peak_without_kw),
             number(m.peak_with_kw), number(m.peak_without_kw - m.peak_with_kw), number(m.discharged_kwh),
             number(m.equivalent_full_cycles, 1)] for m in months]
    pf = [m.foresight_savings for m in months]
    pf_total = None if any(p is None for p in pf) else sum(p for p in pf if p is not None)
    pf_net = [m.foresight_net_savings for m in months]
    pf_net_total = None if any(p is None for p in pf_net) else sum(p for p in pf_net if p is not None)
    saved = sum(m.savings for m in months)
    peak_without, peak_with = max(m.peak_without_kw for m in months), max(m.peak_with_kw for m in months)
    total = ["Total", number(sum(m.bill_without for m in months)), number(sum(m.bill_with for m in months)),
             number(saved), number(pf_total), _share(sum(m.net_savings for m in months), pf_net_total),
             number(peak_without), number(peak_with),
             number(peak_without - peak_with), number(sum(m.discharged_kwh for m in months)),
             number(sum(m.equivalent_full_cycles for m in months), 1)]
    return table(columns, rows, total)


def shown_components(months: Sequence[MonthRow]) -> tuple[list[str], list[str]]:
    """The components that saved or cost something in some month, and those that never did."""
    shown = [c for c in COMPONENTS if any(abs(m.savings_by_component[c]) >= 0.005 for m in months)]
    return shown, [c for c in COMPONENTS if c not in shown]


def components_table(months: Sequence[MonthRow], currency: Currency) -> str:
    """Savings per month by bill component, each summing to the month's savings."""
    cur = currency.unit
    shown, _ = shown_components(months)
    columns = [Column("Month", numeric=False), *[Column(f"{COMPONENT_LABELS[c]} ({cur})") for c in shown],
               Column(f"Total savings ({cur})")]
    rows = [[month_label(m.month), *[number(m.savings_by_component[c]) for c in shown], number(m.savings)]
            for m in months]
    total = ["Total", *[number(sum(m.savings_by_component[c] for m in months)) for c in shown],
             number(sum(m.savings for m in months))]
    return table(columns, rows, total)
