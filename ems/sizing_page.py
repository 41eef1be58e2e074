"""The sizing sweep as one self-contained HTML page: NPV heatmap (energy x power), the
recommended size, and a table of every point (NPV, payback, IRR, LCOS; off-grid the genset
size, unserved energy and diesel)."""

from __future__ import annotations

import html
import math

import numpy as np
from matplotlib.figure import Figure

from ems.backtest.report.formatting import Currency, number, percent
from ems.backtest.report.inline_svg import figure_svg
from ems.backtest.report.tables import Column, table
from ems.sizing import SizePoint, Sweep


def _heatmap(s: Sweep, currency: Currency) -> str:
    best = s.best
    # with PV or gensets swept: the points at the recommended PV and genset size (else the first's)
    at = best if best is not None else (s.points[0] if s.points else None)
    pv_kw, genset_kw = (None, None) if at is None else (at.pv_kw, at.genset_kw)
    points = [p for p in s.points if p.pv_kw == pv_kw and p.genset_kw == genset_kw]
    dark = [p for p in points if not p.serves_load]
    energies = sorted({p.energy_kwh for p in points})
    powers = sorted({p.power_kw for p in points})
    grid = np.full((len(energies), len(powers)), np.nan)
    for p in points:
        grid[energies.index(p.energy_kwh), powers.index(p.power_kw)] = p.npv / 1000.0

    def draw(fig: Figure) -> None:
        ax = fig.add_axes((0.1, 0.14, 0.72, 0.78))
        lim = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="RdYlGn", vmin=-lim, vmax=lim)
        ax.set_xticks(range(len(powers)), [number(x) for x in powers], rotation=45)
        ax.set_yticks(range(len(energies)), [number(x) for x in energies])
        ax.set_xlabel("BESS power (kW)")
        ax.set_ylabel("BESS energy (kWh usable)")
        if dark:  # never recommended, whatever their NPV
            ax.plot([powers.index(p.power_kw) for p in dark], [energies.index(p.energy_kwh) for p in dark],
                    marker="x", color="black", markersize=10, linestyle="none", label="load unserved")
            ax.legend(loc="upper left", fontsize=8)
        if best is not None:
            ax.plot(powers.index(best.power_kw), energies.index(best.energy_kwh), marker="*", color="black",
                    markersize=14, linestyle="none")
        cax = fig.add_axes((0.85, 0.14, 0.03, 0.78))
        fig.colorbar(im, cax=cax).set_label(f"NPV (thousand {currency.unit})")

    title = ("NPV by battery energy and power" + ("" if pv_kw is None else f", with {number(pv_kw)} kW of PV")
             + ("" if genset_kw is None else f", {number(genset_kw)} kW of gensets"))
    return figure_svg(title, draw, 9.4, 5.2)


def _years(x: float | None) -> str:
    return "never" if x is None or not math.isfinite(x) else f"{x:.1f}"


def sizing_page(s: Sweep, currency_code: str) -> str:
    cur = Currency(currency_code)
    best = s.best
    offgrid = any(p.unserved_kwh is not None for p in s.points)
    n_dark = sum(not p.serves_load for p in s.points)
    dark = (f"<p>{n_dark} of {len(s.points)} points leave load unserved (marked &times;): never "
            "recommended.</p>") if n_dark else ""
    if best is None:
        verdict = ("<p><strong>No size on this grid serves the whole load</strong>.</p>" if n_dark == len(s.points)
                   else "<p><strong>No size on this grid pays for itself</strong> (every NPV is negative"
                   + (" where the whole load is served" if n_dark else "") + ").</p>")
    else:
        pv = "" if best.pv_kw is None else f" with {number(best.pv_kw)} kW of PV"
        pv += "" if best.genset_kw is None else f" and {number(best.genset_kw)} kW of gensets"
        verdict = (f"<p><strong>Recommended: {number(best.energy_kwh)} kWh / {number(best.power_kw)} kW{pv}</strong>, "
                   f"the highest NPV on the grid ({cur.money(best.npv)}; payback {_years(best.simple_payback_years)} "
                   f"years, IRR {percent(best.irr)}, LCOS {cur.money(best.lcos_per_kwh, 3)}/kWh).</p>")

    swept_pv = any(p.pv_kw is not None for p in s.points)
    swept_gensets = any(p.genset_kw is not None for p in s.points)

    def row(p: SizePoint) -> list[str]:
        parts = [number(p.genset_kw or 0.0)] if swept_gensets else []
        parts += [number(p.pv_kw or 0.0), cur.money(p.pv_annual_savings)] if swept_pv else []
        parts += [cur.money(p.battery_npv)] if swept_pv or swept_gensets else []
        site = [number(p.unserved_kwh, 1) + ("" if p.serves_load else " (unserved)"),
                number(p.diesel_l_per_year)] if offgrid else []
        return [number(p.energy_kwh), number(p.power_kw), *parts, *site, cur.money(p.capex),
                cur.money(p.annual_savings), cur.money(p.npv), _years(p.simple_payback_years), percent(p.irr),
                cur.money(p.lcos_per_kwh, 3), number(p.equivalent_full_cycles_per_year), number(p.peak_with_kw),
                "\u2013" if p.soh_10y is None else percent(p.soh_10y)]

    part_cols = (("Gensets (kW)",) if swept_gensets else ()) + (
        ("PV (kW)", "PV's year-1 savings") if swept_pv else ()) + (
        ("Battery's NPV",) if swept_pv or swept_gensets else ())
    site_cols = ("Unserved (kWh)", "Diesel (l a year)") if offgrid else ()
    cols = [Column(c) for c in ("Energy (kWh)", "Power (kW)", *part_cols, *site_cols, "CAPEX", "Year-1 savings",
                                "NPV", "Payback (years)", "IRR", "LCOS per kWh", "Cycles a year",
                                "Grid import peak (kW)" if offgrid else "Peak with (kW)", "SoH at 10 years")]
    body = table(cols, [row(p) for p in sorted(s.points, key=lambda p: -p.npv)],
                 caption="Every point, highest NPV first")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Battery sizing</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;}table{border-collapse:collapse;}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right;}</style></head><body>"
            f"<h1>Battery sizing: {len(s.points)} points</h1>{verdict}{dark}{_heatmap(s, cur)}{body}"
            f"<p>{len(s.points)} backtests in {s.wall_s:.0f} s on {s.workers} Dask worker(s) "
            f"({html.escape(s.scheduler)}).</p></body></html>")
