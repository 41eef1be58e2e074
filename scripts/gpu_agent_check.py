#!/usr/bin/env python3
"""`ems agent` against the real NVIDIA GPUs of this machine, end to end, in about 25 s.

    python scripts/gpu_agent_check.py [--json PATH]     (default: $OUT/gpu_agent_check.json when $OUT is set)

1. NVML through drivers/nvml.py: each GPU's name, limits, power (instantaneous field and
   nvmlDeviceGetPowerUsage), energy counter, power smoothing support and its bounds;
2. a private broker (Mosquitto if installed, else the embedded one) and `ems agent` as its
   own process on it;
3. its telemetry read and decoded as the controller decodes it;
4. a rack cap 10 % under the GPUs' default limits, then a smoothing profile, then both
   released, each over the row protocol; NVML read back to see whether they took (power
   limits and smoothing need root);
5. SIGTERM: the agent must exit 0 with every GPU back at its default limit.

Without a GPU it says so and exits 2. Exit 1 when a step that must work did not (telemetry,
restore, clean exit); a cap refused for lack of root is reported, not a failure. Needs the
project installed (`pip install -e .`); nothing else runs on the GPUs meanwhile is assumed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402
import yaml  # noqa: E402

from drivers import rack_protocol as rp  # noqa: E402
from drivers.errors import DriverError  # noqa: E402
from drivers.nvml import Gpu, NoGpu, close_gpus, open_gpus  # noqa: E402
from ems.broker import private_broker  # noqa: E402
from ems.model.racks import SmoothingProfile  # noqa: E402

RACK = "row01-rack01"
PREFIX = "ems/gpucheck"
PERIOD_S = 0.5


def probe(gpu: Gpu) -> dict[str, Any]:
    """What NVML says about one GPU, each read on its own (one failing must not hide the rest)."""
    nvml = gpu.nvml
    out: dict[str, Any] = {"index": gpu.index, "name": gpu.name, "min_w": gpu.limits.min_w,
                           "max_w": gpu.limits.max_w, "default_w": gpu.limits.default_w,
                           "instant_power_field": gpu.instant_power, "energy_counter": gpu.energy_counter}

    def read(key: str, fn: Any) -> None:
        try:
            out[key] = fn()
        except DriverError as exc:
            out[key] = f"error: {exc}"

    read("limit_w", gpu.limit_w)
    read("power_w", gpu.power_w)
    read("power_usage_w", lambda: nvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0)
    read("energy_j", gpu.energy_j)
    s = gpu.smoothing
    out["smoothing"] = None if s is None else {
        "enabled_at_start": s.enabled_at_start, "active_profile": s.active_profile_at_start,
        "floor_pct_range": [s.min_floor_pct, s.max_floor_pct]}
    return out


def each(gpus: list[Gpu], read: Callable[[Gpu], object]) -> list[object]:
    """`read` of every GPU; a failing read is reported in its place, not raised."""
    out: list[object] = []
    for g in gpus:
        try:
            out.append(read(g))
        except DriverError as exc:
            out.append(f"error: {exc}")
    return out


def limits_w(gpus: list[Gpu]) -> list[object]:
    return each(gpus, Gpu.limit_w)


def smoothing_on(gpus: list[Gpu]) -> list[object]:
    return each(gpus, Gpu.smoothing_enabled)


async def check(gpus: list[Gpu], report: dict[str, Any]) -> bool:
    defaults_w = [g.limits.default_w for g in gpus]
    cap_w = round(0.9 * sum(defaults_w), 1)  # the agent runs with no node overhead here
    ok = True
    async with private_broker("auto") as broker:
        report["broker"] = broker.kind
        with tempfile.TemporaryDirectory(prefix="ems-gpucheck-") as tmp:
            cfg = Path(tmp) / "agent.yaml"
            cfg.write_text(yaml.safe_dump({"rack_id": RACK, "telemetry_period_s": PERIOD_S,
                                           "mqtt": {"url": broker.url, "topic_prefix": PREFIX}}))
            agent = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ems.cli", "agent", "--config", str(cfg), "--log-format", "json",
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            telemetry: list[dict[str, Any]] = []
            try:
                async with aiomqtt.Client(broker.host, broker.port, identifier="gpu-check") as client:
                    await client.subscribe(rp.telemetry_topic(PREFIX, RACK), qos=0)

                    async def collect(seconds: float) -> list[rp.RackTelemetry]:
                        got: list[rp.RackTelemetry] = []
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(seconds):
                                async for m in client.messages:
                                    payload = m.payload if isinstance(m.payload, bytes) else b""
                                    t = rp.decode_telemetry(RACK, payload)  # the controller's decoder
                                    got.append(t)
                                    telemetry.append({"phase": phase, "power_w": t.power_w, "cap_w": t.cap_w,
                                                      "state": t.state, "seq": t.seq})
                        return got

                    async def send(topic: str, payload: bytes) -> None:
                        await client.publish(topic, payload, qos=1, retain=True)

                    phase = "start"
                    first = await collect(6.0)
                    report["telemetry_messages"] = len(first)
                    if not first:
                        report["problems"].append("no telemetry from the agent within 6 s")
                        return False
                    report["nameplate_w"] = first[-1].nameplate_w

                    phase = "capped"
                    await send(rp.row_caps_topic(PREFIX, "row01"), rp.encode_row_caps({RACK: cap_w}, 1))
                    capped = await collect(4.0)
                    report["cap"] = {"requested_w": cap_w, "gpu_limits_w": limits_w(gpus),
                                     "reported_cap_w": capped[-1].cap_w if capped else None}
                    applied = all(isinstance(w, float) for w in report["cap"]["gpu_limits_w"]) and \
                        sum(report["cap"]["gpu_limits_w"]) < sum(defaults_w) - 1.0
                    report["set_limit_permitted"] = applied

                    phase = "smoothing"
                    floor_w = round(0.3 * sum(defaults_w), 1)
                    profile = SmoothingProfile(floor_w=floor_w, ramp_w_per_s=round(0.5 * sum(defaults_w), 1))
                    await send(rp.row_smoothing_topic(PREFIX, "row01"), rp.encode_row_smoothing({RACK: profile}, 1))
                    await collect(3.0)
                    report["smoothing_profile"] = {"floor_w": profile.floor_w, "ramp_w_per_s": profile.ramp_w_per_s,
                                                   "gpu_enabled": smoothing_on(gpus)}

                    phase = "released"
                    await send(rp.row_caps_topic(PREFIX, "row01"), rp.encode_row_caps({RACK: None}, 2))
                    await send(rp.row_smoothing_topic(PREFIX, "row01"), rp.encode_row_smoothing({RACK: None}, 2))
                    released = await collect(3.0)
                    report["released"] = {"gpu_limits_w": limits_w(gpus), "gpu_smoothing": smoothing_on(gpus),
                                          "reported_cap_w": released[-1].cap_w if released else "no telemetry"}
                    if released and released[-1].cap_w is not None:
                        report["problems"].append("a cap is still reported after the release")
                        ok = False
            finally:
                if agent.returncode is None:
                    agent.send_signal(signal.SIGTERM)
                try:
                    _, err = await asyncio.wait_for(agent.communicate(), 20)
                except TimeoutError:
                    agent.kill()
                    _, err = await agent.communicate()
                    report["problems"].append("the agent did not stop within 20 s of SIGTERM")
                    ok = False
                report["telemetry"] = telemetry
                report["agent_exit"] = agent.returncode
                lines = err.decode(errors="replace").splitlines()
                report["agent_log"] = lines[-40:]
                for line in lines:
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        if isinstance(event, dict) and event.get("event") == "agent stopped":
                            report["agent_counters"] = event
    if report["agent_exit"] != 0:
        report["problems"].append(f"the agent exited {report['agent_exit']}, not 0")
        ok = False
    after = limits_w(gpus)
    report["limits_after_w"] = after
    if any(not isinstance(w, float) or abs(w - d) > 0.5 for w, d in zip(after, defaults_w, strict=True)):
        report["problems"].append(f"GPU limits not back at their defaults after the agent stopped: {after}")
        ok = False
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    out_dir = os.environ.get("OUT")
    parser.add_argument("--json", type=Path, default=Path(out_dir) / "gpu_agent_check.json" if out_dir else None)
    args = parser.parse_args()
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "problems": []}
    t0 = time.monotonic()
    try:
        gpus = open_gpus()
    except NoGpu as exc:
        print(f"gpu_agent_check: no NVIDIA GPU here ({exc}); run this on a GPU node", file=sys.stderr)
        report.update(ok=False, no_gpu=str(exc))
        _write(args.json, report)
        return 2
    try:
        report["gpus"] = [probe(g) for g in gpus]
        ok = asyncio.run(check(gpus, report))
    finally:
        close_gpus(gpus)
    report["ok"] = ok and not report["problems"]
    report["duration_s"] = round(time.monotonic() - t0, 1)
    _summary(report)
    _write(args.json, report)
    return 0 if report["ok"] else 1


def _summary(r: dict[str, Any]) -> None:
    for g in r.get("gpus", []):
        print(f"gpu{g['index']} {g['name']}: limits {g['min_w']:g}..{g['max_w']:g} W (default {g['default_w']:g}, "
              f"now {g['limit_w']}), power {g['power_w']} W (instant field: {g['instant_power_field']}; "
              f"nvmlDeviceGetPowerUsage {g['power_usage_w']} W), energy counter: {g['energy_counter']}, "
              f"smoothing: {g['smoothing'] or 'not supported'}")
    print(f"broker: {r.get('broker')}, telemetry messages at start: {r.get('telemetry_messages')}, "
          f"nameplate {r.get('nameplate_w')} W")
    print(f"cap: {r.get('cap')}; set_limit permitted: {r.get('set_limit_permitted')}")
    print(f"smoothing: {r.get('smoothing_profile')}")
    print(f"released: {r.get('released')}")
    print(f"agent exit: {r.get('agent_exit')}, counters: {r.get('agent_counters')}")
    print(f"limits after: {r.get('limits_after_w')}")
    print("OK" if r["ok"] else f"FAILED: {r['problems']}")


def _write(path: Path | None, report: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
