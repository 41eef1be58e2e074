"""A matplotlib figure as SVG to put inline in an HTML page.

Text stays text (the browser draws it: searchable, small); the XML prolog, DOCTYPE,
namespace declarations and RDF metadata go, because an HTML parser needs none of them and
they are the only URLs matplotlib writes (a page that holds no URL at all cannot fetch
one). Group ids repeat from figure to figure ("figure_1", "axes_1") and are dropped; the
ids that are referenced (markers, clip paths) are hashes salted with the figure's name,
so two figures on one page never share one and the output is the same run after run.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.formatter.useoffset": False,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
}


def figure_svg(name: str, draw: Callable[[Figure], None], width_in: float, height_in: float) -> str:
    """Draw a figure with `draw` and return its <svg> element; `name` labels it for screen readers.
    `draw` places the axes itself: the charts of one page share their margins, so their plot
    areas line up one under the other."""
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": name}):
        fig = Figure(figsize=(width_in, height_in))
        draw(fig)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return _inline(buf.getvalue(), name)


def _inline(svg: str, name: str) -> str:
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'<g id="[^"]*"', "<g", svg)
    # scale with the page: the viewBox keeps the aspect, CSS sets the width
    svg = re.sub(r'<svg width="[^"]*" height="[^"]*"', f'<svg role="img" aria-label="{name}"', svg, count=1)
    return svg.strip()
