"""A simulated site controlled by an active/standby pair of `ems run` processes (ems/ha).

For the takeover benchmark and its test: `ems sim` serves the site (PCS heartbeat timeout
2 s by default), two `ems run` processes on one site file with their own state folders
share the lease; `kill_active()` sends SIGKILL to whichever holds it, `takeover()` waits
for the other's first write in a newer epoch (from its event log), `restart()` brings the
killed one back as the standby. Every figure comes from the processes' own event logs,
the lease bucket and the plant's ground truth.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ems.broker import free_port
from ems.ha.lease import KvLease
from ems.ha.settings import HaConfig
from sim_devices.netns import PairNetwork

HOLDERS = ("a", "b")


def pair_site(mqtt_url: str, nats_url: str, bucket: str, period_s: float, heartbeat_timeout_s: float,
              devices_host: str = "127.0.0.1") -> dict[str, Any]:
    def ep(profile: str) -> dict[str, Any]:
        return {"host": devices_host, "port": free_port(), "profile": profile}

    return {
        "site": "ha-pair",
        "control": {"period_s": period_s, "setpoint_deadband_w": 500.0},
        "mqtt": {"url": mqtt_url, "topic_prefix": f"ems/ha{free_port()}"},
        "meter": ep("meter_v1"),
        "bess_units": [{"id": f"bess-{i + 1}", "bms": ep("bms_v1"), "pcs": ep("pcs_v1")} for i in range(2)],
        "racks": {"rows": 2, "racks_per_row": 4, "nameplate_w": 40_000.0},
        "policies": {"battery": {"soc_min": 0.1, "soc_max": 0.95},
                     "peak_shaving": {"grid_import_cap_w": 250_000.0, "recharge_below_w": 150_000.0}},
        "ha": {"nats_url": nats_url, "bucket": bucket},
        "simulation": {
            "seed": 3, "speed": 1.0, "pue": 1.25,
            "bess": [{"capacity_wh": 1_000_000, "rated_power_w": 500_000, "initial_soc": 0.7,
                      "ramp_w_per_s": 2_000_000, "heartbeat_timeout_s": heartbeat_timeout_s}],
            "racks": {"model": "steady", "steady_fraction": 0.8, "telemetry_period_s": 0.5},
        },
    }


@dataclass(frozen=True)
class Kill:
    holder: str
    epoch: int
    wall_s: float
    acknowledged: frozenset[str]  # event origins in the handover when it died


class HaPair:
    def __init__(self, folder: Path, mqtt_url: str, nats_url: str, period_s: float = 0.2,
                 heartbeat_timeout_s: float = 2.0, nats_urls: dict[str, str] | None = None,
                 network: PairNetwork | None = None) -> None:
        """`nats_urls`: each controller's own way to NATS (a relay a campaign can cut), by holder.
        `network`: each controller on a "machine" of its own (sim_devices/netns.py); the site's
        devices then listen on the network's host address, as the broker and NATS must."""
        self.folder = folder
        self.network = network
        self.bucket = f"ems_bench_{uuid.uuid4().hex[:10]}"
        self.cfg = pair_site(mqtt_url, nats_url, self.bucket, period_s, heartbeat_timeout_s,
                             "127.0.0.1" if network is None else network.host_ip)
        self.site_path = folder / "site.yaml"
        self.site_path.write_text(yaml.safe_dump(self.cfg))
        self.site_paths = {h: self.site_path for h in HOLDERS}
        for h, url in (nats_urls or {}).items():  # the same site file but for the way to NATS
            self.site_paths[h] = folder / f"site-{h}.yaml"
            self.site_paths[h].write_text(yaml.safe_dump({**self.cfg, "ha": {**self.cfg["ha"], "nats_url": url}}))
        self.truth_path = folder / "truth.json"
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.sim: asyncio.subprocess.Process | None = None
        self.lease = KvLease(HaConfig.model_validate(self.cfg["ha"]), self.cfg["site"], "observer")

    def _db(self, holder: str) -> Path:
        return self.folder / holder / "events.db"

    async def start(self) -> None:
        self.sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ems.cli", "sim", "--config", str(self.site_path), "--summary-json",
            str(self.truth_path), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(1.5)
        await self.lease.connect()
        await asyncio.gather(*(self.restart(h) for h in HOLDERS))
        await self.wait_active_writing()

    async def restart(self, holder: str) -> None:
        """Start (again) one controller and wait until it reaches NATS (its event log says so)."""
        before = self.count(holder, "ha_nats_up")
        (self.folder / holder).mkdir(exist_ok=True)
        machine = [] if self.network is None else self.network.exec_prefix(holder)
        self.procs[holder] = await asyncio.create_subprocess_exec(
            *machine, sys.executable, "-m", "ems.cli", "run", "--config", str(self.site_paths[holder]), "--state-dir",
            str(self.folder / holder), "--ha-id", holder, "--log-format", "json",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        end = time.monotonic() + 20.0
        while self.count(holder, "ha_nats_up") <= before:
            if time.monotonic() > end:
                raise RuntimeError(f"controller {holder} did not reach NATS")
            await asyncio.sleep(0.05)

    async def current(self) -> tuple[str, int] | None:
        cur = await self.lease.current()
        if cur is None or not cur[0].get("epoch"):
            return None
        return str(cur[0]["holder"]), int(cur[0]["epoch"])

    def events(self, holder: str, kind: str | None = None) -> list[dict[str, Any]]:
        path = self._db(holder)
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            sql, args = "SELECT id, wall_s, kind, data FROM events", tuple[str, ...]()
            if kind is not None:
                sql, args = sql + " WHERE kind = ?", (kind,)
            rows = db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()
        return [{"id": r[0], "wall_s": r[1], "kind": r[2], "data": json.loads(r[3])} for r in rows]

    def count(self, holder: str, kind: str) -> int:
        return len(self.events(holder, kind))

    async def wait_active_writing(self, timeout_s: float = 10.0) -> tuple[str, int]:
        """Until the lease holder has written in its epoch."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            cur = await self.current()
            if cur is not None and any(e["data"].get("epoch") == cur[1]
                                       for e in self.events(cur[0], "ha_writing")):
                return cur
            await asyncio.sleep(0.02)
        raise RuntimeError("the active did not write")

    async def kill_active(self) -> Kill:
        holder, epoch = await self.wait_active_writing()
        state = await self.lease.get_state()
        self.procs[holder].send_signal(signal.SIGKILL)
        wall = time.time()
        await self.procs[holder].wait()
        # what it had acknowledged: the handover in the bucket when it died
        state = await self.lease.get_state() or state or {}
        acked = frozenset(str(e.get("origin")) for e in state.get("events") or [])
        return Kill(holder, epoch, wall, acked)

    async def takeover(self, kill: Kill, timeout_s: float = 10.0) -> tuple[float, int] | None:
        """Seconds from the kill (or cut) to the other controller's first write in a newer epoch,
        and how many acknowledged events its log lacks."""
        other = next(h for h in HOLDERS if h != kill.holder)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            first = [e for e in self.events(other, "ha_writing") if int(e["data"].get("epoch") or 0) > kill.epoch]
            if first:
                have = {str(e["data"].get("origin") or f"{other}:{e['id']}") for e in self.events(other)}
                return first[0]["wall_s"] - kill.wall_s, len(kill.acknowledged - have)
            await asyncio.sleep(0.01)
        return None

    async def cut_active(self, cut: Callable[[str], None]) -> Kill:
        """Cut the lease holder off by `cut(holder)` (its machine off the network, or its way to NATS),
        the process left running."""
        holder, epoch = await self.wait_active_writing()
        state = await self.lease.get_state() or {}
        cut(holder)
        return Kill(holder, epoch, time.time(), frozenset(str(e.get("origin")) for e in state.get("events") or []))

    async def fenced_before(self, kill: Kill, timeout_s: float = 10.0) -> bool:
        """The cut-off active's last write came before the other's first write in a newer epoch. Its
        own record of the fence may come late (cut off the network, each period waits out its
        device timeouts before it gets to record anything): waited for up to `timeout_s`."""
        other = next(h for h in HOLDERS if h != kill.holder)
        end = time.monotonic() + timeout_s
        while True:
            fenced = [e for e in self.events(kill.holder, "ha_fenced") if e["data"].get("epoch") == kill.epoch]
            if fenced or time.monotonic() > end:
                break
            await asyncio.sleep(0.05)
        first = [e for e in self.events(other, "ha_writing") if int(e["data"].get("epoch") or 0) > kill.epoch]
        if not fenced or not first:
            return False
        last = fenced[-1]["data"].get("last_write_wall_s")
        return last is None or float(last) < float(first[0]["wall_s"])

    def two_writer_epochs(self) -> int:
        """Epochs in which more than one controller wrote (from both event logs)."""
        writers: dict[int, set[str]] = {}
        for h in HOLDERS:
            for e in self.events(h, "ha_writing"):
                if e["data"].get("origin") is None:  # its own, not one handed over
                    writers.setdefault(int(e["data"]["epoch"]), set()).add(h)
        return sum(1 for w in writers.values() if len(w) > 1)

    async def stop(self) -> dict[str, Any]:
        """The standby first (so the active's stop hands over to nobody), then the active, then the site."""
        cur = await self.current()
        order = sorted(self.procs, key=lambda h: cur is not None and h == cur[0])
        for h in order:
            proc = self.procs[h]
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
        await self.lease.close()
        if self.sim is not None and self.sim.returncode is None:
            self.sim.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.sim.wait(), 15)
            except TimeoutError:
                self.sim.kill()
        if not self.truth_path.exists():
            raise RuntimeError("the simulator wrote no ground truth (it did not stop cleanly)")
        truth: dict[str, Any] = json.loads(self.truth_path.read_text())
        return truth
