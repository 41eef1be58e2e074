"""Write a benchmark's results into its own section of docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# the backtest benchmarks' inputs: the shared load and tariff (../shared/data), the example site
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
LOAD = SHARED / "loads" / "sam_sample_load_8760h.csv"
URDB = SHARED / "tariffs" / "sam_urdbv7.json"
SITE = Path(__file__).resolve().parent.parent / "config" / "backtest-site.yaml"
_HEAD = "# Benchmarks\n\nNumbers from the scripts in `benchmarks/`; each script rewrites its own section.\n"


def percentiles_ms(samples_s: list[float] | np.ndarray, ps: tuple[float, ...] = (50, 99)) -> dict[str, float]:
    a = np.asarray(samples_s, dtype=float) * 1e3
    return {f"p{p:g}": float(np.percentile(a, p)) for p in ps} | {"max": float(a.max())}


def machine() -> str:
    import os
    py = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{py}, {os.cpu_count()} cores, {platform.machine()}"


async def wait_until(pred: Callable[[], bool], timeout_s: float, poll_s: float = 0.005) -> bool:
    """Poll a condition on real time; False if it did not hold within the timeout."""
    end = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(poll_s)
    return True


def update_section(name: str, body: str) -> None:
    """Replace (or append) the block between <!-- bench:name --> markers."""
    text = DOC.read_text() if DOC.exists() else _HEAD
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def write_json(path: Path | None, figures: dict[str, object]) -> None:
    """The benchmark's figures under their names, for machines (`--json PATH`)."""
    if path is not None:
        import json

        path.write_text(json.dumps(figures, indent=2, default=float) + "\n")


async def spawn_site(cfg_dump: dict[str, Any], folder: Path, settle_s: float = 1.0
                     ) -> tuple[asyncio.subprocess.Process, float, Path]:
    """`ems sim` for a site (its config as JSON-able data) in its own process, on a clock
    anchored 2 s ahead so the controller can share it; waits until it is up. Returns the
    process, the clock's anchor and where the site writes its ground truth on exit."""
    import sys

    import yaml

    path, truth_path = folder / "site.yaml", folder / "truth.json"
    path.write_text(yaml.safe_dump(cfg_dump))
    anchor = time.monotonic() + 2.0
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ems.cli", "sim", "--config", str(path), "--clock-anchor", repr(anchor),
        "--summary-json", str(truth_path), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(max(0.0, anchor - time.monotonic()) + settle_s)
    return proc, anchor, truth_path


def method_of(doc: str | None, stop_at: str | None = None) -> str:
    """A benchmark's docstring after its first paragraph, on one line (cut at `stop_at`)."""
    text = (doc or "").split("\n\n", 1)[-1]
    if stop_at is not None:
        text = text.split(stop_at)[0]
    return text.replace("\n", " ").strip()


def report_lines(name: str, title: str, setup: str, lines: list[str], method: str,
                 json_path: Path | None, figures: dict[str, object], write: bool) -> None:
    """Print a benchmark's lines, write its figures as JSON, and (unless a quick run) rewrite its
    section of docs/benchmarks.md: title, set-up, the lines, the method."""
    print("\n".join(lines))
    write_json(json_path, figures)
    if write:
        update_section(name, f"## {title}\n\n{setup}\n\n" + "\n".join(lines) + f"\n\nMethod: {method}")
