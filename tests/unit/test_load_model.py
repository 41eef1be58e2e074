"""The learned load forecast (ems/load_model.py), its evaluation (ems/forecast_eval.py) and
the planner's use of it (ems/planning/builder.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from ems.forecast import DAY_S, WEEK_S, ForecastInputError
from ems.forecast_eval import afternoon_mask, local_seconds, walk_forward
from ems.load_model import LoadModel, TemperatureSeries, profile_all

STEP_S = 3600.0
PER_DAY = int(DAY_S / STEP_S)
PER_WEEK = int(WEEK_S / STEP_S)
START_S = local_seconds(datetime(2018, 1, 1))  # a Monday


def hot_days_load(n_days: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A site whose afternoon depends on the day's heat, which shows from the morning on:
    a base plus cooling that follows a temperature random from day to day."""
    rng = np.random.default_rng(seed)
    day_temp = rng.uniform(15.0, 38.0, n_days)
    h = np.arange(n_days * PER_DAY) % PER_DAY
    temp = np.repeat(day_temp, PER_DAY) + 6.0 * np.sin(np.pi * np.clip(h - 6, 0, 12) / 12)
    cooling = 40e3 * np.maximum(temp - 18.0, 0.0)
    weekend = ((np.arange(n_days * PER_DAY) // PER_DAY) % 7) >= 5
    base = np.where(weekend, 1.0e6, 1.5e6) + 2e5 * np.sin(np.pi * np.clip(h - 7, 0, 12) / 12)
    return base + cooling, temp


def test_profile_all_is_the_mean_of_the_same_step_in_the_weeks_before() -> None:
    x = np.arange(3 * PER_WEEK, dtype=float)
    prof = profile_all(x, x.size + 5, PER_WEEK, 4)
    assert np.isnan(prof[PER_WEEK - 1])  # no week before it
    assert prof[PER_WEEK + 3] == x[3]
    t = 3 * PER_WEEK + 2  # beyond the series: its weeks are known
    assert prof[t] == pytest.approx((x[t - PER_WEEK] + x[t - 2 * PER_WEEK] + x[t - 3 * PER_WEEK]) / 3)


def test_no_model_before_enough_history_then_a_forecast_with_p90_above_p50() -> None:
    load, _ = hot_days_load(70)
    model = LoadModel(STEP_S, horizon_steps=PER_DAY, max_iter=60)
    assert not model.update(load[: 10 * PER_DAY], START_S + 10 * DAY_S)  # under a week + 7 days of rows
    assert model.forecast(load[: 10 * PER_DAY], START_S + 10 * DAY_S, 24) is None
    end = 60 * PER_DAY
    assert model.update(load[:end], START_S + end * STEP_S)
    q = model.forecast(load[:end], START_S + end * STEP_S, PER_DAY)
    assert q is not None and q.p50_w.shape == (PER_DAY,)
    assert np.all(q.p90_w >= q.p50_w)
    assert not model.due(START_S + end * STEP_S + DAY_S)  # refits weekly, not at every plan
    with pytest.raises(ForecastInputError):
        model.forecast(np.full(end, np.nan), START_S + end * STEP_S, 4)


def test_the_day_so_far_and_the_temperature_beat_the_same_hour_of_week() -> None:
    """On a load driven by each day's heat, the learned P50 beats the naive forecast on
    weekday afternoons, more so with the temperature, and its P90 covers most targets."""
    n_days = 84
    load, temp = hot_days_load(n_days)
    series = TemperatureSeries(START_S, STEP_S, temp)
    first = 28 * PER_DAY
    plain = walk_forward(load, START_S, STEP_S, first, horizon_steps=PER_DAY, issue_every_s=3 * 3600.0,
                         max_iter=40)
    warm = walk_forward(load, START_S, STEP_S, first, horizon_steps=PER_DAY, issue_every_s=3 * 3600.0,
                        temperature=series, max_iter=40)
    assert plain.skill_vs_naive > 0.25
    assert warm.skill_vs_naive > plain.skill_vs_naive + 0.1  # the day's heat is known ahead
    assert warm.p90_coverage > 0.75
    assert plain.fits >= 7


def test_afternoon_window_is_weekdays_12_to_20() -> None:
    monday_noon = START_S + 12 * 3600.0
    saturday_noon = START_S + 5 * DAY_S + 12 * 3600.0
    got = afternoon_mask(np.array([monday_noon, monday_noon + 8 * 3600.0, monday_noon - 3600.0, saturday_noon]))
    assert got.tolist() == [True, False, False, False]


def test_temperature_series_is_nan_outside_its_span() -> None:
    s = TemperatureSeries(START_S, 3600.0, np.array([10.0, 20.0]))
    got = s.at(np.array([START_S - 1.0, START_S + 10.0, START_S + 3600.0, START_S + 7200.0]))
    assert np.isnan(got[0]) and got[1] == 10.0 and got[2] == 20.0 and np.isnan(got[3])


def test_forecast_eval_cli_scores_a_load_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ems.cli import main

    load, _ = hot_days_load(60)
    csv = tmp_path / "load.csv"
    from datetime import timedelta

    t0 = datetime(2018, 1, 1)
    csv.write_text("timestamp,kW\n" + "\n".join(f"{(t0 + timedelta(hours=i)).isoformat()},{v / 1000:.3f}"
                                                  for i, v in enumerate(load)) + "\n")
    out = tmp_path / "scores.json"
    rc = main(["forecast-eval", "--load", str(csv), "--step-s", "3600", "--days", "14", "--json", str(out)])
    assert rc == 0
    import json

    got = json.loads(out.read_text())
    assert got["targets"] > 0 and 0.0 < got["p90_coverage"] <= 1.0
    # the coverage is printed in % and so is its mark (it read "81.3 % (0.9 is right)")
    assert f"P90 coverage {100 * got['p90_coverage']:.1f} % (90 % is right)" in capsys.readouterr().out
    assert got["mae_model_kw"] > 0


def test_forecast_eval_cli_names_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ems.cli import main

    bad = tmp_path / "load.csv"
    bad.write_text("timestamp,kW\n2018-01-01T00:00,1\n2018-01-01T01:00,x\n")
    assert main(["forecast-eval", "--load", str(bad)]) == 2
    assert "load.csv" in capsys.readouterr().err


def test_forecast_eval_refuses_more_days_than_the_file_has(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """60 days, the first 28 history: --days 40 scored the 32 there were and said nothing."""
    from datetime import timedelta

    from ems.cli import main

    load, _ = hot_days_load(60)
    csv = tmp_path / "load.csv"
    t0 = datetime(2018, 1, 1)
    csv.write_text("".join(f"{(t0 + timedelta(hours=i)).isoformat()},{v / 1000:.3f}\n" for i, v in enumerate(load)))
    assert main(["forecast-eval", "--load", str(csv), "--step-s", "3600", "--days", "40"]) == 2
    assert f"--days 40: {csv} has 32 days to score after its first 28 (history)" in capsys.readouterr().err


# --- the planner's use ----------------------------------------------------------------------
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
URDB = SHARED / "tariffs" / "sam_urdbv7.json"


class _NoPeaks:
    def peak_kw(self, key: object) -> float:
        return 0.0

    def tou_peak_kw(self, key: object) -> float:
        return 0.0


def _builder(**changes: object):  # type: ignore[no-untyped-def]
    from ems.planning.builder import PlanBuilder, PlannerSettings
    from ems.tariff import load_urdb

    if not URDB.exists():
        pytest.skip("shared data not present")
    s = PlannerSettings(step_s=900.0, horizon_steps=96, soc_min=0.1, soc_max=0.95, reserve_soc=0.2,
                        charge_efficiency=0.96, discharge_efficiency=0.96, wear_cost_per_kwh=0.01, **changes)
    return PlanBuilder(load_urdb(URDB), s)


def test_the_planner_plans_on_the_learned_p50_or_holds_its_cap_against_the_p90() -> None:
    from ems.planning.builder import BatteryNow

    load_h, _ = hot_days_load(45)
    load = np.repeat(load_h, 4)  # 15-min steps
    builders = {"profile": _builder(), "learned": _builder(forecast_model="learned"),
                "p90": _builder(forecast_model="learned", cap_on_p90=True),
                "envelope": _builder(forecast_model="learned_envelope")}
    end_s = START_S + load.size * 900.0 + 12 * 3600.0  # plan from noon of the next day
    for b in builders.values():
        for k, w in enumerate(np.concatenate([load, load[-48:]])):
            b.observe(START_S + (k + 1) * 900.0, 900.0, float(w))
    battery = BatteryNow(0.5, 4e6, 2e6, 2e6)
    net = {k: b.request(end_s, battery, _NoPeaks()).problem.net_load_w for k, b in builders.items()}
    assert builders["learned"].model is not None and builders["learned"].model.fits == 1
    assert not np.allclose(net["learned"], net["profile"])
    assert np.all(net["p90"] >= net["learned"] - 1e-6)
    assert net["p90"].max() > net["learned"].max()  # a higher cap to hold
    np.testing.assert_allclose(net["envelope"], np.maximum(net["learned"], net["profile"]))


def test_cap_on_p90_needs_the_learned_model() -> None:
    from ems.backtest.config import parse_backtest_config
    from ems.model.errors import ConfigError

    site = Path(__file__).resolve().parents[2] / "config" / "backtest-site.yaml"
    from ems.backtest.config import load_backtest_config

    data = load_backtest_config(site).model_dump(mode="json", exclude_none=True)
    data["policies"]["arbitrage"]["cap_on_p90"] = True
    with pytest.raises(ConfigError, match="cap_on_p90"):
        parse_backtest_config(data)
    data["policies"]["arbitrage"]["forecast_model"] = "learned"
    assert parse_backtest_config(data).policies.arbitrage is not None


def test_a_bad_temperature_file_names_the_field(tmp_path: Path) -> None:
    from ems.model.errors import ConfigError
    from ems.planning.settings import load_temperature

    bad = tmp_path / "t.csv"
    bad.write_text("timestamp,C\n2018-01-01T00:00,20\n2018-01-01T01:00,hot\n")
    with pytest.raises(ConfigError, match="temperature_csv"):
        load_temperature(bad)


def test_the_p90_widens_when_the_week_since_the_last_fit_ran_wider_than_it_said() -> None:
    rng = np.random.default_rng(3)
    n = 8 * PER_WEEK
    h = np.arange(n) % PER_DAY
    base = 1.5e6 + 2e5 * np.sin(np.pi * np.clip(h - 7, 0, 12) / 12)
    noise = np.where(np.arange(n) < 7 * PER_WEEK, 0.01, 0.15)  # the last week far noisier
    load = base * (1.0 + noise * rng.standard_normal(n))
    model = LoadModel(STEP_S, horizon_steps=PER_DAY, max_iter=40)
    model.fit(load[: 7 * PER_WEEK], START_S + 7 * WEEK_S)
    assert model.p90_shift == 0.0  # nothing to learn from before a first model
    model.fit(load, START_S + 8 * WEEK_S)
    assert model.p90_shift > 0.03  # the quiet model's P90 missed the noisy week: widened
