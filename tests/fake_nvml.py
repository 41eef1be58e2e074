"""A fake of NVML's Python API (pynvml) for tests: GPUs in memory, no driver.

NVML is a C library that CI machines cannot have; its bindings (pynvml, from nvidia-ml-py)
are pure Python and installed. The fake keeps pynvml's own constants, structures and
exception classes and replaces only the functions that call into libnvidia-ml, so the code
under test meets the real types (c_nvmlFieldValue_t arrays, NVMLError subclasses chosen by
error code, profile structures passed by pointer). Writes need `root`, as on a real node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    draw_mw: int = 350_000  # what the GPU would draw unconstrained; it draws min(draw, limit)
    average_mw: int | None = None  # what nvmlDeviceGetPowerUsage reports (default: the draw)
    min_mw: int = 200_000
    max_mw: int = 700_000
    default_mw: int = 700_000
    limit_mw: int | None = None  # None: the default
    limits_set_mw: list[int] = field(default_factory=list)  # every limit set, in order
    instant: bool = True  # NVML_FI_DEV_POWER_INSTANT answered
    energy: bool = True  # nvmlDeviceGetTotalEnergyConsumption answered
    smoothing: bool = False  # power smoothing (Blackwell or newer)
    smoothing_enabled: bool = False
    active_profile: int = 0
    floor_pct_range: tuple[float, float] = (10.0, 90.0)
    profiles: dict[int, dict[int, float]] = field(default_factory=dict)  # profile -> param -> value
    fail: dict[str, int] = field(default_factory=dict)  # function name -> NVML error code it raises
    delay_s: dict[str, float] = field(default_factory=dict)  # function name -> how long it blocks (a slow driver)
    fail_after: dict[str, int] = field(default_factory=dict)  # setter -> error code raised after it took effect
    energy_mj: float = 0.0
    _energy_at_s: float | None = None

    def __post_init__(self) -> None:
        if self.limit_mw is None:
            self.limit_mw = self.default_mw

    def drawn_mw(self) -> int:
        assert self.limit_mw is not None
        return min(self.draw_mw, self.limit_mw)


class FakeNvml:
    """Module-like: what the code reads from pynvml, with the library calls answered here."""

    def __init__(self, gpus: list[FakeGpu], *, init_error: int | None = None, root: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.root = root
        self.clock = clock
        self.initialised = False
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        # constants, structure classes and exception classes are the real ones
        return getattr(pynvml, name)

    def _enter(self, fn: str, handle: int | None = None, *, write: bool = False) -> FakeGpu | None:
        self.calls.append(fn)
        if not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        gpu = None if handle is None else self.gpus[handle]
        if gpu is not None and fn in gpu.delay_s:
            time.sleep(gpu.delay_s[fn])  # the real library blocks its calling thread the same way
        if gpu is not None and fn in gpu.fail:
            raise pynvml.NVMLError(gpu.fail[fn])
        if write and not self.root:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        return gpu

    def _gpu(self, fn: str, handle: int, *, write: bool = False) -> FakeGpu:
        gpu = self._enter(fn, handle, write=write)
        assert gpu is not None
        return gpu

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: int) -> list[int]:
        gpu = self._gpu("nvmlDeviceGetPowerManagementLimitConstraints", handle)
        return [gpu.min_mw, gpu.max_mw]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: int) -> int:
        return self._gpu("nvmlDeviceGetPowerManagementDefaultLimit", handle).default_mw

    def nvmlDeviceGetPowerManagementLimit(self, handle: int) -> int:
        limit = self._gpu("nvmlDeviceGetPowerManagementLimit", handle).limit_mw
        assert limit is not None
        return limit

    def nvmlDeviceSetPowerManagementLimit(self, handle: int, limit: int) -> None:
        gpu = self._gpu("nvmlDeviceSetPowerManagementLimit", handle, write=True)
        if not isinstance(limit, int) or not gpu.min_mw <= limit <= gpu.max_mw:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu.limit_mw = limit
        gpu.limits_set_mw.append(limit)
        self._after("nvmlDeviceSetPowerManagementLimit", gpu)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        gpu = self._gpu("nvmlDeviceGetPowerUsage", handle)
        return gpu.drawn_mw() if gpu.average_mw is None else gpu.average_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTotalEnergyConsumption", handle)
        if not gpu.energy:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        now = self.clock()
        if gpu._energy_at_s is not None:  # the counter integrates what the GPU drew since the last read
            gpu.energy_mj += gpu.drawn_mw() * (now - gpu._energy_at_s)
        gpu._energy_at_s = now
        return int(gpu.energy_mj)

    def nvmlDeviceGetFieldValues(self, handle: int, field_ids: list[int]) -> Any:
        gpu = self._gpu("nvmlDeviceGetFieldValues", handle)
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for v, fid in zip(values, field_ids, strict=True):
            v.fieldId = fid
            answer = self._field(gpu, fid)
            if answer is None:
                v.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            kind, number = answer
            v.nvmlReturn = pynvml.NVML_SUCCESS
            v.valueType = kind
            if kind == pynvml.NVML_VALUE_TYPE_DOUBLE:
                v.value.dVal = number
            else:
                v.value.uiVal = int(number)
        return values

    def _field(self, gpu: FakeGpu, fid: int) -> tuple[int, float] | None:
        uint, double = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, pynvml.NVML_VALUE_TYPE_DOUBLE
        if fid == pynvml.NVML_FI_DEV_POWER_INSTANT:
            return (uint, gpu.drawn_mw()) if gpu.instant else None
        if not gpu.smoothing:
            return None
        return {
            pynvml.NVML_FI_PWR_SMOOTHING_ENABLED: (uint, float(gpu.smoothing_enabled)),
            pynvml.NVML_FI_PWR_SMOOTHING_ACTIVE_PRESET_PROFILE: (uint, float(gpu.active_profile)),
            pynvml.NVML_FI_PWR_SMOOTHING_MIN_PERCENT_TMP_FLOOR_SETTING: (double, gpu.floor_pct_range[0]),
            pynvml.NVML_FI_PWR_SMOOTHING_MAX_PERCENT_TMP_FLOOR_SETTING: (double, gpu.floor_pct_range[1]),
        }.get(fid)

    # power smoothing: the C functions take a pointer to a versioned structure
    def _smoothing_gpu(self, fn: str, handle: int, struct: Any, version: int) -> FakeGpu:
        gpu = self._gpu(fn, handle, write=True)
        if not gpu.smoothing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if struct.contents.version != version:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return gpu

    def nvmlDevicePowerSmoothingUpdatePresetProfileParam(self, handle: int, profile: Any) -> None:
        gpu = self._smoothing_gpu("nvmlDevicePowerSmoothingUpdatePresetProfileParam", handle, profile,
                                  pynvml.nvmlPowerSmoothingProfile_v1)
        p = profile.contents
        if p.paramId == pynvml.NVML_POWER_SMOOTHING_PROFILE_PARAM_PERCENT_TMP_FLOOR and not (
                gpu.floor_pct_range[0] <= p.value <= gpu.floor_pct_range[1]):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu.profiles.setdefault(p.profileId, {})[p.paramId] = p.value

    def nvmlDevicePowerSmoothingActivatePresetProfile(self, handle: int, profile: Any) -> None:
        gpu = self._smoothing_gpu("nvmlDevicePowerSmoothingActivatePresetProfile", handle, profile,
                                  pynvml.nvmlPowerSmoothingProfile_v1)
        gpu.active_profile = profile.contents.profileId

    def nvmlDevicePowerSmoothingSetState(self, handle: int, state: Any) -> None:
        gpu = self._smoothing_gpu("nvmlDevicePowerSmoothingSetState", handle, state, pynvml.nvmlPowerSmoothingState_v1)
        gpu.smoothing_enabled = state.contents.state == pynvml.NVML_FEATURE_ENABLED
        self._after("nvmlDevicePowerSmoothingSetState", gpu)

    @staticmethod
    def _after(fn: str, gpu: FakeGpu) -> None:
        """A call that timed out (or lost the GPU) after the driver had applied it."""
        if fn in gpu.fail_after:
            raise pynvml.NVMLError(gpu.fail_after[fn])
