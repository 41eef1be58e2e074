"""Shared fixtures: a private MQTT broker and site configs on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ems.broker import Broker, free_port, private_broker
from ems.clock import ScaledClock
from ems.config import SiteConfig, parse_config
from ems.control_loop import Controller
from sim_devices.config import parse_sim_config
from sim_devices.site import SimulatedSite


@pytest.fixture(scope="session", autouse=True)
def _shared_nats_left_clean() -> Any:
    """At the end of the session, the streams and buckets the tests made on the shared NATS go."""
    yield
    from tests.nats_peer import NAMED, delete_named_streams

    if NAMED:
        with contextlib.suppress(Exception):  # NATS gone, or never there: nothing to clean
            asyncio.run(asyncio.wait_for(delete_named_streams(), 20))


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    """Mosquitto on a free port when the binary exists, else the embedded amqtt broker."""
    async with private_broker("auto") as b:
        yield b


def site_dict(mqtt_url: str, *, units: int = 2, rows: int = 2, racks_per_row: int = 4,
              period_s: float = 0.1, **overrides: Any) -> dict[str, Any]:
    """A small site on free ports: steady rack load, so physics is deterministic."""
    d: dict[str, Any] = {
        "site": "test-site",
        "control": {"period_s": period_s, "setpoint_deadband_w": 500.0},
        "mqtt": {"url": mqtt_url, "topic_prefix": f"ems/test{free_port()}"},
        "meter": {"port": free_port(), "profile": "meter_v1"},
        "bess_units": [
            {"id": f"bess-{i + 1}", "bms": {"port": free_port(), "profile": "bms_v1"},
             "pcs": {"port": free_port(), "profile": "pcs_v1"}}
            for i in range(units)
        ],
        "racks": {"rows": rows, "racks_per_row": racks_per_row, "nameplate_w": 40_000.0},
        "policies": {"battery": {"soc_min": 0.1, "soc_max": 0.95}},
        "simulation": {
            "seed": 3, "speed": 1.0, "pue": 1.25,
            "bess": [{"capacity_wh": 1_000_000, "rated_power_w": 500_000, "initial_soc": 0.7,
                      "ramp_w_per_s": 2_000_000, "heartbeat_timeout_s": 1.0}],
            "racks": {"model": "steady", "steady_fraction": 0.5, "telemetry_period_s": 0.2,
                      "cap_response_s": 0.05},
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key] = {**d[key], **value}
        else:
            d[key] = value
    return d


SHAVING_CAP_W = 1_000_000.0


def shaving_site(make_site: Callable[..., SiteConfig], url: str, *, step_at_s: float = 0.5,
                 period_s: float = 0.1, **kw: Any) -> SiteConfig:
    """32 racks of 40 kW at 50 % (800 kW with PUE 1.25), stepping to 90 % (1.44 MW) at
    `step_at_s`: above the 1 MW import cap; 2 BESS units of 500 kW to shave it."""
    return make_site(
        url, racks={"rows": 4, "racks_per_row": 8, "nameplate_w": 40_000.0}, period_s=period_s,
        policies={"battery": {"soc_min": 0.1, "soc_max": 0.95},
                  "peak_shaving": {"grid_import_cap_w": SHAVING_CAP_W, "recharge_below_w": 600_000.0}},
        simulation={
            "seed": 3, "speed": 1.0, "pue": 1.25,
            "bess": [{"capacity_wh": 1_000_000, "rated_power_w": 500_000, "initial_soc": 0.7,
                      "ramp_w_per_s": 2_000_000, "heartbeat_timeout_s": 1.0}],
            "racks": {"model": "steady", "steady_fraction": 0.5, "telemetry_period_s": 0.2},
            "scenario": [{"at_s": step_at_s, "action": "rack_load", "fraction": 0.9}],
        }, **kw)


def failover_site(make_site: Callable[..., SiteConfig], url: str, **kw: Any) -> SiteConfig:
    """32 racks at 50 % on a 1.3 MW cap, a genset, failover armed every period (0.1 s), seamless
    transfer; 500 kW units (`units=` more in the plant)."""
    return make_site(
        url, racks={"rows": 4, "racks_per_row": 8, "nameplate_w": 40_000.0}, period_s=0.1,
        genset={"port": free_port(), "profile": "genset_v1"},
        policies={"battery": {"soc_min": 0.1, "soc_max": 0.95},
                  "peak_shaving": {"grid_import_cap_w": 1_300_000.0, "recharge_below_w": 600_000.0}},
        failover={"detect_poll_s": 0.002, "shed_order": ["row04", "row03", "row02"], "reconnect_stable_s": 1.0,
                  "cap_release_s": 0.5, "genset": {"start_after_s": 0.0, "min_run_s": 1.0}},
        simulation={"seed": 3, "speed": 1.0, "pue": 1.25,
                    "bess": [{"capacity_wh": 1_000_000, "rated_power_w": 500_000, "initial_soc": 0.7,
                              "ramp_w_per_s": 2_000_000, "heartbeat_timeout_s": 2.0}],
                    "racks": {"model": "steady", "steady_fraction": 0.5, "telemetry_period_s": 0.2,
                              "cap_response_s": 0.1},
                    "grid": {"seamless_transfer": True, "psu_holdup_s": 0.010, "pcs_overload_s": 2.0},
                    "genset": {"rated_power_w": 1_200_000, "start_delay_s": 0.5, "warmup_s": 0.5,
                               "ramp_w_per_s": 5_000_000, "cooldown_s": 0.3}}, **kw)


def training_site(make_site: Callable[..., SiteConfig], url: str, *, units: int = 2,
                  **smoothing: Any) -> SiteConfig:
    """16 racks of 40 kW training in jobs of 8, swinging 40-100 % at 0.5-1 Hz (~+-200 kW around
    ~700 kW), the smoothing loop at 20 Hz, a 100 kW/min ramp limit; 1 MW units."""
    return make_site(
        url, units=units, rows=2, racks_per_row=8, period_s=0.5,
        policies={"battery": {"soc_min": 0.1, "soc_max": 0.95},
                  "smoothing": {"rate_hz": 20, "tau_s": 10.0, **smoothing}},
        grid_connection={"ramp_limit_w": 100_000.0, "ramp_window_s": 60.0},
        simulation={"seed": 4, "speed": 1.0, "pue": 1.25,
                    "bess": [{"capacity_wh": 2_000_000, "rated_power_w": 1_000_000, "initial_soc": 0.6,
                              "ramp_w_per_s": 20_000_000, "heartbeat_timeout_s": 2.0}],
                    "racks": {"model": "training", "racks_per_job": 8, "swing_hz_min": 0.5, "swing_hz_max": 1.0,
                              "mean_job_s": 1e6, "checkpoint_every_s": 1e6, "telemetry_period_s": 0.5}})


@pytest.fixture
def make_site() -> Callable[..., SiteConfig]:
    def make(mqtt_url: str, **kw: Any) -> SiteConfig:
        return parse_config(site_dict(mqtt_url, **kw), "test")
    return make


@contextlib.asynccontextmanager
async def running_site(cfg: SiteConfig, clock: ScaledClock | None = None) -> AsyncIterator[SimulatedSite]:
    """The simulated site of a controller's site file (its `simulation:` section parsed by the simulator)."""
    site = SimulatedSite(parse_sim_config(cfg.model_dump(mode="json"), "test"), clock or ScaledClock(1.0))
    task = asyncio.create_task(site.run(), name="site")
    try:
        await site.wait_started()
        yield site
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running_controller(cfg: SiteConfig, clock: ScaledClock) -> AsyncIterator[Controller]:
    ctl = Controller(cfg, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.run(stop), name="controller")
    try:
        await asyncio.wait_for(ctl.mqtt.connected.wait(), 10)
        yield ctl
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0, poll_s: float = 0.02) -> None:
    """Poll a condition on real time (the plant runs on its own clock); fail on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(poll_s)
