"""LFP battery ageing over the lifetime: the state of health the financials run on.

The model is NREL BLAST-Lite's `Lfp_Gr_250AhPrismatic` (large-format prismatic LFP-graphite
cells, >250 Ah; fitted to the ageing tests of https://doi.org/10.1016/j.est.2023.109042),
ported here because `blast-lite` 1.1.1 pins numpy < 2 and ems pins numpy >= 2. Its
equations and parameters are BLAST-Lite's (Apache-2.0, Copyright (c) 2023 Alliance for
Energy Innovation, LLC); tests/unit/test_ageing.py checks the port against what BLAST-Lite
itself computed (tests/data/blast_lite_lfp_reference.json, recorded by
scripts/record_blast_reference.py).

* calendar fade: q_t = kcal * t_days^0.526, kcal = p1 exp(p2/T) exp(p3 Ua(SoC)/T): faster
  when hot and when charged high (Ua, the graphite anode's potential, falls with SoC);
* cycle fade: q_efc = kcyc * EFC^0.828, kcyc = (p4 + p5 DoD + p6 C-rate)(exp(p7/T) + exp(-p8/T)):
  more per cycle the deeper the cycle and the faster;
* SoH = 1 - q_t - q_efc, both stepped as "power states" over chunks of the SoC series
  (a day, or less where a day holds more than one equivalent full cycle), with the
  stressors of each chunk, as BLAST-Lite does. The same energy is moved as the battery
  fades, so the SoC swings grow by 1/SoH (BLAST-Lite's `is_conserve_energy_throughput`).

The model was fitted on 10-45 °C, DoD 0.8-1 and low C-rates (<= 0.65 C charge, 1 C
discharge); outside that it extrapolates (BLAST-Lite says so too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# BLAST-Lite Lfp_Gr_250AhPrismatic._params_life
P1, P2, P3, PCAL = 8.37e04, -5.21e03, -3.56e03, 0.526
P4, P5, P6, P7, P8, PCYC = 4.38e-08, 1.55e-08, 1.68e-07, 2.19e03, 1.55e05, 0.828
DAY_S = 86_400.0


def anode_potential(soc: FloatArray) -> FloatArray:
    """Graphite's potential vs lithium from SoC (Safari & Delacourt 2011, as in BLAST-Lite)."""
    xa = 8.5e-3 + soc * (0.78 - 8.5e-3)
    out: FloatArray = (0.6379 + 0.5416 * np.exp(-305.5309 * xa) + 0.044 * np.tanh(-(xa - 0.1958) / 0.1088)
                       - 0.1978 * np.tanh((xa - 1.0571) / 0.0854) - 0.6875 * np.tanh((xa + 0.0117) / 0.0529)
                       - 0.0175 * np.tanh((xa - 0.5692) / 0.0875))
    return out


def cycle_rate(dod: float, c_rate: float, temp_k: float) -> float:
    """kcyc: cycle fade coefficient (fade = kcyc * EFC^0.828)."""
    return (P4 + P5 * dod + P6 * c_rate) * (math.exp(P7 / temp_k) + math.exp(-P8 / temp_k))


def _power_state_step(y0: float, dx: float, k: float, p: float) -> float:
    """BLAST-Lite's `_update_power_state`: advance y = k x^p by dx from y0."""
    if dx == 0 or k <= 0:
        return 0.0
    if y0 == 0:
        return float(k * dx ** p)
    return float(k * p * (y0 / k) ** ((p - 1) / p) * dx)


def _trapz(y: FloatArray, x: FloatArray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


@dataclass
class LfpAgeing:
    """The state of one battery: calendar and cycle fade so far, time and cycles so far."""

    q_loss_cal: float = 0.0
    q_loss_cyc: float = 0.0
    days: float = 0.0
    efc: float = 0.0

    @property
    def soh(self) -> float:
        return 1.0 - self.q_loss_cal - self.q_loss_cyc

    def chunk(self, t_s: FloatArray, soc: FloatArray, temp_c: FloatArray) -> None:
        """Age over one chunk of the SoC series (t_s in seconds, SoC as a fraction)."""
        q = self.soh
        d_days = (t_s[-1] - t_s[0]) / DAY_S
        d_efc = float(np.sum(np.abs(np.diff(soc)))) / 2.0 * q
        dod = float(soc.max() - soc.min())
        rate = np.abs(np.diff(soc) / np.diff(t_s / 3600.0))
        rate[rate < 1e-2] = 0.0  # storage, not cycling
        # as BLAST-Lite: the rates integrated over t_days[1:], per day of the chunk, in C of the faded capacity
        c_rate = (_trapz(rate, t_s[1:] / DAY_S) / d_days if rate.size > 1 else 0.0) * q
        temp_k = temp_c + 273.15
        kcal_t = abs(P1) * np.exp(P2 / temp_k) * np.exp(P3 * anode_potential(soc) / temp_k)
        kcyc_t = (P4 + P5 * dod + P6 * c_rate) * (np.exp(P7 / temp_k) + np.exp(-P8 / temp_k))
        span = t_s[-1] - t_s[0]
        kcal = _trapz(kcal_t, t_s) / span
        kcyc = _trapz(kcyc_t, t_s) / span
        self.q_loss_cal += _power_state_step(self.q_loss_cal, d_days, kcal, PCAL)
        self.q_loss_cyc += _power_state_step(self.q_loss_cyc, d_efc, kcyc, PCYC)
        self.days += d_days
        self.efc += d_efc


def _chunks(soc: FloatArray, per_day: int) -> list[tuple[int, int]]:
    """Chunk bounds (inclusive ends): a day, split where it holds more than one full cycle."""
    out: list[tuple[int, int]] = []
    n = soc.size - 1
    efc = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(soc)))]) / 2.0
    a = 0
    while a < n:
        b = min(a + per_day, n)
        over = np.nonzero(efc[a + 1: b + 1] - efc[a] > 1.0)[0]
        if over.size:
            b = a + 1 + int(over[0])
        out.append((a, b))
        a = b
    return out


def _rescale(soc: FloatArray, factor: float) -> FloatArray:
    """The chunk's swings scaled by `factor` from its first value, within [0, 1]."""
    out: FloatArray = np.clip(soc[0] + (soc - soc[0]) * factor, 0.0, 1.0)
    return out


@dataclass(frozen=True)
class AgeingPath:
    """The battery over its life with one year's dispatch repeated."""

    soh_by_year: tuple[float, ...]  # SoH at the end of year 1, 2, ... (after any replacement: the new one's)
    soh_before_replacement: tuple[float, ...]  # SoH at the end of each year before a replacement that year
    efc_per_year: float  # of the first year
    replacement_years: tuple[int, ...]  # years at whose end the battery was replaced (SoH below end of life)
    calendar_share_10y: float  # of the fade after 10 years, the calendar part
    soh_10y: float  # SoH after 10 years without any replacement

    def capacity_by_year(self) -> tuple[float, ...]:
        """Mean usable energy of each year relative to new (year n: mean of its start and end)."""
        starts = [1.0] + [1.0 if (n in self.replacement_years) else s
                          for n, s in enumerate(self.soh_by_year[:-1], start=1)]
        return tuple((a + b) / 2.0 for a, b in zip(starts, self.soh_before_replacement, strict=True))


def _one_year(cell: LfpAgeing, t: FloatArray, soc: FloatArray, temp: FloatArray,
              bounds: list[tuple[int, int]]) -> None:
    for a, b in bounds:
        cell.chunk(t[a: b + 1], _rescale(soc[a: b + 1], 1.0 / max(cell.soh, 0.05)), temp[a: b + 1])


def simulate_years(soc_year: FloatArray, step_s: float, years: int, temperature_c: float | FloatArray = 25.0,
                   end_of_life_soh: float | None = None) -> AgeingPath:
    """Age a new battery over `years` of the year's SoC series (SoC at each step's end, the
    first value the start) repeated; replaced by a new one at the end of a year whose SoH
    fell below `end_of_life_soh`. `soh_10y` is a battery never replaced, after 10 years."""
    soc = np.clip(np.asarray(soc_year, dtype=np.float64), 0.0, 1.0)
    if soc.size < 3:
        raise ValueError("the SoC series needs at least 3 points")
    temp = np.broadcast_to(np.asarray(temperature_c, dtype=np.float64), soc.shape)
    t: FloatArray = np.arange(soc.size, dtype=np.float64) * float(step_s)
    bounds = _chunks(soc, max(1, round(DAY_S / step_s)))
    battery = LfpAgeing()
    soh_end: list[float] = []
    soh_before: list[float] = []
    replaced: list[int] = []
    efc_first = 0.0
    for year in range(1, years + 1):
        _one_year(battery, t, soc, temp, bounds)
        if year == 1:
            efc_first = battery.efc
        soh_before.append(battery.soh)
        if end_of_life_soh is not None and battery.soh < end_of_life_soh:
            replaced.append(year)
            battery = LfpAgeing()
        soh_end.append(battery.soh)
    ref = LfpAgeing()
    for _ in range(10):
        _one_year(ref, t, soc, temp, bounds)
    fade = ref.q_loss_cal + ref.q_loss_cyc
    return AgeingPath(tuple(soh_end), tuple(soh_before), efc_first, tuple(replaced),
                      ref.q_loss_cal / fade if fade > 0 else 1.0, ref.soh)


def wear_cost_per_kwh(dod: float, *, c_rate: float, temperature_c: float, efc_per_year: float,
                      lifetime_years: float, replacement_cost_per_kwh: float, end_of_life_soh: float) -> float:
    """What a kWh discharged in cycles of this depth costs in battery life: the cycle fade
    it causes (the model's fade per equivalent full cycle, averaged over a life of
    `efc_per_year` x `lifetime_years` cycles at this depth) as a share of the fade the
    battery may lose before end of life, times the replacement cost per usable kWh."""
    efc_life = max(efc_per_year * lifetime_years, 1.0)
    k = cycle_rate(dod, c_rate, temperature_c + 273.15)
    fade_per_efc = float(k * efc_life ** (PCYC - 1.0))
    return replacement_cost_per_kwh * fade_per_efc / (1.0 - end_of_life_soh)


def daily_dod(soc: FloatArray, step_s: float) -> FloatArray:
    """Each day's SoC swing (max - min): the depth its cycles reach."""
    per_day = max(1, round(DAY_S / step_s))
    n = (soc.size // per_day) * per_day
    if n == 0:
        return np.array([float(soc.max() - soc.min())])
    days = soc[:n].reshape(-1, per_day)
    out: FloatArray = days.max(axis=1) - days.min(axis=1)
    return out
