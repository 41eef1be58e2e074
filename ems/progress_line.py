"""The progress of a long CLI run (`ems backtest`, `ems size`, the benchmarks).

On a terminal one line redrawn in place; anywhere else (a log, a pipe, CI) a line as it starts
and one each tenth of the way: a year's backtest writes eleven lines, not 35,040 redraws run
into one.
"""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressLine:
    """`line(done, total)` after each piece of work; `line.close()` before anything else is
    printed to the same stream (it ends a line left open on a terminal)."""

    def __init__(self, label: str, unit: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self._open = False  # a terminal line drawn and not yet ended
        self._tenth = -1  # the last tenth written elsewhere

    def __call__(self, done: int, total: int) -> None:
        text = f"{self.label} {100 * done / total:5.1f} % ({done}/{total} {self.unit})" if total > 0 \
            else f"{self.label} ({done} {self.unit})"
        if self.tty:
            self.stream.write("\r" + text)
            self._open = True
        else:
            tenth = 10 if total <= 0 or done >= total else 10 * done // total
            if tenth <= self._tenth:
                return
            self._tenth = tenth
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
