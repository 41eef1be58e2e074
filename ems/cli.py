"""Command line: `ems check-config`, `ems run`, `ems sim`, `ems demo`, `ems backtest`, `ems agent`.

Bad input (a config that does not validate, a port that is taken) ends with a one-line
reason on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ems import logs
from ems.clock import ScaledClock
from ems.config import SiteConfig, load_config, parse_config
from ems.model.errors import ConfigError, EmsError
from ems.progress_line import ProgressLine
from ems.topology import read_yaml_mapping

if TYPE_CHECKING:
    from drivers.nvml import Gpu
    from ems.agent.config import AgentConfig
    from ems.control_loop import Controller
    from sim_devices.config import SimSiteConfig

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _stop_on_signals(stop: asyncio.Event, on_stop: Callable[[], None] | None = None) -> None:
    loop = asyncio.get_running_loop()

    def handle() -> None:
        if on_stop is not None:
            on_stop()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle)


def _with_mqtt_url(cfg: SiteConfig, url: str | None) -> SiteConfig:
    """The site file with --mqtt-url, validated like the file itself (e.g. TLS needs mqtts://)."""
    if url is None:
        return cfg
    return parse_config({**cfg.model_dump(mode="json"), "mqtt": {**cfg.mqtt.model_dump(mode="json"), "url": url}},
                        "--mqtt-url")


def cmd_check_config(args: argparse.Namespace) -> int:
    from ems.devices import check_site_profiles
    from ems.mqtt_auth import client_kwargs

    # the other files the commands read are checked by their own models: a backtest file (or an
    # agent file) was refused as a site file that lacks meter, bess_units and racks
    raw = read_yaml_mapping(args.file)
    if "bess_units" not in raw and "battery_units" in raw:
        return _check_backtest_file(args.file)
    if "bess_units" not in raw and "rack_id" in raw:
        return _check_agent_file(args.file)
    cfg = load_config(args.file)
    check_site_profiles(cfg, str(args.file))
    # the secrets and certificates the file names must be there too, as `ems run` will need them
    try:
        client_kwargs(cfg.mqtt, identifier="check-config")
    except ConfigError as exc:
        raise ConfigError(f"{args.file}: {exc}") from None
    if cfg.http.enabled:
        from ems.operator.auth import TokenError, load_tokens

        try:
            load_tokens(cfg.http)
        except TokenError as exc:
            raise ConfigError(f"{args.file}: http: {exc}") from None
    a = cfg.policies.arbitrage
    for feed in () if a is None else (a.price_feed, a.realtime_price_feed):
        if feed is not None and feed.source == "entsoe":
            try:
                feed.token()  # the ENTSO-E token must be there, as `ems run` will need it
            except ConfigError as exc:
                raise ConfigError(f"{args.file}: {exc}") from None
    print(f"{args.file}: OK (site {cfg.site}: {plural(len(cfg.bess_units), 'BESS unit')}, "
          f"{plural(cfg.racks.count, 'rack')}, period {cfg.control.period_s:g} s)")
    return 0


def _check_backtest_file(path: Path) -> int:
    """A backtest file (`ems backtest`, `ems size`): its model, and the tariff it names."""
    from ems.backtest.config import load_backtest_config
    from ems.planning.settings import load_tariff

    cfg = load_backtest_config(path)
    arb = cfg.policies.arbitrage
    if arb is not None and arb.tariff is not None:  # as `ems backtest` will read it, without --tariff
        try:
            load_tariff(arb.tariff)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    energy_kwh = sum(u.capacity_wh for u in cfg.battery_units) / 1000
    power_kw = sum(u.rated_power_w for u in cfg.battery_units) / 1000
    kind = "" if cfg.microgrid is None else f", {cfg.microgrid.mode.value}"
    print(f"{path}: OK (backtest file {cfg.site}: {plural(len(cfg.battery_units), 'battery unit')}, "
          f"{energy_kwh:,.0f} kWh / {power_kw:,.0f} kW{kind})")
    return 0


def _check_agent_file(path: Path) -> int:
    """A GPU node's agent file (`ems agent`): its model and the MQTT secrets it names."""
    from ems.agent.config import load_agent_config
    from ems.mqtt_auth import client_kwargs

    cfg = load_agent_config(path)
    try:
        client_kwargs(cfg.mqtt, identifier=cfg.client_id)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    print(f"{path}: OK (agent file of rack {cfg.rack_id})")
    return 0


async def _run(cfg: SiteConfig, speed: float, path: Path | None = None, mqtt_url: str | None = None,
               log_format: str | None = None, ha_id: str | None = None) -> int:
    from ems.control_loop import Controller
    from ems.sd_notify import Notifier

    stop = asyncio.Event()
    notifier = Notifier()  # systemd Type=notify; a no-op outside systemd (deploy/systemd/ems.service)
    _stop_on_signals(stop, notifier.stopping)
    controller = Controller(cfg, ScaledClock(speed))
    if cfg.ha is not None:  # active/standby: writes only under the lease (docs/ha.md)
        from ems.ha.attach import attach

        attach(controller, cfg.ha, ha_id)
    if cfg.fleet is not None:  # the site's link to the fleet (docs/fleet.md)
        from ems.fleet.attach import attach_link

        attach_link(controller, cfg.fleet)
    if path is not None:
        # SIGHUP re-reads the site file: applied at the next period, or refused with the reason
        # (an event and a log line) while the running configuration stays
        def logging_of(new: SiteConfig) -> None:
            logs.configure(log_format or new.logging.format, new.logging.level)

        def reload() -> tuple[bool, str]:
            return controller.reload_config(path, lambda c: _with_mqtt_url(c, mqtt_url), logging_of)

        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
        controller.controls.reload = reload  # the operator API's reload-site-file action, the same
    # READY=1 after the first period, WATCHDOG=1 after each: a hung loop stops petting the watchdog
    controller.observers.append(lambda _result: notifier.period_done())
    if not cfg.http.enabled:
        await controller.run(stop)
        return _run_status(controller)
    from ems.operator.auth import TokenError, load_tokens
    from ems.operator.server import serve

    try:
        tokens = load_tokens(cfg.http)
    except TokenError as exc:
        print(f"ems run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        async with serve(controller, cfg.http, tokens):
            await controller.run(stop)
    except OSError as exc:
        print(f"ems run: cannot serve the operator API on {cfg.http.host}:{cfg.http.port}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return _run_status(controller)


def _run_status(controller: Controller) -> int:
    """0 after a requested stop; non-zero when a background task (MQTT, failover) crashed, so
    systemd's Restart=on-failure brings the daemon back."""
    failure = controller.background_failure
    if failure is not None:
        print(f"ems run: stopped because a background task failed: {failure!r}", file=sys.stderr)
        return EXIT_RUNTIME
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    from ems.fleet.service import FleetServiceError, serve
    from ems.fleet.settings import load_fleet_config

    cfg = load_fleet_config(args.config)
    logs.configure("console", "info")
    try:
        asyncio.run(serve(cfg))
    except FleetServiceError as exc:
        print(f"ems fleet: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ems.devices import check_site_profiles

    cfg = _with_mqtt_url(load_config(args.config), args.mqtt_url)
    if args.state_dir is not None:  # two controllers of one site on one machine (active/standby tests)
        cfg = cfg.model_copy(update={"state": cfg.state.model_copy(update={"dir": args.state_dir})})
    check_site_profiles(cfg, str(args.config))  # before the controller opens a connection, as check-config
    if cfg.microgrid is not None and (why := cfg.microgrid.live_refusal(
            cfg.genset is not None, cfg.failover is not None and cfg.failover.enabled,
            tuple(g.id for g in cfg.gensets))) is not None:
        raise ConfigError(f"{args.config}: {why}")
    logs.configure(args.log_format or cfg.logging.format, cfg.logging.level)
    return asyncio.run(_run(cfg, args.speed, args.config, args.mqtt_url, args.log_format, args.ha_id))


async def _sim(cfg: SimSiteConfig, clock: ScaledClock, summary_json: Path | None, source: str) -> int:
    from sim_devices.site import SimulatedSite

    site = SimulatedSite(cfg, clock, source)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    task = asyncio.create_task(site.run(), name="site")
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    # the ground truth as it stands at the stop, written before the servers are torn down: a
    # teardown held up by a client's dead connection (one cut off the network) must not lose it
    truth = site.ground_truth()
    if summary_json is not None:
        summary_json.write_text(json.dumps(truth, indent=2))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    print(sim_summary(truth), flush=True)
    return 0


def sim_summary(truth: dict[str, Any]) -> str:
    """What the plant saw, in a few lines (`ems sim` prints it on exit)."""
    def mw(w: float) -> str:
        return f"{w / 1e6:.2f} MW"

    if truth.get("off_grid"):  # no grid: the island's own record
        return "\n".join([
            f"ems sim: {truth['site_time_s'] / 3600:.2f} h of site time simulated, off-grid",
            f"  PV {truth['pv_energy_wh'] / 1e6:.3f} MWh used, {truth['pv_curtailed_wh'] / 1e6:.3f} MWh curtailed; "
            f"genset {truth['genset_energy_wh'] / 1e6:.3f} MWh, {int(truth['genset_starts'])} starts, "
            f"{truth['genset_fuel_l']:.0f} l",
            f"  battery: {truth['battery_discharged_wh'] / 1e6:.3f} MWh out, "
            f"{truth['battery_charged_wh'] / 1e6:.3f} MWh in; "
            f"SoC {100 * truth['soc_min']:.1f} .. {100 * truth['soc_max']:.1f} %",
            f"  PCS trips: {int(truth['pcs_trips'])}, racks lost: {int(truth['lost_racks'])}",
        ])
    return "\n".join([
        f"ems sim: {truth['site_time_s'] / 3600:.2f} h of site time simulated",
        f"  peak import: {mw(truth['peak_import_w'])} "
        f"(without the battery {mw(truth['peak_import_without_battery_w'])}); "
        f"15-min demand {mw(truth['peak_demand_15min_w'])} "
        f"(without {mw(truth['peak_demand_15min_without_battery_w'])})",
        f"  battery: {truth['battery_discharged_wh'] / 1e6:.3f} MWh out, "
        f"{truth['battery_charged_wh'] / 1e6:.3f} MWh in; "
        f"SoC {100 * truth['soc_min']:.1f} .. {100 * truth['soc_max']:.1f} %",
        f"  PCS heartbeat timeouts: {int(truth['heartbeat_timeouts'])}; grid outages: {int(truth['outages'])}, "
        f"racks lost: {int(truth['lost_racks'])}",
    ])


def cmd_sim(args: argparse.Namespace) -> int:
    from sim_devices.config import parse_sim_config

    raw = read_yaml_mapping(args.config)
    if args.mqtt_url is not None:
        raw = {**raw, "mqtt": {**(raw.get("mqtt") or {}), "url": args.mqtt_url}}
    if args.speed is not None:  # the plant, its row agents and the log all run at the speed given
        raw = {**raw, "simulation": {**(raw.get("simulation") or {}), "speed": args.speed}}
    cfg = parse_sim_config(raw, str(args.config))
    logs.configure(args.log_format or "console", "info")
    speed = cfg.simulation.speed
    clock = ScaledClock(speed, anchor_monotonic=args.clock_anchor, epoch_wall=args.clock_epoch)
    try:
        return asyncio.run(_sim(cfg, clock, args.summary_json, str(args.config)))
    except (OSError, ExceptionGroup) as exc:
        first = exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc
        print(f"ems sim: cannot serve the site: {first}", file=sys.stderr)
        return EXIT_RUNTIME


def cmd_agent(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    from drivers.nvml import NoGpu, close_gpus, open_gpus
    from ems.agent.config import load_agent_config
    from ems.mqtt_auth import client_kwargs

    cfg = load_agent_config(args.config, args.mqtt_url)
    try:
        connect = client_kwargs(cfg.mqtt, identifier=cfg.client_id)
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: {exc}") from None
    logs.configure(args.log_format or cfg.logging.format, cfg.logging.level)
    try:
        gpus = open_gpus(indices=cfg.gpus)
    except NoGpu as exc:
        print(f"ems agent: no NVIDIA GPU here ({exc}); the agent runs on GPU nodes", file=sys.stderr)
        return EXIT_CONFIG
    except DriverError as exc:
        print(f"ems agent: cannot open the GPUs: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    try:
        return asyncio.run(_agent(cfg, gpus, connect))
    finally:
        close_gpus(gpus)


async def _agent(cfg: AgentConfig, gpus: list[Gpu], connect: dict[str, Any]) -> int:
    from ems.agent.agent import serve

    stop = asyncio.Event()
    _stop_on_signals(stop)  # SIGINT/SIGTERM: GPUs back to their defaults, then exit 0
    await serve(cfg, gpus, connect, stop)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """The persisted event log, newest first, as text or JSON lines."""
    import sqlite3
    import time

    from ems.events import EventLog

    state_dir = args.state_dir
    if state_dir is None:
        state_dir = load_config(args.config).state.dir if args.config else None
    if state_dir is None:
        raise ConfigError("ems events: give --state-dir, or --config with a site file that sets state.dir")
    path = Path(state_dir) / "events.db"
    if not path.exists():
        raise ConfigError(f"ems events: no event log at {path}")
    try:
        log_ = EventLog(path, read_only=True)  # beside a running controller: never its writer
        events = log_.query(limit=args.limit, kind=args.kind, before_id=args.before)
    except sqlite3.DatabaseError as exc:  # corrupt: left as it is, the controller sets it aside at its start
        raise ConfigError(f"ems events: {path} cannot be read: {exc}") from None
    for e in events:
        if args.json:
            print(json.dumps(e.as_dict()))
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.wall_s))
            data = " ".join(f"{k}={json.dumps(v)}" for k, v in e.data.items() if k != "timeline")
            print(f"{e.id:6d} {when}Z {e.kind:<26} {e.reason or '':<20} {data}")
    log_.close()
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    """An MQTT broker for a simulated site and its controller (Mosquitto if installed, else
    the embedded one), on loopback, until SIGINT/SIGTERM."""
    from ems.broker import private_broker

    async def serve() -> int:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        async with private_broker(args.kind, args.port) as b:
            print(f"ems broker: {b.kind} on {b.url} (Ctrl-C stops it)", flush=True)
            await stop.wait()
        return 0

    try:
        return asyncio.run(serve())
    except (OSError, RuntimeError) as exc:
        print(f"ems broker: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


DEMO_SCENARIOS = {"peak-shaving": "demo-site.yaml", "off-grid": "offgrid-sim-site.yaml"}


def cmd_demo(args: argparse.Namespace) -> int:
    from ems.demo import run_demo
    from ems.devices import check_site_profiles

    if args.config is None:
        args.config = Path(__file__).resolve().parent.parent / "config" / DEMO_SCENARIOS[args.scenario]
    cfg = load_config(args.config)
    check_site_profiles(cfg, str(args.config))
    logs.configure("console", "warning")
    return asyncio.run(run_demo(cfg, args))


def cmd_backtest(args: argparse.Namespace) -> int:
    from ems.backtest import BacktestError
    from ems.backtest.config import load_backtest_config
    from ems.backtest.report import write_outputs
    from ems.backtest.run import BacktestOptions, run

    cfg = load_backtest_config(args.config)

    progress = None if args.quiet else ProgressLine("backtest", "steps")

    opts = BacktestOptions(
        load_csv=args.load, tariff=args.tariff, prices_csv=args.prices, pv_csv=args.pv, load_scale=args.load_scale,
        pv_scale=args.pv_scale, unit=args.unit,
        start=args.start, series_start=args.series_start,
        step_s=args.step_s, days=args.days, foresight=not args.no_foresight, peak_shaving_only=args.peak_shaving_only,
        dr_events_csv=args.dr_events, known_load_ahead_h=args.known_load_ahead_h)
    from ems.backtest.offgrid_run import is_offgrid
    if is_offgrid(cfg):
        return _backtest_offgrid(cfg, opts, args, progress)
    for option, given in (("--battery-sweep", args.battery_sweep), ("--genset-plan", args.genset_plan)):
        if given is not None:  # else silently ignored: the run read as if the sweep or plan had been made
            raise ConfigError(f"ems backtest: {option}: only on an off_grid or weak_grid site (microgrid.mode); "
                              f"{args.config} is grid-connected")
    try:
        bt = run(cfg, opts, progress)
        files = write_outputs(args.out, bt, timeseries=args.timeseries)
    except (BacktestError, OSError) as exc:
        return _refused("backtest", progress, args.out, exc)
    _end(progress)
    t, pf, fin = bt.result.total, bt.result.foresight, bt.result.financials
    print(f"bill without battery {t['bill_without']:,.2f}, with {t['bill_with']:,.2f}: "
          f"savings {t['savings']:,.2f} ({t['equivalent_full_cycles']:.1f} cycles; "
          f"peak {t['peak_without_kw']:,.0f} -> {t['peak_with_kw']:,.0f} kW)")
    print(f"charge at the end against the start {t['stored_energy_change_kwh']:+,.0f} kWh, worth "
          f"{t['stored_energy_value']:+,.2f} (counted in the year-1 savings)")
    if pf is not None:
        print(f"perfect foresight savings {pf['savings']:,.2f}: captured {100 * pf['share_captured_net']:.1f} % "
              f"net of wear, the bound's own measure ({100 * pf['share_captured']:.1f} % of the bill savings; "
              f"best month {100 * pf['max_month_share']:.1f} % of its bound)")
    if fin is not None:
        payback = "never" if fin.simple_payback_years is None else f"{fin.simple_payback_years:.1f} y"
        irr = "-" if fin.irr is None else f"{100 * fin.irr:.1f} %"
        lcos = "-" if fin.lcos_per_kwh is None else f"{fin.lcos_per_kwh:.3f}/kWh"
        print(f"payback {payback}, NPV {fin.npv:,.0f}, IRR {irr}, LCOS {lcos}")
    dr = bt.result.run.get("dr")
    if dr is not None:
        share = dr["share_minutes_at_target"]
        print(f"demand response: {dr['events']} events, revenue {dr['revenue']:,.2f}, shifted {dr['shifted_kwh']:,.0f} "
              f"kWh (battery {dr['battery_kwh']:,.0f} kWh), "
              f"{'-' if share is None else f'{100 * share:.1f} %'} of minutes at target")
        if dr["throughput_given_up_by_tier"]:
            tiers = ", ".join(f"tier {t} {100 * v:.1f} %" for t, v in dr["throughput_given_up_by_tier"].items())
            print(f"  GPU energy held back {dr['gpu_throttled_kwh']:,.0f} kWh; throughput given up: {tiers}")
    ag = bt.result.ageing
    if ag is not None:
        repl = ", ".join(str(y) for y in ag["replacement_years"]) or "none"
        print(f"ageing (LFP, {ag['temperature_c']:g} °C): SoH after 10 years {100 * ag['soh_10y']:.1f} %, "
              f"{ag['efc_per_year']:.0f} cycles a year, replaced in year {repl}; wear "
              f"{ag['wear_cost_per_kwh_at_run_dod']:.4f}/kWh at the run's depth {100 * ag['effective_dod']:.0f} %")
        if ag["wear_depth_cost_per_kwh"]:
            print("  planner's wear by depth from the model (policies.arbitrage.wear_depth_cost_per_kwh, "
                  "with wear_cost_per_kwh: 0): [" + ", ".join(f"{c:.4f}" for c in ag["wear_depth_cost_per_kwh"]) + "]")
    print(f"wall time {bt.trace.wall_time_s:.1f} s ({bt.trace.plans} plans); wrote "
          + ", ".join(str(f) for f in files))
    return 0


def _end(progress: ProgressLine | None) -> None:
    if progress is not None:
        progress.close()


def _refused(command: str, progress: ProgressLine | None, out: Path, exc: Exception) -> int:
    """A run that cannot go on or cannot write its outputs: one line on stderr, exit 2."""
    _end(progress)
    why: object = exc
    if isinstance(exc, OSError) and exc.filename is not None and Path(exc.filename).is_relative_to(out):
        why = f"--out {out}: cannot write: {exc.strerror or exc}"
    print(f"ems {command}: {why}", file=sys.stderr)
    return EXIT_CONFIG


def _backtest_offgrid(cfg: Any, opts: Any, args: argparse.Namespace, progress: ProgressLine | None) -> int:
    """An off-grid or weak-grid site: the run against diesel trucks alone (docs/off-grid.md)."""
    from ems.backtest import BacktestError
    from ems.backtest.offgrid_run import battery_sweep, run_offgrid, summary_lines, sweep_lines, write_offgrid

    if args.timeseries:  # else silently not written
        print("ems backtest: --timeseries: not on an off_grid or weak_grid run (offgrid.json has its totals)",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        _, result = run_offgrid(cfg, opts, progress, args.genset_plan)
        _end(progress)
        if args.battery_sweep:
            result["battery_sweep"] = battery_sweep(cfg, opts, args.battery_sweep, args.genset_plan)
        path = write_offgrid(args.out, result)
    except (BacktestError, OSError) as exc:
        return _refused("backtest", progress, args.out, exc)
    print("\n".join(summary_lines(result)))
    if args.battery_sweep:
        print("\n".join(sweep_lines(result["battery_sweep"])))
    print(f"wrote {path}")
    return 0


def _hours(text: str) -> float:
    try:
        h = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}") from None
    if not 0 < h <= 8784:  # math.isfinite too: nan fails both comparisons
        raise argparse.ArgumentTypeError("hours must be > 0 and at most a year (8784)")
    return h


def _step_s(text: str) -> int:
    try:
        step = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if step <= 0:  # 0 read as "the default" and -300 passed `3600 % step`
        raise argparse.ArgumentTypeError("the step must be > 0 s")
    return step


def _positive(text: str) -> float:
    """A finite number > 0: a scale, a speed or a span of 0, < 0, nan or inf ran and printed
    nonsense (a zero load billed, a demo of no time) or ended in a traceback."""
    return _finite(text, zero=False)


def _non_negative(text: str) -> float:
    return _finite(text, zero=True)


def _finite(text: str, zero: bool) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not ((x >= 0) if zero else (x > 0)) or not x < math.inf:  # nan fails both
        raise argparse.ArgumentTypeError(f"must be a number {'>=' if zero else '>'} 0, not {text!r}")
    return x


def _forecast_hours(text: str) -> float:
    h = _positive(text)
    if h > 24:  # the forecasts reach a day ahead: more was cut to 24 without a word
        raise argparse.ArgumentTypeError(f"at most 24 h, not {text!r}")
    return h


def _iso_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an ISO date or time (2018-07-02 or 2018-07-02T14:00), not {text!r}") \
            from None


def _port(text: str) -> int:
    return _whole(text, 1, 65535, "a TCP port")


def _unit_id(text: str) -> int:
    return _whole(text, 0, 255, "a Modbus unit id")  # as a site file's unit_id


def _whole(text: str, lo: int, hi: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"{what} is {lo}..{hi}, not {value}")
    return value


def _scales(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers, e.g. 0.5,1,2") from None
    if not out or any(k <= 0 for k in out):
        raise argparse.ArgumentTypeError("each scale must be > 0")
    return out


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ems")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ems", description="Energy management for GPU sites with battery storage.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check-config", help="validate a site file (or a backtest or agent file) and exit")
    c.add_argument("file", type=Path, help="site file (ems run, ems sim), backtest file (ems backtest, ems size) "
                   "or agent file (ems agent)")
    c.set_defaults(func=cmd_check_config)

    r = sub.add_parser("run", help="run the controller daemon until SIGINT/SIGTERM")
    r.add_argument("--config", required=True, type=Path, help="the site file (e.g. config/hil-site.yaml)")
    r.add_argument("--mqtt-url", help="override mqtt.url from the site file")
    r.add_argument("--speed", type=_positive, default=1.0, help="site clock speed (only against a simulated site)")
    r.add_argument("--log-format", choices=["console", "json"])
    r.add_argument("--state-dir", type=Path, help="override state.dir from the site file")
    r.add_argument("--ha-id", help="this controller's name in the active/standby lease (default: the host name)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("sim", help="serve the simulated site alone (hardware-in-the-loop)")
    s.add_argument("--config", required=True, type=Path, help="a site file with a simulation: section "
                   "(config/demo-site.yaml)")
    s.add_argument("--mqtt-url", help="override mqtt.url from the site file")
    s.add_argument("--speed", type=_positive, help="override simulation.speed")
    s.add_argument("--clock-anchor", type=float, help=argparse.SUPPRESS)
    s.add_argument("--clock-epoch", type=float, help=argparse.SUPPRESS)
    s.add_argument("--summary-json", type=Path, help="write the plant's ground truth here on exit")
    s.add_argument("--log-format", choices=["console", "json"])
    s.set_defaults(func=cmd_sim)

    e = sub.add_parser("events", help="show the persisted event log, newest first")
    e.add_argument("--config", type=Path, help="site file (its state.dir holds the log)")
    e.add_argument("--state-dir", type=Path, help="the controller's state directory")
    e.add_argument("--kind", help="only events of this kind, e.g. failover, device_lost, operator_action")
    e.add_argument("--limit", type=int, default=50)
    e.add_argument("--before", type=int, help="page: only events with a smaller id")
    e.add_argument("--json", action="store_true", help="one JSON object per line")
    e.set_defaults(func=cmd_events)

    f = sub.add_parser("fleet", help="the fleet service: JetStream -> PostgreSQL, and the fleet page/API "
                       "(docs/fleet.md)")
    f.add_argument("--config", required=True, type=Path, help="the fleet file (docs/fleet.md)")
    f.set_defaults(func=cmd_fleet)

    a = sub.add_parser("agent", help="the rack agent of a GPU node: NVML power, caps and smoothing over MQTT "
                                     "(docs/agent.md)")
    a.add_argument("--config", required=True, type=Path, help="agent file (config/agent-example.yaml)")
    a.add_argument("--mqtt-url", help="override mqtt.url from the agent file")
    a.add_argument("--log-format", choices=["console", "json"])
    a.set_defaults(func=cmd_agent)

    k = sub.add_parser("broker", help="an MQTT broker on loopback for `ems sim` and `ems run` (hardware-in-the-loop)")
    k.add_argument("--port", type=_port, default=18830)
    k.add_argument("--kind", choices=["auto", "mosquitto", "embedded"], default="auto",
                   help="Mosquitto if installed (auto), or the embedded amqtt broker")
    k.set_defaults(func=cmd_broker)

    d = sub.add_parser("demo", help="simulated site + controller, live, with a summary")
    d.add_argument("--config", type=Path, help="the site file (default: the scenario's)")
    d.add_argument("--scenario", choices=sorted(DEMO_SCENARIOS), default="peak-shaving",
                   help="peak-shaving (config/demo-site.yaml) or off-grid (config/offgrid-sim-site.yaml)")
    d.add_argument("--speed", type=_positive, help="site seconds per real second (default: the file's)")
    d.add_argument("--duration", type=_positive, default=120.0, help="real seconds to run (default 120)")
    d.add_argument("--mqtt-url", help="use this broker instead of starting one")
    d.add_argument("--broker", choices=["auto", "mosquitto", "embedded"], default="embedded",
                   help="broker to start when no --mqtt-url (default: embedded amqtt)")
    d.add_argument("--http-port", type=int, default=0,
                   help="operator dashboard port (default: a free one; token from $EMS_HTTP_TOKEN or generated)")
    d.add_argument("--no-http", dest="http_port", action="store_const", const=None,
                   help="no operator dashboard")
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("backtest", help="the site's policies on a load series in fast time, billed (docs/backtest.md)")
    b.add_argument("--config", required=True, type=Path, help="backtest or site file (config/backtest-site.yaml)")
    b.add_argument("--load", required=True, type=Path, help="load CSV: one kW value a line, or timestamp,kW")
    b.add_argument("--tariff", type=Path, help="URDB tariff JSON (default: policies.arbitrage.tariff)")
    b.add_argument("--pv", type=Path, help="PV CSV, same layout as --load")
    b.add_argument("--prices", type=Path, help="dynamic prices CSV (timestamp,price_per_kwh)")
    b.add_argument("--load-scale", type=_positive, default=1.0, help="multiply the load (1000: kW -> MW site)")
    b.add_argument("--pv-scale", type=_non_negative, default=1.0)
    b.add_argument("--unit", choices=["kw", "w"], default="kw", help="unit of the load and PV values")
    b.add_argument("--start", type=_iso_time, help="ISO date of the first step to run (default: the series' start)")
    b.add_argument("--series-start", type=_iso_time,
                   help="date of the first value of a series without timestamps (default 2018-01-01)")
    b.add_argument("--step-s", type=_step_s,
                   help="resolution (default: the planning step, else 900; off-grid and weak-grid 300)")
    b.add_argument("--days", type=float, help="only this many days")
    b.add_argument("--peak-shaving-only", action="store_true", help="run without the arbitrage planner")
    b.add_argument("--no-foresight", action="store_true", help="skip the perfect-foresight bound")
    b.add_argument("--dr-events", type=Path, help="demand-response events to replay (CSV: docs/demand-response.md)")
    b.add_argument("--timeseries", action="store_true", help="also write every step to timeseries.csv")
    b.add_argument("--out", type=Path, default=Path("backtest-out"), help="output folder (default backtest-out)")
    b.add_argument("--battery-sweep", type=_scales, metavar="K,K,...",
                   help="off-grid or weak-grid: also run with the battery's energy scaled by each K")
    b.add_argument("--genset-plan", choices=("persistence", "perfect"),
                   help="off-grid or weak-grid: the gensets on the planner's MILP schedule from this forecast "
                        "(default: the SoC thresholds alone)")
    b.add_argument("--known-load-ahead-h", type=_hours, metavar="H",
                   help="a diagnostic: the planner sees the true load H hours ahead instead of its forecast "
                        "(what a better forecast is worth; docs/backtest.md)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_backtest)

    fe = sub.add_parser("forecast-eval", help="walk-forward scores of the load forecasts: MAE, skill, P90 coverage "
                        "(docs/backtest.md)")
    fe.add_argument("--load", required=True, type=Path, help="load CSV: one kW value a line, or timestamp,kW")
    fe.add_argument("--load-scale", type=_positive, default=1.0)
    fe.add_argument("--temperature", type=Path, help="temperature CSV (timestamp,°C, or one value a line for a year)")
    fe.add_argument("--series-start", type=_iso_time, help="date of the first value of a series without timestamps "
                    "(default 2018-01-01)")
    fe.add_argument("--step-s", type=_step_s, default=900, help="forecast step (default 900)")
    fe.add_argument("--days", type=_positive, help="score only this many days")
    fe.add_argument("--horizon-h", type=_forecast_hours, default=24.0, help="hours ahead per forecast (at most 24)")
    fe.add_argument("--json", type=Path, help="also write the scores here")
    fe.set_defaults(func=cmd_forecast_eval)

    z = sub.add_parser("size", help="BESS energy x power sweep (and PV, gensets off-grid), each point a backtest, on "
                       "Dask: NPV, payback, IRR, LCOS and the recommended size (docs/backtest.md)")
    z.add_argument("--config", required=True, type=Path, help="backtest or site file (its economics: section prices "
                   "each point per kWh)")
    z.add_argument("--load", required=True, type=Path, help="load CSV: one kW value a line, or timestamp,kW")
    z.add_argument("--tariff", type=Path, help="URDB tariff JSON (default: policies.arbitrage.tariff; off-grid: "
                   "none)")
    z.add_argument("--load-scale", type=_positive, default=1.0)
    z.add_argument("--energy-kwh", required=True, help="a,b,c or start:stop:count (usable kWh)")
    z.add_argument("--power-kw", required=True, help="a,b,c or start:stop:count")
    z.add_argument("--capex-per-kwh", type=float, help="default: the site file's capex per usable kWh")
    z.add_argument("--capex-per-kw", type=float, default=0.0)
    z.add_argument("--step-s", type=_step_s, help="backtest and planning step (default: the planning step; off-grid "
                   "300); 3600 is 4x faster than 900")
    z.add_argument("--days", type=float, help="only this many days of the load (scaled to a year)")
    z.add_argument("--start", type=_iso_time, help="ISO date of the first step")
    z.add_argument("--pv", type=Path, help="the site's PV series (CSV as the load's): as given, or scaled to "
                   "each --pv-kw")
    z.add_argument("--pv-kw", help="PV sizes to sweep too (kW of panels; 0: none): a,b,c or start:stop:count")
    z.add_argument("--pv-series-kw", type=float, help="kW of panels the --pv series was measured on (with --pv-kw)")
    z.add_argument("--pv-capex-per-kw", type=float, help="PV installed cost per kW (with --pv-kw)")
    z.add_argument("--pv-om-per-kw-year", type=float, help="PV O&M per kW a year (default 0; with --pv-kw)")
    z.add_argument("--pv-degradation", type=float, help="PV yield lost a year (default 0.005; with --pv-kw)")
    z.add_argument("--pv-lifetime-years", type=int, help="years the PV earns (default: the battery's lifetime; "
                   "with --pv-kw)")
    z.add_argument("--genset-kw", help="off-grid or weak-grid: genset fleet ratings to sweep too (kW, the site "
                   "file's gensets scaled together; 0: none): a,b,c or start:stop:count")
    z.add_argument("--genset-capex-per-kw", type=float, help="a bought fleet's cost per kW (default 0: the site "
                   "file's rent; given, or its O&M, the fleet pays no rent; with --genset-kw)")
    z.add_argument("--genset-om-per-kw-year", type=float, help="its O&M per kW a year (default 0; with --genset-kw)")
    z.add_argument("--currency", help="ISO code for the page (default: the tariff's; off-grid: none)")
    z.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    z.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786) instead")
    z.add_argument("--out", type=Path, default=Path("sizing-out"))
    z.add_argument("--quiet", action="store_true", help="no progress line")
    z.set_defaults(func=cmd_size)

    sc = sub.add_parser("scan", help="list a Modbus device's SunSpec models and points (or say it is not SunSpec)")
    sc.add_argument("target", help="HOST:PORT")
    sc.add_argument("--unit", type=_unit_id, default=1, help="Modbus unit id (default 1)")
    sc.add_argument("--timeout", type=_positive, default=1.0, help="seconds per request")
    sc.add_argument("--all", action="store_true", help="also list the points the device does not implement")
    sc.add_argument("--entry", type=Path, help="write a starting site-file entry for the device here")
    sc.set_defaults(func=cmd_scan)
    return p


def _sizes_for(prices: dict[str, object], sizes: str | None, what: str, sizes_option: str) -> None:
    """Options that price a dimension need its sizes: given alone they would do nothing."""
    given = [k for k, v in prices.items() if v is not None]
    if sizes is None and given:
        raise ConfigError(f"{', '.join(given)}: these price {what} sizes; give the sizes with {sizes_option}")


def cmd_size(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ems.backtest import BacktestError
    from ems.backtest.config import load_backtest_config
    from ems.backtest.financials import check_price_per_kw
    from ems.backtest.offgrid_run import is_offgrid, weak_grid_tariff
    from ems.backtest.run import BacktestOptions
    from ems.planning.settings import load_tariff
    from ems.sizing import CostModel, PvCosts, parse_grid, sweep, write_outputs
    from ems.sizing_offgrid import GensetCosts

    cfg = load_backtest_config(args.config)
    energies, powers = parse_grid(args.energy_kwh, "--energy-kwh"), parse_grid(args.power_kw, "--power-kw")
    if args.workers < 1:
        raise ConfigError("--workers: at least 1")
    costs = CostModel.from_config(cfg)
    if args.capex_per_kwh is not None:
        check_price_per_kw("--capex-per-kwh", args.capex_per_kwh)  # the same bound serves a kWh
        costs = replace(costs, capex_per_kwh=args.capex_per_kwh)
    check_price_per_kw("--capex-per-kw", args.capex_per_kw)
    costs = replace(costs, capex_per_kw=args.capex_per_kw)
    pv_kws, pv = None, None
    pv_prices = {"--pv-series-kw": args.pv_series_kw, "--pv-capex-per-kw": args.pv_capex_per_kw,
                 "--pv-om-per-kw-year": args.pv_om_per_kw_year, "--pv-degradation": args.pv_degradation,
                 "--pv-lifetime-years": args.pv_lifetime_years}
    _sizes_for(pv_prices, args.pv_kw, "PV", "--pv-kw")
    if args.pv_kw is not None:
        if args.pv is None or args.pv_series_kw is None or args.pv_capex_per_kw is None:
            raise ConfigError("--pv-kw needs --pv (the PV series), --pv-series-kw and --pv-capex-per-kw")
        pv_kws = parse_grid(args.pv_kw, "--pv-kw", allow_zero=True)
        pv_given: dict[str, Any] = {"om_per_kw_year": args.pv_om_per_kw_year,
                                    "degradation_per_year": args.pv_degradation,
                                    "lifetime_years": args.pv_lifetime_years}
        pv = PvCosts(args.pv_series_kw, args.pv_capex_per_kw, **{k: v for k, v in pv_given.items() if v is not None})
    genset_kws, gensets = None, None
    genset_prices = {"--genset-capex-per-kw": args.genset_capex_per_kw,
                     "--genset-om-per-kw-year": args.genset_om_per_kw_year}
    _sizes_for(genset_prices, args.genset_kw, "genset", "--genset-kw")
    if args.genset_kw is not None:
        genset_kws = parse_grid(args.genset_kw, "--genset-kw", allow_zero=True)
        gensets = GensetCosts(args.genset_capex_per_kw or 0.0, args.genset_om_per_kw_year or 0.0)
    if args.currency is not None and not re.fullmatch("[A-Z]{3}", args.currency):
        # as a tariff's `currency`: it is written into the page as it is
        raise ConfigError(f"--currency: an ISO 4217 code, three capitals (e.g. USD), not {args.currency!r}")
    opts = BacktestOptions(load_csv=args.load, tariff=args.tariff, load_scale=args.load_scale, step_s=args.step_s,
                           days=args.days, foresight=False, pv_csv=args.pv, start=args.start)
    arb = cfg.policies.arbitrage
    import_priced = True
    if is_offgrid(cfg):  # fuel and rent, and a weak grid's import bill where it has a tariff (ems/sizing_offgrid.py)
        try:
            tariff = weak_grid_tariff(cfg, opts)
        except BacktestError as exc:
            raise ConfigError(str(exc)) from None
        import_priced = tariff is not None
        currency = args.currency or ("" if tariff is None else tariff.currency)
    else:
        tariff_path = args.tariff or (None if arb is None else arb.tariff)
        if tariff_path is None:
            raise ConfigError("no tariff: pass --tariff or set policies.arbitrage.tariff")
        currency = args.currency or load_tariff(tariff_path).currency

    progress = None if args.quiet else ProgressLine("size", "points")
    try:
        s = sweep(cfg, opts, energies, powers, costs=costs, workers=args.workers, scheduler=args.scheduler,
                  planning_step_s=args.step_s, progress=progress, pv_kws=pv_kws, pv=pv,
                  genset_kws=genset_kws, gensets=gensets)
        files = write_outputs(args.out, s, currency)
    except (BacktestError, OSError) as exc:
        return _refused("size", progress, args.out, exc)
    _end(progress)
    best = s.best
    print(f"{plural(len(s.points), 'point')} in {s.wall_s:.1f} s on {s.workers} worker(s) ({s.scheduler})")
    dark = sum(not p.serves_load for p in s.points)
    if cfg.microgrid is not None and cfg.microgrid.mode.value == "weak_grid" and not import_priced:
        print("weak grid without a tariff: what it imports is not priced (as in `ems backtest`: the money is fuel "
              "and rent); NPV reads high by the import's cost (--tariff, or policies.arbitrage.tariff, prices it)")
    if dark:
        print(f"{dark} point(s) leave load unserved: never recommended")
    if best is None:
        # the dark points' NPV may well be > 0 (no fuel for the load left unserved): not "every NPV"
        print("no size on the grid serves the whole load" if dark == len(s.points)
              else "no size on the grid pays for itself (every NPV < 0)" if not dark
              else "no size on the grid that serves the whole load pays for itself (their NPV < 0)")
    else:
        payback = "never" if best.simple_payback_years is None else f"{best.simple_payback_years:.1f} y"
        with_pv = "" if best.pv_kw is None else f" with {best.pv_kw:,.0f} kW of PV"
        with_pv += "" if best.genset_kw is None else f" and {best.genset_kw:,.0f} kW of gensets"
        print(f"recommended {best.energy_kwh:,.0f} kWh / {best.power_kw:,.0f} kW{with_pv}: NPV {best.npv:,.0f}, "
              f"payback {payback}, IRR {'-' if best.irr is None else f'{100 * best.irr:.1f} %'}")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def cmd_forecast_eval(args: argparse.Namespace) -> int:
    from ems.backtest import BacktestError
    from ems.forecast import ForecastInputError
    from ems.forecast_eval import evaluate_year

    if args.json is not None and not args.json.parent.is_dir():  # known before minutes of fitting, not after
        print(f"ems forecast-eval: --json {args.json}: no folder {args.json.parent}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        s = evaluate_year(args.load, load_scale=args.load_scale, step_s=args.step_s, temperature_csv=args.temperature,
                          series_start=args.series_start, days=args.days, horizon_h=args.horizon_h)
    except (BacktestError, ForecastInputError, ValueError) as exc:
        print(f"ems forecast-eval: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{s.forecasts} forecasts, {s.targets} targets on {s.window}")
    print(f"MAE naive (same hour of week) {s.mae_naive_kw:,.1f} kW, configured (envelope + correction) "
          f"{s.mae_configured_kw:,.1f} kW, learned P50 {s.mae_model_kw:,.1f} kW")
    print(f"skill vs naive {100 * s.skill_vs_naive:.1f} %, vs configured {100 * s.skill_vs_configured:.1f} %; "
          f"P90 coverage {100 * s.p90_coverage:.1f} % (90 % is right)")
    print("skill vs naive by lead: " + ", ".join(f"{k} h {100 * v:.0f} %" for k, v in s.skill_by_lead_h.items()))
    print(f"{s.fits} fits, {s.fit_s:.1f} s fitting, {s.predict_ms_per_forecast:.2f} ms a forecast")
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(s.as_dict(), indent=1) + "\n")
        except OSError as exc:
            print(f"ems forecast-eval: --json {args.json}: cannot write: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_CONFIG
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    import logging

    from ems.scan import parse_target, scan, write_entry

    host, port = parse_target(args.target)
    # pymodbus logs a failed connect at ERROR ("Failed to connect ..."), a line before our own
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    code, lines, entry = asyncio.run(scan(host, port, args.unit, args.timeout, args.all))
    print("\n".join(lines))
    if args.entry is not None and entry is not None:
        write_entry(args.entry, entry)
        print(f"site-file entry written to {args.entry}")
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except EmsError as exc:  # any other of ours a command did not catch: its message, not a traceback
        print(f"ems {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
