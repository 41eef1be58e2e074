"""Smoothing live: the controller's fast loop against the simulated site's training swings,
over real Modbus and MQTT on loopback, in real time."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from ems.clock import ScaledClock
from ems.operator.metrics import ControllerMetrics
from tests.conftest import free_port, running_controller, running_site, training_site, wait_for

pytestmark = pytest.mark.integration


def _site(make_site, url: str, **policies):
    return training_site(make_site, url, **policies)


async def _sample(site, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    grid, without = [], []
    end = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < end:
        grid.append(site.plant.meter.grid_power_w)
        without.append(site.plant.grid_without_battery_w)
        await asyncio.sleep(0.02)
    return np.array(grid), np.array(without)


async def test_the_fast_loop_keeps_the_swing_off_the_grid(broker, make_site) -> None:
    cfg = _site(make_site, broker.url, gpu=False)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        assert ctl.smoother is not None
        await wait_for(lambda: ctl.smoother is not None and ctl.smoother.owns_setpoints and ctl.smoother.ticks > 40,
                       timeout_s=10)
        await asyncio.sleep(3.0)  # the grid target settles
        grid, without = await _sample(site, 6.0)
        assert np.std(without) > 80e3  # the racks do swing
        assert np.std(grid) < 0.35 * np.std(without)  # and the grid sees a fraction of it
        status = ctl.last.status if ctl.last is not None else {}
        assert status["smoothing"]["reason"] in ("SMOOTHING_ACTIVE", "SMOOTHING_CLIPPED")
        sm = status["smoothing"]
        assert sm["swing_w"] > 150e3
        assert sm["grid_band_rms_w"] < 0.5 * sm["load_band_rms_w"]  # what the dashboard shows, measured live
        text = ControllerMetrics(ctl.published).render().decode()  # and the metrics
        band = {name: float(v) for name, v in re.findall(r"^(ems_(?:grid|load)_band_rms_watts) (\S+)$", text, re.M)}
        assert set(band) == {"ems_grid_band_rms_watts", "ems_load_band_rms_watts"}
        assert band["ems_grid_band_rms_watts"] < band["ems_load_band_rms_watts"]
        lo_w, hi_w = sm["ramp"]["allowed_w"]
        assert hi_w - lo_w <= 2 * sm["ramp"]["limit_w"] and lo_w < np.mean(grid) < hi_w
        assert ctl.smoother.write_failures == 0
    assert all(u.setpoint_w == 0.0 for u in site.plant.units.values())  # stopped: the fast loop too
    assert site.plant.summary()["heartbeat_timeouts"] == 0


async def test_the_live_loop_learns_the_swing_and_answers_it_ahead(broker, make_site) -> None:
    """The fast loop fits its predictor on the load it reads over Modbus (a short history here so
    the test need not wait 30 s): the model of the periodic swing wins over extrapolation, and
    the grid's band RMS, as the loop measures it, is a small share of the load's (about 4 % on
    this machine; extrapolation alone leaves over 20 %)."""
    cfg = _site(make_site, broker.url, gpu=False, predict_s=0.5, predict_fit_s=4.0)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        fast = ctl.smoother
        assert fast is not None
        await wait_for(lambda: fast.owns_setpoints and fast.predictor.used >= 3, timeout_s=20)
        grid, without = await _sample(site, 6.0)
        assert np.std(without) > 80e3  # the racks do swing
        assert fast.predictor.modelled and fast.predictor.used > 0.5 * fast.predictor.fits
        assert np.std(grid) < 0.35 * np.std(without)
        await asyncio.sleep(4.0)  # the band window (10 s) holds only ticks the model answered
        status = ctl.last.status if ctl.last is not None else {}
        sm = status["smoothing"]
        assert sm["grid_band_rms_w"] < 0.12 * sm["load_band_rms_w"]
        assert sm["predictor"]["model"] is True and sm["predictor"]["model_won"] > 0  # operators see it
        assert fast.write_failures == 0


async def test_when_the_battery_cannot_hold_the_swing_the_gpus_flatten_it(broker, make_site) -> None:
    cfg = _site(make_site, broker.url, gpu=True, gpu_floor_fraction=0.9, gpu_ramp_w_per_s=50_000.0)
    sim = cfg.simulation or {}
    # a battery too small for the swing: 2 x 50 kW against +-200 kW
    cfg = cfg.model_copy(update={"simulation": {**sim, "bess": [{**sim["bess"][0], "rated_power_w": 50_000}]}})
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site:
        async with running_controller(cfg, clock) as ctl:
            await wait_for(lambda: ctl.gpu is not None and ctl.gpu.reason is not None, timeout_s=15)
            await wait_for(lambda: bool((site.plant.racks.floor_w > 0).all()), timeout_s=5)  # every rack told
            await asyncio.sleep(2.0)
            grid, without = await _sample(site, 5.0)
            assert np.std(grid) < 0.5 * np.std(without)
            assert site.plant.racks.filler_wh > 0  # what the floors cost
        # at shutdown the profiles are released with the caps
        await wait_for(lambda: bool((site.plant.racks.floor_w == 0).all()), timeout_s=5)


def _job_site(make_site, url: str, smoothing: dict, job_s: float):
    """16 racks that start and stop one 16-rack job (~480 kW) every `job_s` or so, a battery of
    2 x 50 kW, a ramp limit of 100 kW a minute."""
    return make_site(
        url, rows=2, racks_per_row=8, period_s=0.5,
        policies={"smoothing": {"rate_hz": 20, **smoothing}},
        grid_connection={"ramp_limit_w": 100_000.0, "ramp_window_s": 60.0},
        simulation={"seed": 5, "speed": 1.0, "pue": 1.0,
                    "bess": [{"capacity_wh": 200_000, "rated_power_w": 50_000, "initial_soc": 0.6,
                              "heartbeat_timeout_s": 2.0}],
                    "racks": {"model": "training", "racks_per_job": 16, "swing_low_fraction": 0.9,
                              "swing_high_fraction": 0.9, "mean_job_s": job_s, "mean_idle_s": job_s, "ramp_s": 0.2,
                              "checkpoint_every_s": 1e6, "telemetry_period_s": 0.5}})


async def test_an_announced_job_start_ramps_its_racks(broker, make_site) -> None:
    """The simulator's scheduler announces each job start and stop over MQTT; with a battery of
    2 x 50 kW against a 480 kW step, the controller has the job's racks ramp."""
    cfg = _job_site(make_site, broker.url, {"job_ramp_lead_s": 2.0}, job_s=6.0)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        jobs = ctl.jobs
        assert jobs is not None
        await wait_for(lambda: jobs.book.received >= 1, timeout_s=10)
        await wait_for(lambda: ctl.events.count("job_ramp") >= 1, timeout_s=30)
        [event] = ctl.events.query(kind="job_ramp", limit=1)
        assert event.data["lever"] == "gpu" and event.reason == "JOB_RAMP" and event.data["racks"] == 16
        # 50 % of 100 kW a minute across 16 racks, taken by the simulated racks
        await wait_for(lambda: bool(np.isclose(site.plant.racks.ramp_w_per_s, 0.5 * 100e3 / 60 / 16,
                                               rtol=0.01).all()), timeout_s=5)  # (0.1 W on the wire)
        assert jobs.book.malformed == 0


async def test_job_steps_nothing_can_ramp_are_counted_against_the_ramp_limit(broker, make_site) -> None:
    """No lever (GPU ramps and floors off) and a 2 x 50 kW battery against 480 kW job steps: the
    grid breaks the 100 kW-a-minute limit, and the controller says so (status and metrics)."""
    cfg = _job_site(make_site, broker.url, {"gpu": False, "job_ramp_share": 0.0}, job_s=4.0)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock), running_controller(cfg, clock) as ctl:
        watch = ctl.ramp_watch
        await wait_for(lambda: watch.episodes >= 1 and watch.exceeded_s > 1.0, timeout_s=30)
        assert watch.worst_w > 300e3  # a job's step, most of it
        await wait_for(lambda: ctl.last is not None and ctl.last.status["smoothing"]["ramp"]["measured"][
            "episodes"] >= 1, timeout_s=5)
        measured = ctl.last.status["smoothing"]["ramp"]["measured"]
        assert measured["exceeded_s"] > 0 and measured["worst_w"] > 300e3
        text = ControllerMetrics(ctl.published).render().decode()
        assert "ems_grid_ramp_limit_watts 100000.0" in text
        exceeded = re.search(r"^ems_grid_ramp_exceeded_seconds_total (\S+)$", text, re.M)
        assert exceeded is not None and float(exceeded.group(1)) > 0


async def test_the_filler_load_holds_a_drop_the_battery_cannot_absorb(broker, make_site) -> None:
    """16 racks drop from 90 % to 15 % of 40 kW (480 kW) at once; the battery may charge 100 kW.
    The fast loop has the simulated load bank (over Modbus) burn the rest, so the grid falls
    slowly; a controller that stops tells it 0 W. When the load bank stops answering, the
    battery carries on alone."""
    cfg = make_site(
        broker.url, rows=2, racks_per_row=8, period_s=0.5,
        filler={"port": free_port(), "profile": "filler_v1"},
        policies={"smoothing": {"rate_hz": 20, "gpu": False, "filler": True}},
        grid_connection={"ramp_limit_w": 100_000.0, "ramp_window_s": 60.0},
        simulation={"seed": 5, "speed": 1.0, "pue": 1.0,
                    "bess": [{"capacity_wh": 200_000, "rated_power_w": 50_000, "initial_soc": 0.6,
                              "heartbeat_timeout_s": 2.0}],
                    "filler": {"rated_power_w": 600_000, "response_s": 0.1},
                    "racks": {"model": "steady", "steady_fraction": 0.9, "telemetry_period_s": 0.5},
                    "scenario": [{"at_s": 6.0, "action": "rack_load", "fraction": 0.15}]})
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site:
        filler = site.plant.filler
        assert filler is not None
        async with running_controller(cfg, clock) as ctl:
            await wait_for(lambda: ctl.smoother is not None and ctl.smoother.owns_setpoints, timeout_s=10)
            await wait_for(lambda: site.plant.now_s > 5.5, timeout_s=10)
            before_w = site.plant.meter.grid_power_w
            await wait_for(lambda: site.plant.now_s > 9.0, timeout_s=10)
            grid, without = await _sample(site, 2.0)
            assert before_w - np.mean(without) > 400e3  # the load did drop
            assert before_w - grid.min() < 200e3  # the grid did not
            assert filler.power_w > 100e3 and filler.energy_wh > 0
        assert filler.setpoint_w == 0.0  # stopped while it burned: told 0 W on the way out
        async with running_controller(cfg, clock) as ctl:
            # the load bank stops answering: the fast loop carries on with the battery alone
            fast = ctl.smoother
            assert fast is not None
            await wait_for(lambda: fast.owns_setpoints, timeout_s=10)
            await site.device("filler").stop()
            ticks = fast.ticks
            await wait_for(lambda: fast.filler_read_failures > 10 and fast.ticks > ticks + 10, timeout_s=5)
            assert fast.owns_setpoints and fast.read_failures == 0
