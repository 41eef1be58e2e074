"""One rack made of GPUs: the controller's rack cap and smoothing profile applied to each GPU,
and the rack's telemetry read back from them.

The controller speaks in racks (docs/topics.md), NVML in GPUs. A cap, less the node's own
overhead, is split over the GPUs within each one's limit range; a smoothing profile's floor
and ramp are split the same way onto the GPUs that support smoothing. What a GPU cannot do
(no smoothing, no permission) is reported — a log line once, a counter — and never faked:
without smoothing a cap still bounds power, but nothing holds a floor.

Calls are blocking (NVML): the agent runs them in a thread, one at a time (a lock).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from drivers.errors import DriverError, NotSupported
from drivers.nvml import Gpu, GpuNoPermission
from ems.model.racks import SmoothingProfile

log = structlog.get_logger("ems.agent")

LIMIT_TOLERANCE_W = 0.5  # NVML sets limits in whole mW; below default by less than this is "at default"


def split_budget_w(budget_w: float, bounds: Sequence[tuple[float, float]]) -> list[float]:
    """Per-GPU values within each GPU's (low, high) that add up to `budget_w` where they can:
    one common level, clamped per GPU (water filling), so GPUs held at a bound leave their share
    to the others. Below the sum of lows every GPU sits at its low; above the highs, at its high."""
    lows = [lo for lo, _ in bounds]
    highs = [hi for _, hi in bounds]
    if budget_w <= sum(lows):
        return lows
    if budget_w >= sum(highs):
        return highs
    lo_level, hi_level = min(lows), max(highs)
    for _ in range(100):  # bisection on the level; 100 halvings is far below a milliwatt
        level = (lo_level + hi_level) / 2
        if sum(min(hi, max(lo, level)) for lo, hi in bounds) < budget_w:
            lo_level = level
        else:
            hi_level = level
    return [min(hi, max(lo, hi_level)) for lo, hi in bounds]


@dataclass
class RackCounters:
    """What happened to the commands and reads, for the status log and the device check."""

    caps_applied: int = 0
    caps_failed: int = 0  # at least one GPU refused or failed (permission, GPU lost)
    profiles_applied: int = 0
    profiles_unsupported: int = 0  # at least one GPU has no power smoothing
    profiles_failed: int = 0
    read_failures: int = 0


@dataclass(frozen=True, slots=True)
class RackSample:
    """One telemetry reading of the rack."""

    power_w: float  # GPUs plus node overhead
    gpu_power_w: tuple[float, ...]
    cap_w: float | None  # GPU limits in force plus overhead, where any GPU is held below its default
    state: str  # "training" or "idle"


@dataclass
class _Request:
    """The last command of a kind and whether every GPU took it (else the next copy retries)."""

    value: object = None
    done: bool = False


@dataclass
class _State:
    cap: _Request = field(default_factory=_Request)
    profile: _Request = field(default_factory=_Request)
    limits_set: set[int] = field(default_factory=set)  # GPUs whose power limit the agent changed
    smoothing_set: set[int] = field(default_factory=set)  # GPUs whose smoothing the agent changed
    energy: list[tuple[float, float] | None] = field(default_factory=list)  # (monotonic s, J) at the last read
    reading_failed: bool = False
    restored: bool = False  # shut down: a command still on its way to the lock must not cap the GPUs again


class GpuRack:
    def __init__(self, gpus: Sequence[Gpu], *, overhead_w: float = 0.0, idle_below_share: float = 0.25,
                 smoothing_preset: int = 0, nameplate_w: float | None = None) -> None:
        if not gpus:
            raise ValueError("a rack needs at least one GPU")
        self.gpus = tuple(gpus)
        self.overhead_w = overhead_w
        self.idle_below_share = idle_below_share
        self.smoothing_preset = smoothing_preset
        self.default_sum_w = sum(g.limits.default_w for g in gpus)
        self.nameplate_w = nameplate_w if nameplate_w is not None else sum(g.limits.max_w for g in gpus) + overhead_w
        self.counters = RackCounters()
        self._lock = threading.Lock()
        self._state = _State(energy=[None] * len(self.gpus))
        self._logged: set[str] = set()

    def _once(self, key: str, event: str, **kw: object) -> None:
        """Log a problem once per GPU and kind: a GPU without smoothing or root stays without it."""
        if key not in self._logged:
            self._logged.add(key)
            log.warning(event, **kw)

    def _recovered(self, key: str, event: str, **kw: object) -> None:
        """A problem logged by `_once` is over: say so once, and log it again if it recurs."""
        if key in self._logged:
            self._logged.discard(key)
            log.info(event, **kw)

    def _bounds(self) -> list[tuple[float, float]]:
        # a cap is a ceiling: it never raises a GPU above its default limit
        return [(g.limits.min_w, g.limits.default_w) for g in self.gpus]

    # --- caps --------------------------------------------------------------------------------
    def apply_cap(self, cap_w: float | None) -> bool:
        """Cap the rack at `cap_w` (None: every GPU back to its default limit). Returns whether
        every GPU took it. The same request again is not re-sent once it has been applied."""
        with self._lock:
            if self._state.restored:
                return False
            req = self._state.cap
            if req.done and req.value == cap_w:
                return True
            targets = ([g.limits.default_w for g in self.gpus] if cap_w is None
                       else split_budget_w(cap_w - self.overhead_w, self._bounds()))
            ok = all([self._set_limit(i, w) for i, w in enumerate(targets)])  # a list: every GPU is tried
            self._state.cap = _Request(cap_w, ok)
            if ok:
                self.counters.caps_applied += 1
            else:
                self.counters.caps_failed += 1
            return ok

    def _set_limit(self, i: int, w: float) -> bool:
        gpu = self.gpus[i]
        try:
            gpu.set_limit_w(w)
            self._state.limits_set.add(i)
            self._recovered(f"cap-failed:{gpu.device}", "setting GPU power limits works again", gpu=gpu.device)
            return True
        except GpuNoPermission as exc:
            self._once(f"cap-permission:{gpu.device}", "cannot set GPU power limits: run the agent as root",
                       gpu=gpu.device, error=str(exc))
        except NotSupported as exc:
            self._once(f"cap-unsupported:{gpu.device}", "this GPU has no settable power limit",
                       gpu=gpu.device, error=str(exc))
        except DriverError as exc:  # a lost GPU fails every command: once until it takes one again
            # a timeout may come after the driver took the limit: restore puts it back to be sure
            self._state.limits_set.add(i)
            self._once(f"cap-failed:{gpu.device}", "setting a GPU power limit failed", gpu=gpu.device,
                       error=str(exc))
        return False

    # --- smoothing ---------------------------------------------------------------------------
    def apply_profile(self, profile: SmoothingProfile | None) -> bool:
        """Hold the rack at `profile` (floor and ramp, for the whole rack) on every GPU that can;
        None switches smoothing back to how it was. Returns whether every GPU took it."""
        with self._lock:
            if self._state.restored:
                return False
            req = self._state.profile
            if req.done and req.value == profile:
                return True
            ok = self._release_smoothing() if profile is None else self._set_smoothing(profile)
            self._state.profile = _Request(profile, ok)
            return ok

    def _set_smoothing(self, profile: SmoothingProfile) -> bool:
        floors = split_budget_w(max(0.0, profile.floor_w - self.overhead_w), [(0.0, hi) for _, hi in self._bounds()])
        unsupported = failed = False
        for i, (gpu, floor_w) in enumerate(zip(self.gpus, floors, strict=True)):
            # the rack's ramp shared in proportion to each GPU's default limit (the share first:
            # a finite but huge ramp times a limit in W overflowed to inf, which went to NVML)
            ramp = profile.ramp_w_per_s * (gpu.limits.default_w / self.default_sum_w)
            try:
                gpu.set_smoothing(self.smoothing_preset, floor_w, ramp, ramp)
                self._state.smoothing_set.add(i)
                self._recovered(f"smoothing-failed:{gpu.device}", "setting GPU power smoothing works again",
                                gpu=gpu.device)
            except NotSupported as exc:
                unsupported = True
                self._once(f"smoothing-unsupported:{gpu.device}",
                           "GPU has no power smoothing: its floor and ramp are not applied (a cap still bounds power)",
                           gpu=gpu.device, name=gpu.name, error=str(exc))
            except GpuNoPermission as exc:
                failed = True
                self._once(f"smoothing-permission:{gpu.device}",
                           "cannot set GPU power smoothing: run the agent as root", gpu=gpu.device, error=str(exc))
            except DriverError as exc:
                failed = True
                self._state.smoothing_set.add(i)  # some steps may have taken effect: restore to be sure
                self._once(f"smoothing-failed:{gpu.device}", "setting GPU power smoothing failed", gpu=gpu.device,
                           error=str(exc))
        if unsupported:
            self.counters.profiles_unsupported += 1
        if failed:
            self.counters.profiles_failed += 1
        if not (unsupported or failed):
            self.counters.profiles_applied += 1
        # a GPU without smoothing will not gain it: the request counts as done for it
        return not failed

    def _release_smoothing(self) -> bool:
        return not self._restore_smoothing()

    def _restore_smoothing(self) -> list[str]:
        """Smoothing back to how it was on every GPU the agent changed; the GPUs that failed."""
        failed = []
        for i in sorted(self._state.smoothing_set):
            gpu = self.gpus[i]
            try:
                gpu.restore_smoothing()
                self._state.smoothing_set.discard(i)
                self._recovered(f"smoothing-restore-failed:{gpu.device}",
                                "switching GPU power smoothing back works again", gpu=gpu.device)
            except DriverError as exc:
                failed.append(gpu.device)
                self._once(f"smoothing-restore-failed:{gpu.device}", "could not switch GPU power smoothing back",
                           gpu=gpu.device, error=str(exc))
        return failed

    # --- telemetry ---------------------------------------------------------------------------
    def read(self, now_s: float) -> RackSample | None:
        """The rack's power (average since the last read where the GPUs count energy), the cap in
        force and a state. None when a GPU cannot be read: a guess is never published."""
        with self._lock:
            try:
                powers = tuple(self._gpu_power_w(i, g, now_s) for i, g in enumerate(self.gpus))
                limits = [g.limit_w() for g in self.gpus]
            except DriverError as exc:
                self.counters.read_failures += 1
                self._state.energy = [None] * len(self.gpus)
                if not self._state.reading_failed:
                    self._state.reading_failed = True
                    log.warning("cannot read the GPUs: no telemetry until they answer", error=str(exc))
                return None
            if self._state.reading_failed:
                self._state.reading_failed = False
                log.info("GPUs readable again")
        capped = any(w < g.limits.default_w - LIMIT_TOLERANCE_W for w, g in zip(limits, self.gpus, strict=True))
        gpu_w = sum(powers)
        return RackSample(
            power_w=gpu_w + self.overhead_w, gpu_power_w=powers,
            cap_w=sum(limits) + self.overhead_w if capped else None,
            state="training" if gpu_w >= self.idle_below_share * self.default_sum_w else "idle",
        )

    def _gpu_power_w(self, i: int, gpu: Gpu, now_s: float) -> float:
        if gpu.energy_counter:
            energy_j = gpu.energy_j()
            last = self._state.energy[i]
            self._state.energy[i] = (now_s, energy_j)
            # a counter that went back (driver reloaded) starts over with a sample
            if last is not None and now_s > last[0] and energy_j >= last[1]:
                return (energy_j - last[1]) / (now_s - last[0])
        return gpu.power_w()

    # --- shutdown ----------------------------------------------------------------------------
    def restore(self) -> list[str]:
        """Every GPU the agent changed back to its default limit and its smoothing as it was
        (shutdown), and no command after it: a handler's thread outlives its cancelled task
        and may reach the lock after this. Returns the GPUs that could not be restored."""
        with self._lock:
            self._state.restored = True
            failed = [self.gpus[i].device for i in sorted(self._state.limits_set)
                      if not self._set_limit(i, self.gpus[i].limits.default_w)]
            self._state.limits_set.clear()
            failed += self._restore_smoothing()
            self._state.cap = _Request()
            self._state.profile = _Request()
            return sorted(set(failed))

    def describe(self) -> dict[str, object]:
        """What NVML reported at start, for the start-up log line and the device check."""
        return {
            "gpus": [{"index": g.index, "name": g.name, "min_w": g.limits.min_w, "max_w": g.limits.max_w,
                      "default_w": g.limits.default_w, "instant_power": g.instant_power,
                      "energy_counter": g.energy_counter, "smoothing": g.smoothing is not None} for g in self.gpus],
            "overhead_w": self.overhead_w, "nameplate_w": self.nameplate_w,
        }

