"""`ems demo`: a broker, the simulated site in its own process, and the controller, live.

The site and the controller share an accelerated site clock (both anchored on the
system-wide monotonic clock), so a peak-shaving day fits in a couple of minutes. The
summary compares the plant's own counterfactual (the same site without a battery) with
what the meter saw. `--scenario off-grid` runs config/offgrid-sim-site.yaml instead: no grid,
the BESS forming the island, PV and a genset; its summary is the island's (PV used and
curtailed, the genset's starts, hours and fuel, unserved energy, PCS trips, lost racks).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import yaml

from ems.broker import free_port, private_broker
from ems.cli import plural
from ems.clock import ScaledClock
from ems.config import SiteConfig
from ems.control_loop import Controller
from ems.operator.auth import load_tokens
from ems.planning.settings import site_tariff
from sim_devices.config import parse_sim_config

_SIM_START_DELAY_S = 2.0  # real seconds between launching the site and site time 0


def with_free_ports(cfg: SiteConfig, mqtt_url: str) -> SiteConfig:
    """The same site on free loopback ports, talking to the given broker."""
    def move(ep: Any) -> Any:
        return ep.model_copy(update={"host": "127.0.0.1", "port": free_port()})

    units = [u.model_copy(update={"bms": move(u.bms), "pcs": move(u.pcs)}) for u in cfg.bess_units]
    return cfg.model_copy(update={
        "meter": move(cfg.meter), "bess_units": units,
        "genset": None if cfg.genset is None else move(cfg.genset),
        "filler": None if cfg.filler is None else move(cfg.filler),
        "mqtt": cfg.mqtt.model_copy(update={"url": mqtt_url}),
    })


def device_ports(cfg: SiteConfig) -> list[int]:
    """The loopback ports the simulated site serves its devices on."""
    eps = [cfg.meter, *(ep for u in cfg.bess_units for ep in (u.bms, u.pcs)), cfg.genset, cfg.filler]
    return [ep.port for ep in eps if ep is not None]


async def wait_for_site(ports: list[int], proc: asyncio.subprocess.Process, timeout_s: float) -> bool:
    """Until every device port of the simulated site accepts a connection (False: the site
    exited, or `timeout_s` passed). The controller started before them reported each device
    lost, then recovered, on a machine slow to start the site."""
    deadline = time.monotonic() + timeout_s
    waiting = list(ports)
    while waiting and proc.returncode is None and time.monotonic() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", waiting[0]), 1.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        waiting.pop(0)
    return not waiting


@contextlib.asynccontextmanager
async def _broker(url: str | None, kind: str) -> AsyncIterator[str]:
    if url is not None:
        yield url
        return
    async with private_broker(kind) as b:
        yield b.url


def _mw(w: float | None) -> str:
    return "   n/a" if w is None else f"{w / 1e6:6.2f}"


def _kw(w: float | None) -> str:
    return "-" if w is None else f"{w / 1e3:.0f}"


def _pct(fraction: float | None) -> str:
    return " --" if fraction is None else f"{fraction * 100:3.0f}%"


def site_epoch(now_wall: float, start_hour: float, zone: tzinfo) -> float:
    """The wall time of site time 0: the latest instant, at or before `now_wall`, at which the
    site's zone reads `start_hour` o'clock. The plant starts its day at `start_hour`; with this
    epoch the site clock the controller keeps (its events, its dashboard, this console) reads
    the same time of day as the plant."""
    local = datetime.fromtimestamp(now_wall, zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=start_hour)
    if start.timestamp() > now_wall:
        start -= timedelta(days=1)
    return start.timestamp()


def status_line(ctl: Controller) -> str:
    """One line of the last period, at the site time its dashboard shows (the controller's
    wall clock, in the site's zone)."""
    r = ctl.last
    if r is None:
        return "waiting for the first control period..."
    s = r.status
    zone = ctl.published.zone
    when = datetime.fromtimestamp(r.snapshot.wall_s, zone).strftime("%Y-%m-%d %H:%M")
    units = "  ".join(f"{uid} {_pct(u['soc'])} {_mw(u['power_w'])}" for uid, u in s["units"].items())
    if (mg := s.get("microgrid")) is not None and mg["mode"] == "off_grid":
        gensets = "  ".join(f"{g} {v['phase']} {_mw(v['power_w'])}" for g, v in mg["gensets"].items())
        return (f"{when} {zone} | demand {_mw(mg['demand_w'])} MW | {gensets} MW"
                f" | {units} MW | {s['reason']}")
    return (f"{when} {zone} | grid {_mw(s['grid_power_w'])} MW"
            f" / cap {_mw(s['grid_import_cap_w'])} | racks {_mw(s['racks']['reported_power_w'])} MW"
            f" | {units} MW | {s['reason']}")


def summary_text(truth: dict[str, Any], ctl: Controller, cap_w: float | None) -> str:
    p = ctl.stats.percentiles_ms()
    lines = [
        "",
        "=== demo summary ===",
        f"site time simulated:          {truth['site_time_s'] / 3600:.1f} h",
        f"grid import cap:              {_mw(cap_w)} MW",
        f"peak import, no battery:      {_mw(truth['peak_demand_15min_without_battery_w'])} MW "
        f"(15-min demand)  {_mw(truth['peak_1min_without_battery_w'])} MW (1-min average)",
        f"peak import, with battery:    {_mw(truth['peak_demand_15min_w'])} MW "
        f"(15-min demand)  {_mw(truth['peak_1min_w'])} MW (1-min average)",
        f"swing, minute to minute:      {_kw(truth['swing_1min_p95_without_battery_w'])} kW no battery, "
        f"{_kw(truth['swing_1min_p95_w'])} kW with (95th percentile; largest "
        f"{_kw(truth['swing_1min_max_without_battery_w'])} and {_kw(truth['swing_1min_max_w'])} kW)",
        f"energy through the battery:   {truth['battery_discharged_wh'] / 1e6:.2f} MWh out, "
        f"{truth['battery_charged_wh'] / 1e6:.2f} MWh in",
        f"SoC range:                    {truth['soc_min'] * 100:.1f} % .. {truth['soc_max'] * 100:.1f} %",
        f"control periods:              {ctl.stats.periods} (overruns {ctl.stats.overruns}), "
        f"duration p50 {p.get('duration_p50_ms', 0):.2f} ms p99 {p.get('duration_p99_ms', 0):.2f} ms",
        f"PCS heartbeat timeouts:       {int(truth['heartbeat_timeouts'])}",
    ]
    return "\n".join(lines)


def offgrid_summary_text(truth: dict[str, Any], ctl: Controller) -> str:
    """The island's day: the plant's ground truth, and the controller's own KPIs."""
    mg = ctl.last.status.get("microgrid") if ctl.last is not None else None
    pv, cut = truth["pv_energy_wh"], truth["pv_curtailed_wh"]
    lines = [
        "",
        "=== off-grid demo summary ===",
        f"site time simulated:          {truth['site_time_s'] / 3600:.1f} h",
        f"PV:                           {pv / 1e6:.2f} MWh used, {cut / 1e6:.2f} MWh curtailed",
        f"genset:                       {truth['genset_energy_wh'] / 1e6:.2f} MWh, "
        f"{int(truth['genset_starts'])} starts, {truth['genset_fuel_l']:,.0f} l (the plant's fuel counter)",
        f"energy through the battery:   {truth['battery_discharged_wh'] / 1e6:.2f} MWh out, "
        f"{truth['battery_charged_wh'] / 1e6:.2f} MWh in",
        f"SoC range:                    {truth['soc_min'] * 100:.1f} % .. {truth['soc_max'] * 100:.1f} %",
        f"PCS trips, lost racks:        {int(truth['pcs_trips'])}, {int(truth['lost_racks'])}",
        # the controller books its totals per period run: periods skipped on an overrun are not in them
        f"control periods:              {ctl.stats.periods} (overruns {ctl.stats.overruns})",
    ]
    if mg is not None:
        booked_h = ctl.stats.periods * ctl.cfg.control.period_s / 3600.0  # less than the site's time by its overruns
        lines.append(f"controller's KPIs:            over the periods it ran ({booked_h:.1f} h of site time): "
                     f"diesel {mg['diesel_l']:,.0f} l, CO2 {mg['co2_kg']:,.0f} kg, "
                     f"{mg['genset_hours']:.1f} genset h, unserved {mg['unserved_kwh']:.1f} kWh, "
                     f"surplus (PV curtailed) {mg['surplus_kwh']:,.0f} kWh")
    return "\n".join(lines)


async def run_demo(cfg: SiteConfig, args: argparse.Namespace) -> int:
    if cfg.simulation is None:
        print(f"{args.config}: the demo needs a simulation: section", file=sys.stderr)
        return 2
    sim = parse_sim_config(cfg.model_dump(mode="json"), str(args.config)).simulation
    speed = args.speed or sim.speed
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the site goes down after the controller
        loop.add_signal_handler(sig, stop.set)
    async with _broker(args.mqtt_url, args.broker) as url:
        site_cfg = with_free_ports(cfg, url)
        with tempfile.TemporaryDirectory(prefix="ems-demo-") as tmp:
            cfg_path, summary_path = Path(tmp) / "site.yaml", Path(tmp) / "truth.json"
            cfg_path.write_text(yaml.safe_dump(site_cfg.model_dump(mode="json")))
            anchor = time.monotonic() + _SIM_START_DELAY_S
            epoch = site_epoch(time.time() + _SIM_START_DELAY_S, sim.start_hour, site_tariff(cfg)[1])
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ems.cli", "sim", "--config", str(cfg_path), "--speed", str(speed),
                "--clock-anchor", repr(anchor), "--clock-epoch", repr(epoch),
                "--summary-json", str(summary_path), "--log-format", "console",
                # its own process group: a terminal's Ctrl-C reaches the demo alone, which stops the
                # controller (units to 0 W) before the site; both at once left the units unreachable
                stdout=asyncio.subprocess.DEVNULL, process_group=0)
            print(f"ems demo: broker {url}, site '{cfg.site}' in process {proc.pid}: "
                  f"{plural(len(cfg.bess_units), 'BESS unit')}, {plural(cfg.racks.count, 'rack')}; speed {speed:g}x, "
                  f"{args.duration:g} s", flush=True)
            controller = Controller(site_cfg, ScaledClock(speed, anchor, epoch))
            operator = contextlib.AsyncExitStack()
            if args.http_port is not None:  # the operator dashboard, on by default in the demo
                from ems.operator.server import serve

                http = site_cfg.http.model_copy(update={"enabled": True, "port": args.http_port})
                token = os.environ.get(http.token_env) or secrets.token_urlsafe(24)
                server = await operator.enter_async_context(
                    serve(controller, http, load_tokens(http, {http.token_env: token})))
                print(f"ems demo: operator dashboard {server.url}  token {token}", flush=True)
            await asyncio.sleep(max(0.0, anchor - time.monotonic()))
            if not await wait_for_site(device_ports(site_cfg), proc, 60.0):
                print("ems demo: the simulated site did not serve its devices within 60 s; starting anyway",
                      file=sys.stderr, flush=True)
            task = asyncio.create_task(controller.run(stop), name="controller")
            tty = sys.stdout.isatty()
            end = time.monotonic() + args.duration
            last_print = 0.0
            while not stop.is_set() and time.monotonic() < end and not task.done() and proc.returncode is None:
                line = status_line(controller)
                if tty:
                    print("\r" + line.ljust(150)[:150], end="", flush=True)
                elif time.monotonic() - last_print >= 5.0:
                    print(line, flush=True)
                    last_print = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
            if tty:
                print()
            stop.set()
            try:
                await asyncio.wait_for(task, 30)
            except TimeoutError:
                print("ems demo: the controller did not stop within 30 s", file=sys.stderr)
            await asyncio.wait_for(operator.aclose(), 10)
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                rc = await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                rc = await proc.wait()
            if not summary_path.exists():
                print(f"ems demo: the simulated site exited with status {rc} and no summary", file=sys.stderr)
                return 1
            truth = yaml.safe_load(summary_path.read_text())
    if controller.off_grid:
        print(offgrid_summary_text(truth, controller))
        return 0
    ps = cfg.policies.peak_shaving
    print(summary_text(truth, controller, None if ps is None else ps.grid_import_cap_w))
    return 0
