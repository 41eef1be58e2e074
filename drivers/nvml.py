"""NVIDIA GPUs through NVML (`pynvml`, package nvidia-ml-py): power, power limits, power smoothing.

The only module that touches pynvml. What leaves it is SI (W, J, W/s) and typed errors: no
NVML library, driver or device -> `NoGpu`; a feature this GPU or driver lacks ->
`NotSupported`; a setting this process may not change (NVML wants root for every write) ->
`GpuNoPermission`; anything else (GPU lost, timeout) -> `DeviceUnavailable`; a power limit
range that makes no sense (a minimum of 0, a default outside it) -> `MalformedData` at open. NVML counts in
milliwatts and millijoules; limits are set in whole milliwatts, clamped to the GPU's own
constraints before they are sent.

Every call is blocking C: callers on an event loop run them in a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.errors import DeviceRejected, DeviceUnavailable, DriverError, MalformedData, NotSupported


class NoGpu(DriverError):
    """No NVIDIA GPU can be used here: the NVML library, the driver or a device is missing."""


class GpuNoPermission(DeviceRejected):
    """NVML refused a setting for lack of permission (power limits and smoothing need root)."""


@dataclass(frozen=True, slots=True)
class PowerLimits:
    """A GPU's power limit range and its default, in W (nvmlDeviceGetPowerManagement*)."""

    min_w: float
    max_w: float
    default_w: float

    def clamp_w(self, w: float) -> float:
        return min(self.max_w, max(self.min_w, w))


@dataclass(frozen=True, slots=True)
class SmoothingSupport:
    """What a GPU offers for power smoothing (Blackwell or newer with a recent driver).

    The floor is set as a percentage of TMP (total module power), here taken as the GPU's
    largest power limit; the driver bounds it to [min_floor_pct, max_floor_pct]."""

    enabled_at_start: bool
    active_profile_at_start: int | None
    min_floor_pct: float
    max_floor_pct: float


@dataclass(frozen=True, slots=True)
class SmoothingApplied:
    """What a GPU was told: the floor after the driver's bounds, and the ramps."""

    floor_w: float
    floor_pct: float
    ramp_up_w_per_s: float
    ramp_down_w_per_s: float


def _pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise NoGpu("the NVML bindings (nvidia-ml-py) are not installed") from None
    return pynvml


def _why(nvml: Any, exc: Exception) -> str:
    code = getattr(exc, "value", None)
    if code == nvml.NVML_ERROR_LIBRARY_NOT_FOUND:
        return "library libnvidia-ml not found"
    if code == nvml.NVML_ERROR_DRIVER_NOT_LOADED:
        return "driver not loaded"
    if code == nvml.NVML_ERROR_NO_PERMISSION:
        return "no permission to open the driver"
    return str(exc)


def open_gpus(nvml: Any | None = None, indices: Sequence[int] | None = None) -> list[Gpu]:
    """Initialise NVML and open the GPUs at `indices` (all when None). `nvml` is the pynvml
    module or an object with its API (tests pass a fake). `close_gpus` shuts NVML down."""
    nvml = _pynvml() if nvml is None else nvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NoGpu(f"NVML: {_why(nvml, exc)}") from exc
    try:
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            raise NoGpu(f"NVML: cannot count devices: {_why(nvml, exc)}") from exc
        if count == 0:
            raise NoGpu("NVML: no device")
        wanted = list(range(count)) if indices is None else list(indices)
        missing = [i for i in wanted if not 0 <= i < count]
        if missing:
            raise NoGpu(f"NVML: no GPU at index {missing[0]} (this node has {count})")
        return [Gpu(nvml, i) for i in wanted]
    except BaseException:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
        raise


def close_gpus(gpus: Sequence[Gpu]) -> None:
    """Shut NVML down (once, whatever the number of GPUs opened)."""
    if gpus:
        nvml = gpus[0].nvml
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


class Gpu:
    """One GPU. Limits and what the GPU supports are read once, when it is opened."""

    def __init__(self, nvml: Any, index: int) -> None:
        self.nvml = nvml
        self.index = index
        self.device = f"gpu{index}"
        with self._call("open"):
            self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(self.handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
            lo_mw, hi_mw = nvml.nvmlDeviceGetPowerManagementLimitConstraints(self.handle)
            default_mw = nvml.nvmlDeviceGetPowerManagementDefaultLimit(self.handle)
        self.limits = PowerLimits(lo_mw / 1000.0, hi_mw / 1000.0, default_mw / 1000.0)
        if not 0 < self.limits.min_w <= self.limits.default_w <= self.limits.max_w:
            # every cap is clamped to this range and every release goes to the default: a
            # minimum of 0 would let a cap of 0 W through, a default of 0 make a release one
            raise MalformedData(f"{self.device}: NVML reports power limits min {self.limits.min_w:g} W, "
                                f"default {self.limits.default_w:g} W, max {self.limits.max_w:g} W: "
                                "not 0 < min <= default <= max")
        self.instant_power = self._field(nvml.NVML_FI_DEV_POWER_INSTANT) is not None
        try:
            self.energy_j()
            self.energy_counter = True
        except NotSupported:
            self.energy_counter = False
        self.smoothing = self._smoothing_support()

    def __repr__(self) -> str:
        return f"Gpu({self.device}, {self.name!r})"

    @contextlib.contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """Translate NVML's exceptions into ours, by error code (never by message)."""
        nvml = self.nvml
        try:
            yield
        except nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code in (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_FUNCTION_NOT_FOUND):
                raise NotSupported(f"{self.device}: {what}: not supported by this GPU or driver") from exc
            if code == nvml.NVML_ERROR_NO_PERMISSION:
                raise GpuNoPermission(self.device, f"{what}: not permitted (NVML needs root)") from exc
            raise DeviceUnavailable(self.device, f"{what}: NVML: {exc}") from exc

    def _field(self, field_id: int) -> float | None:
        """One field value (nvmlDeviceGetFieldValues), None where this GPU does not offer it."""
        try:
            with self._call(f"field {field_id}"):
                value = self.nvml.nvmlDeviceGetFieldValues(self.handle, [field_id])[0]
        except NotSupported:
            return None
        if value.nvmlReturn != self.nvml.NVML_SUCCESS:
            return None
        return _field_number(self.nvml, value)

    # --- power -------------------------------------------------------------------------------
    def power_w(self) -> float:
        """Power now: the instantaneous field where the GPU has it, else nvmlDeviceGetPowerUsage
        (on Ampere and newer a one-second average, on older GPUs a sample)."""
        if self.instant_power:
            mw = self._field(self.nvml.NVML_FI_DEV_POWER_INSTANT)
            if mw is not None:
                return mw / 1000.0
        with self._call("read power"):
            return float(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0

    def energy_j(self) -> float:
        """Energy since the driver was loaded (Volta and newer): differences give the exact
        average power between two reads. NotSupported where the GPU has no counter."""
        with self._call("read energy"):
            return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)) / 1000.0

    # --- limits ------------------------------------------------------------------------------
    def limit_w(self) -> float:
        """The power limit in force (nvmlDeviceGetPowerManagementLimit)."""
        with self._call("read power limit"):
            return float(self.nvml.nvmlDeviceGetPowerManagementLimit(self.handle)) / 1000.0

    def set_limit_w(self, w: float) -> float:
        """Set the power limit, clamped to the GPU's constraints; returns what was set."""
        applied_w = self.limits.clamp_w(w)
        with self._call("set power limit"):
            self.nvml.nvmlDeviceSetPowerManagementLimit(self.handle, round(applied_w * 1000.0))
        return applied_w

    # --- power smoothing ---------------------------------------------------------------------
    def _smoothing_support(self) -> SmoothingSupport | None:
        nvml = self.nvml
        enabled = self._field(nvml.NVML_FI_PWR_SMOOTHING_ENABLED)
        if enabled is None:
            return None
        active = self._field(nvml.NVML_FI_PWR_SMOOTHING_ACTIVE_PRESET_PROFILE)
        lo = self._field(nvml.NVML_FI_PWR_SMOOTHING_MIN_PERCENT_TMP_FLOOR_SETTING)
        hi = self._field(nvml.NVML_FI_PWR_SMOOTHING_MAX_PERCENT_TMP_FLOOR_SETTING)
        return SmoothingSupport(enabled_at_start=bool(enabled),
                                active_profile_at_start=None if active is None else int(active),
                                min_floor_pct=0.0 if lo is None else lo, max_floor_pct=100.0 if hi is None else hi)

    def _smoothing(self, what: str) -> SmoothingSupport:
        if self.smoothing is None:
            raise NotSupported(f"{self.device}: {what}: power smoothing is not supported by this GPU or driver")
        return self.smoothing

    def set_smoothing(self, profile_id: int, floor_w: float, ramp_up_w_per_s: float,
                      ramp_down_w_per_s: float) -> SmoothingApplied:
        """Write a floor and ramps into preset profile `profile_id`, activate it and switch
        smoothing on. The floor goes as a percentage of TMP, bounded by what the driver allows."""
        support = self._smoothing("set power smoothing")
        nvml = self.nvml
        pct = min(support.max_floor_pct, max(support.min_floor_pct, 100.0 * floor_w / self.limits.max_w))
        # the setter takes ramps in W/s (NVML API reference); the read-back fields report mW/s
        for param, value in ((nvml.NVML_POWER_SMOOTHING_PROFILE_PARAM_PERCENT_TMP_FLOOR, pct),
                             (nvml.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_UP_RATE, ramp_up_w_per_s),
                             (nvml.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_DOWN_RATE, ramp_down_w_per_s)):
            profile = nvml.c_nvmlPowerSmoothingProfile_v1_t()
            profile.profileId, profile.paramId, profile.value = profile_id, param, float(value)
            with self._call("set power smoothing profile"):
                nvml.nvmlDevicePowerSmoothingUpdatePresetProfileParam(self.handle, ctypes.pointer(profile))
        self._activate(profile_id)
        self._set_state(True)
        return SmoothingApplied(pct * self.limits.max_w / 100.0, pct, ramp_up_w_per_s, ramp_down_w_per_s)

    def _activate(self, profile_id: int) -> None:
        profile = self.nvml.c_nvmlPowerSmoothingProfile_v1_t()
        profile.profileId = profile_id
        with self._call("activate power smoothing profile"):
            self.nvml.nvmlDevicePowerSmoothingActivatePresetProfile(self.handle, ctypes.pointer(profile))

    def _set_state(self, enabled: bool) -> None:
        state = self.nvml.c_nvmlPowerSmoothingState_v1_t()
        state.state = self.nvml.NVML_FEATURE_ENABLED if enabled else self.nvml.NVML_FEATURE_DISABLED
        with self._call("switch power smoothing"):
            self.nvml.nvmlDevicePowerSmoothingSetState(self.handle, ctypes.pointer(state))

    def restore_smoothing(self) -> None:
        """Smoothing as it was when the GPU was opened: off, or on with the profile then active."""
        support = self._smoothing("restore power smoothing")
        if support.enabled_at_start:
            if support.active_profile_at_start is not None:
                self._activate(support.active_profile_at_start)
            self._set_state(True)
        else:
            self._set_state(False)

    def smoothing_enabled(self) -> bool | None:
        """Whether smoothing is on now (None where the GPU has no smoothing)."""
        value = self._field(self.nvml.NVML_FI_PWR_SMOOTHING_ENABLED)
        return None if value is None else bool(value)


def _field_number(nvml: Any, value: Any) -> float:
    """A c_nvmlFieldValue_t's number, read from the union member its valueType names."""
    member = {
        nvml.NVML_VALUE_TYPE_DOUBLE: "dVal", nvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal", nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
        nvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal", nvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
    }.get(value.valueType, "uiVal")
    return float(getattr(value.value, member))
