"""A site whose BMS, PCS and meter all speak SunSpec: the simulator serves them, the
controller peak-shaves through them as it does through the reference maps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ems.broker import free_port
from ems.clock import ScaledClock
from ems.config import SiteConfig, load_config
from ems.devices import check_site_profiles
from ems.model.errors import ConfigError
from ems.model.readings import PcsMode
from ems.model.reasons import Reason
from sim_devices.sunspec_server import SimulatedSunSpecDevice
from tests.conftest import SHAVING_CAP_W, running_controller, running_site, shaving_site, training_site, wait_for

pytestmark = pytest.mark.integration

CAP_W = SHAVING_CAP_W
HIGH_W = 32 * 40_000 * 0.9 * 1.25  # 1.44 MW
ROOT = Path(__file__).resolve().parents[2]


def _sunspec(cfg: SiteConfig) -> SiteConfig:
    """The same site with every BMS, PCS and the meter speaking SunSpec."""
    data = cfg.model_dump(mode="json")
    data["meter"]["profile"] = "sunspec_meter"
    data["meter"]["average_s"] = None
    for u in data["bess_units"]:
        u["bms"]["profile"] = "sunspec_bms"
        u["pcs"]["profile"] = "sunspec_pcs"
    return SiteConfig.model_validate(data)


async def test_a_sunspec_site_is_peak_shaved(broker, make_site) -> None:
    cfg = _sunspec(shaving_site(make_site, broker.url, step_at_s=1.0))
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        assert all(isinstance(d, SimulatedSunSpecDevice) for d in site.devices)
        plant = site.plant
        await wait_for(lambda: plant.now_s >= 1.0 and plant.grid_without_battery_w > CAP_W)
        step_at = plant.now_s
        await wait_for(lambda: plant.meter.grid_power_w <= CAP_W * 1.005, timeout_s=3.0)
        samples = []
        while plant.now_s < step_at + 3.0:
            await asyncio.sleep(0.02)
            if plant.now_s > step_at + 1.5:
                samples.append(plant.meter.grid_power_w)
        assert max(samples) <= CAP_W * 1.01
        assert plant.battery_power_w == pytest.approx(HIGH_W - CAP_W, rel=0.05)
        assert all(u.power_w > 100_000 and u.mode is PcsMode.GRID_FOLLOWING for u in plant.units.values())
        assert ctl.last is not None and ctl.last.step.reason is Reason.PEAK_SHAVING_ACTIVE
        # the heartbeat is 704's reversion timer, restarted every period: no unit reverted
        assert all(p.reversions == 0 for p in site.sunspec_pcs.values())
        assert all(p.deadline_s is not None for p in site.sunspec_pcs.values())
        # and each BMS sees the controller's heartbeat move (802 CtrlHb)
        beats = {uid: b.ctrl_hb for uid, b in site.sunspec_bms.items()}
        await wait_for(lambda: all(b.ctrl_hb != beats[uid] for uid, b in site.sunspec_bms.items()))


async def test_a_stopped_controller_leaves_the_sunspec_pcs_to_revert(broker, make_site) -> None:
    cfg = _sunspec(shaving_site(make_site, broker.url, step_at_s=0.2))
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site:
        # the profile's reversion time is 10 s: a faster one for the test, as a site file would choose
        async with running_controller(cfg, clock) as ctl:
            for u in ctl.reader.units:
                u.pcs.profile = u.pcs.profile.model_copy(update={"reversion_s": 1})  # type: ignore[attr-defined]
            await wait_for(lambda: site.plant.battery_power_w > 100_000)
            ctl.actuators.zero_all = _no_zeroing  # type: ignore[method-assign] # a controller that dies
        await wait_for(lambda: all(p.reversions == 1 for p in site.sunspec_pcs.values()), timeout_s=3.0)
        await wait_for(lambda: abs(site.plant.battery_power_w) < 1_000, timeout_s=3.0)


async def _no_zeroing() -> list[str]:
    return []


async def test_the_smoothing_loop_runs_on_sunspec_devices(broker, make_site) -> None:
    """The fast loop reads the SunSpec meter (203 W) and PCS (701 W) and writes 704 WSet at its own
    rate, the training swing kept off the grid as on a register-map site."""
    import numpy as np

    cfg = training_site(make_site, broker.url, gpu=False)
    cfg = _sunspec(cfg)
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        fast = ctl.smoother
        assert fast is not None
        await wait_for(lambda: fast.owns_setpoints and fast.ticks > 40, timeout_s=10)
        await asyncio.sleep(3.0)
        grid, without = [], []
        for _ in range(250):
            grid.append(site.plant.meter.grid_power_w)
            without.append(site.plant.grid_without_battery_w)
            await asyncio.sleep(0.02)
        assert np.std(without) > 80e3 and np.std(grid) < 0.5 * np.std(without)
        assert fast.write_failures == 0 and fast.read_failures < 5
        writes = [w for p in site.devices if isinstance(p, SimulatedSunSpecDevice) for w in p.writes
                  if w.register == "704.WSet"]
        assert len(writes) > 100  # the ticks' writes, far more than one a period


def test_the_sunspec_example_site_checks() -> None:
    cfg = load_config(ROOT / "config" / "sunspec-site.yaml")
    profiles = check_site_profiles(cfg, "sunspec-site.yaml")
    names = {p.name for p in profiles.values()}
    assert names == {"sunspec_meter", "sunspec_bms", "sunspec_pcs_accelerated", "sunspec_pv"}


def test_failover_with_a_sunspec_pcs_is_refused(make_site) -> None:
    cfg = _sunspec(make_site("mqtt://127.0.0.1:1883", failover={"enabled": True}))
    with pytest.raises(ConfigError, match=r"failover: (meter|bess_units\.0\.pcs) speaks SunSpec"):
        check_site_profiles(cfg, "site.yaml")


@pytest.mark.parametrize("pv_profile", ["sunspec_pv", "pv_v1"])
async def test_pv_is_metered_and_curtailed_when_export_is_not_allowed(broker, make_site, pv_profile) -> None:
    """800 kW of racks under 2 MW of midday PV, the batteries full (soc_max): the site would
    export 1.2 MW; with no export allowed the PV inverter is limited (SunSpec: through 704, with
    the rest of the site SunSpec too; a register map: its power_limit, beside reference maps)."""
    make = _sunspec if pv_profile == "sunspec_pv" else (lambda c: c)
    cfg = make(make_site(
        broker.url, racks={"rows": 4, "racks_per_row": 8, "nameplate_w": 40_000.0},
        pv={"port": free_port(), "profile": pv_profile},
        grid_connection={"export_limit_w": 0.0},
        policies={"battery": {"soc_min": 0.1, "soc_max": 0.95}},
        simulation={"seed": 3, "speed": 1.0, "pue": 1.25, "start_hour": 12.0,
                    "bess": [{"capacity_wh": 1_000_000, "rated_power_w": 500_000, "initial_soc": 0.95,
                              "ramp_w_per_s": 2_000_000, "heartbeat_timeout_s": 2.0}],
                    "racks": {"model": "steady", "steady_fraction": 0.5, "telemetry_period_s": 0.2},
                    "pv": {"peak_w": 2_000_000.0}}))
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl:
        plant = site.plant
        assert plant.pv_available_w > 1_900_000
        await wait_for(lambda: plant.pv_limit_w is not None and plant.meter.grid_power_w > -20_000, timeout_s=5.0)
        await asyncio.sleep(0.5)
        assert plant.meter.grid_power_w > -20_000  # held at (about) zero export
        assert plant.pv_w < 1_000_000  # the PV gives what the site uses
        last = ctl.last
        assert last is not None and last.snapshot.pv is not None
        assert last.snapshot.pv.power_w == pytest.approx(plant.pv_w, abs=50_000)
        assert last.snapshot.gross_load_w is not None
        assert last.snapshot.gross_load_w == pytest.approx(800_000, rel=0.1)  # the racks' load, PV apart
        assert last.step.pv_limit_w is not None
        pv_status = last.status["pv"]  # as published on PREFIX/site/status
        assert pv_status["limit_w"] == pytest.approx(last.step.pv_limit_w, abs=0.1)
        assert pv_status["rated_power_w"] == 2_000_000.0


def test_a_bad_sunspec_profile_names_the_slot_and_field(make_site, tmp_path) -> None:
    bad = tmp_path / "pcs.yaml"
    bad.write_text("name: x\nprotocol: sunspec\nkind: pcs\nwrite_function_code: 5\n")
    data = _sunspec(make_site("mqtt://127.0.0.1:1883")).model_dump(mode="json")
    data["bess_units"][0]["pcs"]["profile"] = str(bad)
    with pytest.raises(ConfigError, match=r"bess_units\.0\.pcs: SunSpec profile .*write_function_code"):
        check_site_profiles(SiteConfig.model_validate(data), "site.yaml")
    data["bess_units"][0]["pcs"]["profile"] = "sunspec_meter"
    with pytest.raises(ConfigError, match=r"bess_units\.0\.pcs: .* is a meter profile; this slot needs a pcs"):
        check_site_profiles(SiteConfig.model_validate(data), "site.yaml")
