"""The CLI's progress line: redrawn on a terminal, a line a tenth elsewhere."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from ems.progress_line import ProgressLine

ROOT = Path(__file__).resolve().parents[2]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_each_tenth_not_each_step() -> None:
    out = io.StringIO()
    line = ProgressLine("backtest", "steps", out)
    for done in range(1, 35_041):
        line(done, 35_040)
    line.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 11  # the start, 10 %, 20 %, ... 100 %
    assert lines[:2] == ["backtest   0.0 % (1/35040 steps)", "backtest  10.0 % (3504/35040 steps)"]
    assert lines[-1] == "backtest 100.0 % (35040/35040 steps)"


def test_a_few_pieces_of_work_each_get_their_line_and_none_twice() -> None:
    out = io.StringIO()
    line = ProgressLine("size", "points", out)
    for done in (1, 1, 2, 3):
        line(done, 3)
    assert out.getvalue().splitlines() == ["size  33.3 % (1/3 points)", "size  66.7 % (2/3 points)",
                                           "size 100.0 % (3/3 points)"]


def test_a_terminal_line_is_redrawn_and_ended_once() -> None:
    out = _Terminal()
    line = ProgressLine("size", "points", out)
    line(1, 4)
    line(2, 4)
    line.close()
    line.close()
    assert out.getvalue() == "\rsize  25.0 % (1/4 points)\rsize  50.0 % (2/4 points)\n"


def test_nothing_drawn_leaves_nothing_to_end() -> None:
    out = _Terminal()
    ProgressLine("backtest", "steps", out).close()
    assert out.getvalue() == ""


def test_ems_backtest_into_a_pipe_writes_a_few_progress_lines(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "ems.cli", "backtest", "--config", str(ROOT / "config" / "backtest-site.yaml"),
           "--load", str(ROOT.parent / "shared" / "data" / "loads" / "sam_sample_load_8760h.csv"),
           "--load-scale", "1000", "--days", "2", "--no-foresight", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    progress = [ln for ln in done.stderr.splitlines() if ln.startswith("backtest ")]
    assert "\r" not in done.stderr and len(progress) == 11, done.stderr
    assert progress[-1] == "backtest 100.0 % (192/192 steps)"
