"""The report's charts, drawn with matplotlib (object API, no pyplot: no global state, no
GUI backend) and returned as inline SVG.

Every axis says its unit, ticks are whole numbers with thousands separators (never
"4.3e+03"), state of charge is in % at 0/25/50/75/100, legends sit right of the axes,
not over the curves, and the dates of the week are one label a day under the day.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from ems.backtest.engine import Trace
from ems.backtest.financials import Economics, Financials
from ems.backtest.foresight import Foresight
from ems.backtest.report.formatting import COMPONENT_LABELS, Currency, PowerUnit, number
from ems.backtest.report.inline_svg import figure_svg
from ems.backtest.results import COMPONENTS, MonthRow
from ems.tariff.model import Tariff
from ems.tariff_signals import tariff_signals

FloatArray = npt.NDArray[np.float64]
WIDTH_IN = 9.4
MOST_POINTS = 2000  # per curve: a week at 1 min is 10,080 steps, more than a page is wide

LOAD, GRID, CAP, FORESIGHT, PRICE = "#8a8a8a", "#1f5fa8", "#c0392b", "#2e9e4f", "#7b4fa8"
COMPONENT_COLORS = {"energy": "#e6a532", "demand_tou": "#1f5fa8", "demand_flat": "#6fa8dc", "fixed": "#999999",
                    "minimum": "#c27ba0"}


def _whole(digits: int = 0) -> FuncFormatter:
    return FuncFormatter(lambda x, _pos: number(x, digits))


# the same margins on every chart (inches): plot areas line up, legends have their column on the right
LEFT_IN, RIGHT_IN, TOP_IN = 1.05, 2.3, 0.12


def _margins(fig: Figure, bottom_in: float, hspace: float = 0.0) -> None:
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=LEFT_IN / w, right=1 - RIGHT_IN / w, top=1 - TOP_IN / h, bottom=bottom_in / h,
                        hspace=hspace)


def _legend_right(ax: Axes) -> None:
    """Right of the plot, out of the data; bars before lines, each in the order drawn."""
    handles, labels = ax.get_legend_handles_labels()
    pairs = sorted(zip(handles, labels, strict=True), key=lambda p: not isinstance(p[0], BarContainer))
    ax.legend([h for h, _ in pairs], [lb for _, lb in pairs], loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0)


def week_of_highest_load(trace: Trace) -> slice:
    """Seven whole days around the highest load of the run (where demand charges are decided)."""
    per_day = round(86400 / trace.step_s)
    n = trace.load_w.size
    peak_day = int(np.argmax(trace.load_w)) // per_day
    first = max(0, min(peak_day - 3, n // per_day - 7)) * per_day
    return slice(first, min(n, first + 7 * per_day))


def _thin(values: FloatArray, k: int) -> FloatArray:
    """Means of k steps (a curve a page can draw); k = 1 leaves it."""
    if k == 1:
        return values
    n = values.size // k * k
    out: FloatArray = values[:n].reshape(-1, k).mean(axis=1)
    return out


def _steps(offset_s: float, step_s: int, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Step averages drawn as steps, x in hours from the week's start: each value held to the
    end of its step (one point more)."""
    k = max(1, math.ceil(values.size / MOST_POINTS))
    v = _thin(values, k)
    x = (offset_s + step_s * k * np.arange(v.size + 1, dtype=np.float64)) / 3600.0
    return x, np.append(v, v[-1]) if v.size else v


def _day_axis(ax: Axes, t0: datetime, hours: float) -> None:
    """Midnights as grid lines, each day's name under its middle: one label a day, none colliding."""
    midnight = datetime(t0.year, t0.month, t0.day)
    first = (midnight - t0).total_seconds() / 3600.0  # the week starts at a midnight but need not
    days = [first + 24.0 * i for i in range(math.ceil((hours - first) / 24.0) + 1)]
    ax.set_xlim(0.0, hours)
    ax.xaxis.set_major_locator(FixedLocator([d for d in days if 0.0 <= d <= hours]))
    ax.xaxis.set_major_formatter(NullFormatter())
    noons = [d + 12.0 for d in days if 0.0 <= d + 12.0 <= hours]
    ax.xaxis.set_minor_locator(FixedLocator(noons))
    labels = [t0 + timedelta(hours=n) for n in noons]
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda _x, pos: f"{labels[pos]:%a} {labels[pos].day} {labels[pos]:%b}"))
    ax.tick_params(axis="x", which="minor", length=0, pad=5)
    ax.tick_params(axis="x", which="major", length=6)


def week_chart(trace: Trace, foresight: Foresight | None, tariff: Tariff, soc_window: tuple[float, float],
               currency: Currency) -> str:
    """Power (load, grid import, cap, perfect foresight), SoC and the price over the week of the highest load."""
    wk = week_of_highest_load(trace)
    step = trace.step_s
    t0 = trace.start + timedelta(seconds=step * wk.start)
    hours = (wk.stop - wk.start) * step / 3600.0
    unit = PowerUnit.for_peak(float(trace.load_w.max()) / 1e3)
    scale = unit.per_kw / 1e3  # W -> the unit
    pf = None
    if foresight is not None:
        f0 = wk.start * step // foresight.step_s
        f1 = min(foresight.grid_w.size, math.ceil(wk.stop * step / foresight.step_s))
        # its first step's offset from the week's start, in s
        pf = (foresight.step_s * f0 - step * wk.start, slice(f0, f1)) if f1 > f0 else None
    sig = tariff_signals(tariff, t0, step, wk.stop - wk.start,
                         month_kwh=float(np.maximum(trace.load_w, 0).mean()) / 1000 * 730,
                         reference_peak_kw=float(trace.load_w.max()) / 1000)

    def draw(fig: Figure) -> None:
        power, soc, price = fig.subplots(3, 1, sharex=True, height_ratios=(3.0, 2.0, 1.2))
        _margins(fig, bottom_in=0.4, hspace=0.12)
        load = trace.load_w[wk] * scale
        grid = trace.grid_w[wk] * scale
        power.plot(*_steps(0.0, step, load), drawstyle="steps-post", color=LOAD, lw=1.2,
                   label=f"Load without battery\n(peak {number(float(load.max()))} {unit.name})")
        power.plot(*_steps(0.0, step, grid), drawstyle="steps-post", color=GRID, lw=1.4,
                   label=f"Grid import with battery\n(peak {number(float(grid.max()))} {unit.name})")
        if np.isfinite(trace.cap_w[wk]).any():
            power.plot(*_steps(0.0, step, trace.cap_w[wk] * scale), drawstyle="steps-post", color=CAP, lw=1.0,
                       ls="--", label="Import cap the\ncontroller held")
        if pf is not None and foresight is not None:
            power.plot(*_steps(pf[0], foresight.step_s, foresight.grid_w[pf[1]] * scale), drawstyle="steps-post",
                       color=FORESIGHT, lw=1.0, ls=":", label="Grid import,\nperfect foresight")
        power.set_ylabel(f"Power ({unit.name})")
        power.set_ylim(bottom=min(0.0, float(np.nanmin(grid)) * 1.1))
        power.yaxis.set_major_formatter(_whole(0 if unit.name == "kW" else 1))
        _legend_right(power)

        lo, hi = soc_window
        soc.axhspan(0, 100 * lo, color="#f1f1f1", lw=0, label="Outside the SoC window")
        soc.axhspan(100 * hi, 100, color="#f1f1f1", lw=0)
        if trace.reserve_soc[wk].max() > 0:
            soc.plot(*_steps(0.0, step, trace.reserve_soc[wk] * 100), drawstyle="steps-post", color=CAP, lw=0.9,
                     ls="--", label="Reserve floor")
        # SoC is at the end of each step
        t_end = step * np.arange(1, wk.stop - wk.start + 1) / 3600.0
        soc.plot(t_end, trace.soc[wk] * 100, color=GRID, lw=1.4, label="SoC, ems policies")
        if pf is not None and foresight is not None:
            fs = foresight.soc[pf[1]] * 100
            t_fs = (pf[0] + foresight.step_s * np.arange(1, fs.size + 1)) / 3600.0
            soc.plot(t_fs, fs, color=FORESIGHT, lw=1.0, ls=":", label="SoC, perfect foresight")
        soc.set_ylim(0, 100)
        soc.yaxis.set_major_locator(FixedLocator([0, 25, 50, 75, 100]))
        soc.set_ylabel("State of charge (%)")
        _legend_right(soc)

        prices = sig.import_price_per_kwh
        price.plot(*_steps(0.0, step, prices), drawstyle="steps-post", color=PRICE, lw=1.2,
                   label="Import energy price\n(marginal tier)")
        price.set_ylim(min(0.0, float(prices.min()) * 1.2), max(float(prices.max()), 1e-6) * 1.2)
        price.yaxis.set_major_locator(MaxNLocator(3))
        price.yaxis.set_major_formatter(_whole(3))
        price.set_ylabel(f"Price\n({currency.per('kWh')})")
        _legend_right(price)
        _day_axis(price, t0, hours)
        fig.align_ylabels([power, soc, price])

    return figure_svg("week of the highest load", draw, WIDTH_IN, 6.6)


def _month_ticks(ax: Axes, months: Sequence[MonthRow]) -> None:
    """'Jan' under each bar, the year under the first and under every January."""
    labels = []
    for i, m in enumerate(months):
        t = datetime.strptime(m.month, "%Y-%m")
        labels.append(f"{t:%b}\n{t:%Y}" if i == 0 or t.month == 1 else f"{t:%b}")
    ax.set_xticks(range(len(months)), labels)
    ax.tick_params(axis="x", length=0)
    ax.grid(False, axis="x")
    pad = max(0.6, (3 - len(months)) / 2 + 0.1)  # one or two months: bars no wider than three would be
    ax.set_xlim(-pad, len(months) - 1 + pad)


def _money_axis(ax: Axes, label: str) -> None:
    ax.yaxis.set_major_locator(MaxNLocator(6))
    ax.yaxis.set_major_formatter(_whole())
    ax.set_ylabel(label)
    ax.axhline(0, color="#555555", lw=0.8)


def savings_chart(months: Sequence[MonthRow], currency: Currency) -> str:
    """Each month's savings next to the perfect-foresight bound."""
    has_pf = any(m.foresight_savings is not None for m in months)

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        _margins(fig, bottom_in=0.5)
        x = np.arange(len(months))
        w = 0.38 if has_pf else 0.6
        ax.bar(x - (w / 2 if has_pf else 0), [m.savings for m in months], w, color=GRID, label="ems policies")
        if has_pf:
            ax.bar(x + w / 2, [np.nan if m.foresight_savings is None else m.foresight_savings for m in months], w,
                   color="#a8d5b5", edgecolor=FORESIGHT, lw=0.8, label="Perfect foresight\n(upper bound)")
        _month_ticks(ax, months)
        _money_axis(ax, f"Bill savings ({currency.unit})")
        _legend_right(ax)

    return figure_svg("savings per month", draw, WIDTH_IN, 2.9)


def components_chart(months: Sequence[MonthRow], currency: Currency) -> str:
    """Savings per month split by bill component; a component that saves nothing anywhere is left out."""
    shown = [c for c in COMPONENTS if any(abs(m.savings_by_component[c]) >= 0.5 for m in months)]

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        _margins(fig, bottom_in=0.5)
        x = np.arange(len(months))
        up, down = np.zeros(len(months)), np.zeros(len(months))
        for c in shown:
            v = np.array([m.savings_by_component[c] for m in months])
            base = np.where(v >= 0, up, down)
            ax.bar(x, v, 0.6, bottom=base, color=COMPONENT_COLORS[c], label=COMPONENT_LABELS[c])
            up, down = np.where(v >= 0, up + v, up), np.where(v < 0, down + v, down)
        ax.plot(x, [m.savings for m in months], "D", color="#222222", ms=4, label="Net savings")
        _month_ticks(ax, months)
        _money_axis(ax, f"Savings ({currency.unit})")
        _legend_right(ax)

    return figure_svg("savings by bill component", draw, WIDTH_IN, 2.9)


def peaks_chart(months: Sequence[MonthRow]) -> str:
    """Each month's billed peak (15-min demand) without and with the battery."""
    unit = PowerUnit.for_peak(max(m.peak_without_kw for m in months))

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        _margins(fig, bottom_in=0.5)
        x = np.arange(len(months))
        ax.bar(x - 0.19, [m.peak_without_kw * unit.per_kw for m in months], 0.38, color=LOAD,
               label="Without battery")
        ax.bar(x + 0.19, [m.peak_with_kw * unit.per_kw for m in months], 0.38, color=GRID, label="With battery")
        _month_ticks(ax, months)
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_formatter(_whole(0 if unit.name == "kW" else 1))
        ax.set_ylabel(f"Peak demand ({unit.name})")
        _legend_right(ax)

    return figure_svg("peak demand per month", draw, WIDTH_IN, 2.6)


def cash_flow_chart(fin: Financials, econ: Economics, currency: Currency) -> str:
    """Yearly cash flows with their running sum, undiscounted and discounted: where the first
    crosses zero is the payback, where the second ends is the NPV."""
    flows = np.array(fin.cash_flows)
    years = np.arange(flows.size)
    discounted = flows / (1.0 + econ.discount_rate) ** years

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        _margins(fig, bottom_in=0.55)
        ax.bar(years, flows, 0.6, color=np.where(flows >= 0, "#8fc1a9", "#e0a39a"), label="Cash flow of the year")
        ax.plot(years, np.cumsum(flows), "-o", color="#333333", ms=3, lw=1.3, label="Cumulative, undiscounted")
        ax.plot(years, np.cumsum(discounted), "--s", color=GRID, ms=3, lw=1.3,
                label=f"Cumulative, discounted\nat {number(100 * econ.discount_rate, 1)} %")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("Year (0: purchase; last: end of life)")
        ax.grid(False, axis="x")
        _money_axis(ax, f"Cash flow ({currency.unit})")
        _legend_right(ax)

    return figure_svg("cash flows over the lifetime", draw, WIDTH_IN, 3.0)
