"""The site load a tick or two ahead: what the fast core answers, since its command lands late.

The fast loop reads the load, and the battery's answer lands a tick or so later (the
write, the PCS's own response). Answering the load as read lets the edges of a training
swing through: at 50 Hz, a fifth of the swing's band RMS (docs/smoothing.md). Linear
extrapolation of the last change halves that; it cannot see an edge coming.

Synchronous training is periodic (compute, communication, compute...), so the load's
change from tick to tick is well predicted by a linear combination of its last changes
(an autoregressive model: a sum of periodic waves is what such a model represents). This
predictor fits one by least squares over the last `window` ticks, once every `refit`
ticks (on what there is until the window is full), and predicts the change `lead`
ticks ahead by running the model forward. It is
used only where, over the window it was fitted on, it predicts the next change better
than linear extrapolation does; otherwise (too little history, a steady load, a job
start or a checkpoint dip the model has not seen) the predictor falls back to linear
extrapolation. A predicted change is never steeper than the steepest seen in the window.
And it is used only while it keeps predicting better: each tick its forecast of the next change
is scored against linear extrapolation's (within the same bound), over the last
`RECENT_TICKS` (an exponential weighting), and where the model has done worse, that
extrapolation predicts until the model does better again. A window is fitted on the past:
when the load's behaviour changes under it (a lever flattens a swing or lets it through, a
job's racks ramp), a model fitted on a swing goes on predicting that swing, a change as
large as the swing's edges every tick, until a fit on the new behaviour; the score sees it
within a tick or two (docs/smoothing.md).
Pure: no clock, no I/O; its state is the load's recent history and the model.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_RIDGE = 1e-6  # relative regularisation of the fit (a steady load gives a singular system)
_BETTER = 0.9  # the model is used only where its error is under this share of the linear one's
RECENT_TICKS = 3.0  # the model's forecasts are scored over about this many ticks (exponential weight)


class LoadPredictor:
    def __init__(self, taps: int, window: int, refit: int) -> None:
        """`taps`: past changes the model weighs (0: linear extrapolation only); `window`:
        ticks it is fitted on; `refit`: ticks between fits."""
        if taps < 0 or refit < 1 or (taps > 0 and window < 4 * taps):
            raise ValueError(f"load predictor: taps {taps}, window {window}, refit {refit} "
                             "(taps >= 0, window >= 4 x taps, refit >= 1)")
        self.taps, self.window, self.refit = taps, window, refit
        self._cap = window + taps + 2  # loads kept: the window's changes and the taps before them
        self._buf: FloatArray = np.zeros(2 * self._cap)  # each load written twice: a contiguous view
        self._n = 0  # loads seen
        self._coef: FloatArray | None = None  # the model, newest change first; None: linear
        self._most_w = math.inf  # the steepest change in the window the model was fitted on
        self.fits = self.used = 0  # fits made, and those the model won (for tests and status)
        # the last tick's forecasts of this tick's change (the model's, linear extrapolation's), and
        # their recent squared errors: the model predicts only while its score is no worse
        self._next_model_w = self._next_linear_w = math.nan
        self._score_model = self._score_linear = 0.0
        self.distrusted = 0  # ticks the fitted model did worse than linear extrapolation (for tests and status)

    def reset(self) -> None:
        """A gap in the samples (the loop stood down): the history no longer joins up."""
        self._n, self._coef, self._most_w = 0, None, math.inf
        self._next_model_w = self._next_linear_w = math.nan
        self._score_model = self._score_linear = 0.0

    @property
    def modelled(self) -> bool:
        """Whether the fitted model (not linear extrapolation) predicts now."""
        return self._coef is not None and self._score_model <= self._score_linear

    def _history(self, count: int) -> FloatArray:
        """The last `count` loads, oldest first."""
        end = self._n % self._cap + self._cap
        return self._buf[end - count:end]

    def add(self, load_w: float) -> None:
        if not math.isfinite(load_w):
            return
        if self._n > 0 and math.isfinite(self._next_model_w):
            change = load_w - float(self._history(1)[0])
            keep = math.exp(-1.0 / RECENT_TICKS)
            self._score_model = keep * self._score_model + (change - self._next_model_w) ** 2
            self._score_linear = keep * self._score_linear + (change - self._next_linear_w) ** 2
        i = self._n % self._cap
        self._buf[i] = self._buf[i + self._cap] = load_w
        self._n += 1
        if self.taps > 0 and self._n % self.refit == 0 and self._n >= 5 * self.taps + 2:
            self._fit()
        # what the model and linear extrapolation each say the next change will be, to score them by
        if self._coef is not None and self._n >= self.taps + 1:
            changes = np.diff(self._history(self.taps + 1))[::-1]
            self._next_model_w = min(self._most_w, max(-self._most_w, float(self._coef @ changes)))
            self._next_linear_w = min(self._most_w, max(-self._most_w, float(changes[0])))
            if self._score_model > self._score_linear:
                self.distrusted += 1
        else:  # no model: nothing to score, and a model fitted later starts with a clean record
            self._next_model_w = self._next_linear_w = math.nan
            self._score_model = self._score_linear = 0.0

    def _fit(self) -> None:
        # the window's changes and the taps before them, or what there is of them yet (at least 4
        # rows a tap: a fresh loop predicts within seconds rather than a window)
        d = np.diff(self._history(min(self._n, self._cap)))
        # rows: the `taps` changes up to j, newest first; target: the change at j + 1
        rows = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(d[:-1], self.taps)[:, ::-1])
        y = d[self.taps:]
        gram = rows.T @ rows
        scale = float(np.trace(gram)) / self.taps
        self.fits += 1
        if not 0.0 < scale < math.inf:  # a load that does not move (or absurd values): nothing to model
            self._coef = None
            return
        try:
            coef = np.asarray(np.linalg.solve(gram + _RIDGE * scale * np.eye(self.taps), rows.T @ y), np.float64)
        except np.linalg.LinAlgError:
            self._coef = None
            return
        err_model = float(np.sum((y - rows @ coef) ** 2))
        err_linear = float(np.sum((y - rows[:, 0]) ** 2))
        if np.all(np.isfinite(coef)) and err_model < _BETTER * err_linear:
            self._coef, self._most_w = coef, float(np.max(np.abs(d)))
            self.used += 1
        else:
            self._coef = None

    def ahead_w(self, lead: float) -> float:
        """The load `lead` ticks after the last one added (the last one where none can be
        predicted yet)."""
        if self._n == 0:
            return math.nan
        last = float(self._history(1)[0])
        if self._n < 2 or lead <= 0.0:
            return last
        coef = self._coef
        if coef is None or self._n < self.taps + 1 or not self.modelled:
            prev = float(self._history(2)[0])
            # a model set aside for doing worse still bounds the step: a change steeper than any in its
            # window (a step the lever let through) is not carried on
            step = last - prev if coef is None else min(self._most_w, max(-self._most_w, last - prev))
            return last + lead * step
        changes = np.diff(self._history(self.taps + 1))[::-1]  # newest first
        level, left = last, lead
        while left > 0.0:  # the model run forward, a tick at a time (the last one in part)
            step = min(self._most_w, max(-self._most_w, float(coef @ changes)))
            level += step * min(left, 1.0)
            changes = np.concatenate(([step], changes[:-1]))
            left -= 1.0
        return level
