"""The NVML layer and the GPU rack against a fake of pynvml's API (tests/fake_nvml.py):
power reads, limits, a rack cap split over GPUs, smoothing where supported, refusals."""

from __future__ import annotations

import pynvml
import pytest
from structlog.testing import capture_logs

from drivers.errors import DeviceUnavailable, MalformedData, NotSupported
from drivers.nvml import GpuNoPermission, NoGpu, close_gpus, open_gpus
from ems.agent.gpu_rack import GpuRack, split_budget_w
from ems.model.racks import SmoothingProfile
from tests.fake_nvml import FakeGpu, FakeNvml


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def opened(*gpus: FakeGpu, root: bool = True, clock: Clock | None = None) -> tuple[FakeNvml, GpuRack]:
    nvml = FakeNvml(list(gpus), root=root, clock=clock or Clock())
    return nvml, GpuRack(open_gpus(nvml), overhead_w=1_000.0)


# --- opening: no GPU is a clear refusal ------------------------------------------------------
@pytest.mark.parametrize(("code", "why"), [
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML: library libnvidia-ml not found"),
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "NVML: driver not loaded"),
])
def test_no_library_or_driver_is_no_gpu(code: int, why: str) -> None:
    with pytest.raises(NoGpu) as info:
        open_gpus(FakeNvml([FakeGpu()], init_error=code))
    assert str(info.value) == why


def test_no_device_is_no_gpu_and_nvml_is_shut_down() -> None:
    nvml = FakeNvml([])
    with pytest.raises(NoGpu, match="no device"):
        open_gpus(nvml)
    assert not nvml.initialised
    nvml = FakeNvml([FakeGpu()])
    with pytest.raises(NoGpu, match="no GPU at index 3"):
        open_gpus(nvml, indices=[0, 3])
    assert not nvml.initialised


def test_the_real_bindings_without_a_driver_are_no_gpu() -> None:
    # this machine has pynvml but no libnvidia-ml: the path `ems agent` takes here
    try:
        gpus = open_gpus()
    except NoGpu as exc:
        assert str(exc).startswith("NVML: ")
    else:  # a machine with a GPU: the layer opened it for real
        assert gpus
        close_gpus(gpus)


def test_open_reads_limits_in_watts_and_what_the_gpu_supports() -> None:
    nvml = FakeNvml([FakeGpu(min_mw=200_000, max_mw=700_000, default_mw=650_000, instant=False, energy=False)])
    (gpu,) = open_gpus(nvml, indices=[0])
    assert (gpu.limits.min_w, gpu.limits.max_w, gpu.limits.default_w) == (200.0, 700.0, 650.0)
    assert (gpu.instant_power, gpu.energy_counter, gpu.smoothing) == (False, False, None)
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    close_gpus([gpu])
    assert not nvml.initialised


# --- power ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("min_mw", "default_mw", "max_mw"), [
    (0, 700_000, 700_000),  # a cap of 0 W would have been set as is
    (200_000, 0, 700_000),  # a release set 0 W (clamped to a minimum of 0), a profile divided by 0
    (300_000, 250_000, 200_000),  # min above max: every limit set was out of range
    (200_000, 800_000, 700_000),
])
def test_a_gpu_with_a_senseless_limit_range_is_refused_at_open(min_mw: int, default_mw: int, max_mw: int) -> None:
    nvml = FakeNvml([FakeGpu(), FakeGpu(min_mw=min_mw, default_mw=default_mw, max_mw=max_mw)])
    with pytest.raises(MalformedData, match=r"gpu1: NVML reports power limits"):
        open_gpus(nvml)
    assert not nvml.initialised  # NVML shut down again
    assert "nvmlDeviceSetPowerManagementLimit" not in nvml.calls


def test_power_is_the_instantaneous_field_where_supported() -> None:
    nvml = FakeNvml([FakeGpu(draw_mw=412_500, average_mw=380_000)])
    (gpu,) = open_gpus(nvml)
    assert gpu.instant_power
    assert gpu.power_w() == 412.5  # the field, not the one-second average
    assert "nvmlDeviceGetPowerUsage" not in nvml.calls


def test_power_falls_back_to_power_usage_without_the_field() -> None:
    nvml = FakeNvml([FakeGpu(draw_mw=412_500, average_mw=380_000, instant=False)])
    (gpu,) = open_gpus(nvml)
    assert not gpu.instant_power
    assert gpu.power_w() == 380.0


def test_energy_counter_gives_the_average_since_the_last_reading() -> None:
    clock = Clock()
    nvml, rack = opened(FakeGpu(draw_mw=300_000), FakeGpu(draw_mw=500_000), clock=clock)
    first = rack.read(clock())
    assert first is not None
    assert first.power_w == 300.0 + 500.0 + 1_000.0  # no previous reading: the instantaneous field
    # gpu0 dipped to 100 W for one of the next 2 s and is back at 300 W when read: its counter
    # has 400 J for the 2 s, so it reports its 200 W average, not the 300 W of the moment
    nvml.gpus[0].energy_mj -= 200_000
    clock.t += 2.0
    second = rack.read(clock())
    assert second is not None
    assert second.gpu_power_w == pytest.approx((200.0, 500.0))


def test_a_gpu_that_cannot_be_read_publishes_nothing_until_it_answers() -> None:
    nvml, rack = opened(FakeGpu(), FakeGpu())
    nvml.gpus[1].fail["nvmlDeviceGetTotalEnergyConsumption"] = pynvml.NVML_ERROR_GPU_IS_LOST
    with capture_logs() as logs:
        assert rack.read(1.0) is None
        assert rack.read(2.0) is None
    assert [e["event"] for e in logs] == ["cannot read the GPUs: no telemetry until they answer"]  # once
    assert rack.counters.read_failures == 2
    with pytest.raises(DeviceUnavailable, match="gpu1"):
        rack.gpus[1].energy_j()
    del nvml.gpus[1].fail["nvmlDeviceGetTotalEnergyConsumption"]
    assert rack.read(3.0) is not None


def test_state_is_idle_below_the_share_of_default_limits() -> None:
    clock = Clock()
    nvml, rack = opened(FakeGpu(draw_mw=100_000), FakeGpu(draw_mw=100_000), clock=clock)
    sample = rack.read(clock())
    assert sample is not None and sample.state == "idle"  # 200 W of 1400 W
    for g in nvml.gpus:
        g.draw_mw = 600_000
    clock.t += 1.0
    sample = rack.read(clock())
    assert sample is not None and sample.state == "training"


# --- limits and the rack cap ----------------------------------------------------------------
def test_set_limit_is_clamped_to_the_constraints_and_sent_in_milliwatts() -> None:
    nvml = FakeNvml([FakeGpu(min_mw=200_000, max_mw=700_000)])
    (gpu,) = open_gpus(nvml)
    assert gpu.set_limit_w(123.4567) == 200.0
    assert nvml.gpus[0].limit_mw == 200_000
    assert gpu.set_limit_w(450.1234) == 450.1234
    assert nvml.gpus[0].limit_mw == 450_123
    assert gpu.limit_w() == 450.123
    assert gpu.set_limit_w(10_000.0) == 700.0


@pytest.mark.parametrize(("budget_w", "bounds", "expected"), [
    (1200.0, [(200.0, 700.0)] * 2, [600.0, 600.0]),  # an equal share
    (900.0, [(500.0, 700.0), (200.0, 700.0)], [500.0, 400.0]),  # one held at its minimum, the other takes less
    (1300.0, [(100.0, 400.0), (100.0, 1000.0)], [400.0, 900.0]),  # one held at its maximum, the other takes more
    (100.0, [(200.0, 700.0)] * 2, [200.0, 200.0]),  # below every minimum
    (5000.0, [(200.0, 700.0)] * 2, [700.0, 700.0]),  # above every maximum
])
def test_split_budget_fills_within_each_gpu_range(budget_w: float, bounds: list[tuple[float, float]],
                                                  expected: list[float]) -> None:
    assert split_budget_w(budget_w, bounds) == pytest.approx(expected, abs=1e-6)


def test_a_rack_cap_less_overhead_is_split_over_the_gpus_and_reported() -> None:
    nvml, rack = opened(FakeGpu(), FakeGpu(min_mw=400_000))
    assert rack.apply_cap(1_000.0 + 700.0)  # 700 W for the GPUs: 300 + 400 (the second's minimum)
    assert [g.limit_mw for g in nvml.gpus] == [300_000, 400_000]
    sample = rack.read(1.0)
    assert sample is not None
    assert sample.cap_w == pytest.approx(1_700.0)
    assert sample.power_w == pytest.approx(300.0 + 350.0 + 1_000.0)  # the first draws at its cap
    assert rack.counters.caps_applied == 1


def test_a_cap_never_raises_a_gpu_above_its_default_limit() -> None:
    nvml, rack = opened(FakeGpu(default_mw=600_000), FakeGpu(default_mw=600_000))
    assert rack.apply_cap(50_000.0)
    assert [g.limit_mw for g in nvml.gpus] == [600_000, 600_000]
    sample = rack.read(1.0)
    assert sample is not None and sample.cap_w is None  # at the defaults: no cap in force


def test_release_returns_every_gpu_to_its_default_limit() -> None:
    nvml, rack = opened(FakeGpu(), FakeGpu())
    rack.apply_cap(1_500.0)
    assert rack.apply_cap(None)
    assert [g.limit_mw for g in nvml.gpus] == [700_000, 700_000]
    sample = rack.read(1.0)
    assert sample is not None and sample.cap_w is None


def test_the_same_cap_again_is_not_resent_once_applied() -> None:
    nvml, rack = opened(FakeGpu(), FakeGpu())
    rack.apply_cap(1_500.0)
    sets = nvml.calls.count("nvmlDeviceSetPowerManagementLimit")
    rack.apply_cap(1_500.0)  # a row message re-sent for another rack's change
    assert nvml.calls.count("nvmlDeviceSetPowerManagementLimit") == sets
    assert rack.counters.caps_applied == 1


def test_without_permission_the_cap_is_refused_reported_once_and_retried() -> None:
    nvml, rack = opened(FakeGpu(), FakeGpu(), root=False)
    with pytest.raises(GpuNoPermission, match="gpu0"):
        rack.gpus[0].set_limit_w(300.0)
    with capture_logs() as logs:
        assert not rack.apply_cap(1_500.0)
        assert not rack.apply_cap(1_500.0)  # not applied: the next copy tries again
    assert [e["event"] for e in logs] == ["cannot set GPU power limits: run the agent as root"] * 2  # once per GPU
    assert rack.counters.caps_failed == 2
    assert [g.limit_mw for g in nvml.gpus] == [700_000, 700_000]
    sample = rack.read(1.0)
    assert sample is not None and sample.cap_w is None  # telemetry says what is in force, not what was asked
    nvml.root = True
    assert rack.apply_cap(1_500.0)
    assert [g.limit_mw for g in nvml.gpus] == [250_000, 250_000]


def test_a_lost_gpu_is_logged_once_per_gpu_not_once_per_command() -> None:
    # every row message retries a failed cap, and a peer can send thousands: one line, not one each
    nvml, rack = opened(FakeGpu(smoothing=True), FakeGpu(smoothing=True))
    lost = {"nvmlDeviceSetPowerManagementLimit": pynvml.NVML_ERROR_GPU_IS_LOST,
            "nvmlDevicePowerSmoothingUpdatePresetProfileParam": pynvml.NVML_ERROR_GPU_IS_LOST}
    nvml.gpus[1].fail.update(lost)
    with capture_logs() as logs:
        for k in range(5):
            assert not rack.apply_cap(1_500.0 + k)
            assert not rack.apply_profile(SmoothingProfile(1_500.0 + k, 100.0))
        nvml.gpus[1].fail.clear()
        assert rack.apply_cap(1_600.0)
        nvml.gpus[1].fail.update(lost)
        assert not rack.apply_cap(1_700.0)
    assert [(e["event"], e["gpu"]) for e in logs] == [
        ("setting a GPU power limit failed", "gpu1"), ("setting GPU power smoothing failed", "gpu1"),
        ("setting GPU power limits works again", "gpu1"), ("setting a GPU power limit failed", "gpu1")]
    assert rack.counters.caps_failed == 6 and rack.counters.profiles_failed == 5


# --- power smoothing --------------------------------------------------------------------------
def test_smoothing_profile_sets_floor_and_ramps_per_gpu_and_release_restores() -> None:
    nvml = FakeNvml([FakeGpu(smoothing=True), FakeGpu(smoothing=True)], clock=Clock())
    rack = GpuRack(open_gpus(nvml), overhead_w=1_000.0, smoothing_preset=2)
    assert all(g.smoothing is not None and not g.smoothing.enabled_at_start for g in rack.gpus)
    # the rack holds 1000 W + 2 x 350 W = 50 % of each GPU's 700 W TMP; ramps 400 W/s shared
    assert rack.apply_profile(SmoothingProfile(floor_w=1_700.0, ramp_w_per_s=400.0))
    P = pynvml
    for g in nvml.gpus:
        assert g.smoothing_enabled and g.active_profile == 2
        assert g.profiles[2] == {P.NVML_POWER_SMOOTHING_PROFILE_PARAM_PERCENT_TMP_FLOOR: pytest.approx(50.0),
                                 P.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_UP_RATE: 200.0,
                                 P.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_DOWN_RATE: 200.0}
    assert rack.counters.profiles_applied == 1
    assert rack.apply_profile(None)
    assert not any(g.smoothing_enabled for g in nvml.gpus)


def test_a_huge_but_finite_profile_gives_the_gpus_finite_values() -> None:
    nvml = FakeNvml([FakeGpu(smoothing=True), FakeGpu(smoothing=True)], clock=Clock())
    rack = GpuRack(open_gpus(nvml))
    assert rack.apply_profile(SmoothingProfile(floor_w=1.7e308, ramp_w_per_s=1.7e308))  # a valid message
    P = pynvml
    for g in nvml.gpus:
        params = g.profiles[0]
        assert params[P.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_UP_RATE] == pytest.approx(0.85e308)
        assert params[P.NVML_POWER_SMOOTHING_PROFILE_PARAM_RAMP_DOWN_RATE] == pytest.approx(0.85e308)
        assert params[P.NVML_POWER_SMOOTHING_PROFILE_PARAM_PERCENT_TMP_FLOOR] == 90.0  # the driver's maximum


def test_smoothing_floor_is_bounded_by_what_the_driver_allows() -> None:
    nvml = FakeNvml([FakeGpu(smoothing=True, floor_pct_range=(20.0, 80.0))], clock=Clock())
    (gpu,) = open_gpus(nvml)
    applied = gpu.set_smoothing(0, 700.0, 100.0, 50.0)
    assert (applied.floor_pct, applied.floor_w) == (80.0, 560.0)
    assert gpu.set_smoothing(0, 0.0, 100.0, 50.0).floor_pct == 20.0
    assert gpu.smoothing_enabled()


def test_smoothing_unsupported_is_reported_once_and_nothing_is_faked() -> None:
    nvml, rack = opened(FakeGpu(), FakeGpu())
    assert rack.gpus[0].smoothing is None
    with pytest.raises(NotSupported, match="power smoothing is not supported"):
        rack.gpus[0].set_smoothing(0, 300.0, 100.0, 100.0)
    with capture_logs() as logs:
        assert rack.apply_profile(SmoothingProfile(1_500.0, 400.0))  # done, as far as these GPUs can
        rack.apply_profile(SmoothingProfile(1_600.0, 400.0))
    assert [e["gpu"] for e in logs] == ["gpu0", "gpu1"]  # one line per GPU, not per command
    assert rack.counters.profiles_unsupported == 2 and rack.counters.profiles_applied == 0
    assert not any(c.startswith("nvmlDevicePowerSmoothing") for c in nvml.calls)
    assert [g.limit_mw for g in nvml.gpus] == [700_000, 700_000]  # no floor emulated with limits
    sample = rack.read(1.0)
    assert sample is not None and sample.cap_w is None


def test_smoothing_on_a_driver_without_the_functions_is_unsupported() -> None:
    nvml = FakeNvml([FakeGpu(smoothing=True)], clock=Clock())
    nvml.gpus[0].fail["nvmlDevicePowerSmoothingUpdatePresetProfileParam"] = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
    rack = GpuRack(open_gpus(nvml))
    assert rack.apply_profile(SmoothingProfile(300.0, 100.0))
    assert rack.counters.profiles_unsupported == 1


def test_smoothing_without_permission_is_refused() -> None:
    nvml = FakeNvml([FakeGpu(smoothing=True)], root=False, clock=Clock())
    rack = GpuRack(open_gpus(nvml))
    with pytest.raises(GpuNoPermission):
        rack.gpus[0].set_smoothing(0, 300.0, 100.0, 100.0)
    assert not rack.apply_profile(SmoothingProfile(300.0, 100.0))
    assert rack.counters.profiles_failed == 1
    assert not nvml.gpus[0].smoothing_enabled


# --- shutdown -------------------------------------------------------------------------------
def test_restore_puts_back_limits_and_the_smoothing_found_at_start() -> None:
    nvml = FakeNvml([FakeGpu(smoothing=True, smoothing_enabled=True, active_profile=1)], clock=Clock())
    rack = GpuRack(open_gpus(nvml), smoothing_preset=3)
    rack.apply_cap(400.0)
    rack.apply_profile(SmoothingProfile(300.0, 100.0))
    assert (nvml.gpus[0].limit_mw, nvml.gpus[0].active_profile) == (400_000, 3)
    assert rack.restore() == []
    gpu = nvml.gpus[0]
    assert (gpu.limit_mw, gpu.smoothing_enabled, gpu.active_profile) == (700_000, True, 1)


def test_restore_leaves_alone_what_the_agent_never_changed() -> None:
    nvml, rack = opened(FakeGpu(limit_mw=500_000), root=False)
    assert rack.restore() == []  # nothing was changed: nothing to put back, no permission needed
    assert nvml.gpus[0].limit_mw == 500_000


def test_a_command_that_reaches_the_gpus_after_restore_is_refused() -> None:
    # `serve` cancels the session, then restores; a cap handler's thread outlives its cancelled
    # task and, when a GPU read held the lock, may take the lock after restore: it must not cap
    nvml = FakeNvml([FakeGpu(smoothing=True), FakeGpu(smoothing=True)], clock=Clock())
    rack = GpuRack(open_gpus(nvml))
    rack.apply_cap(500.0)
    assert rack.restore() == []
    assert not rack.apply_cap(400.0)
    assert not rack.apply_profile(SmoothingProfile(300.0, 100.0))
    assert all(g.limit_mw == 700_000 and not g.smoothing_enabled for g in nvml.gpus)
    assert rack.restore() == []  # nothing left to put back


def test_a_write_whose_outcome_is_unknown_is_put_back_at_restore() -> None:
    # NVML timed out (or lost the GPU) after the driver took the setting: restore must not
    # skip the GPU as one the agent never changed
    nvml = FakeNvml([FakeGpu(smoothing=True), FakeGpu(smoothing=True)], clock=Clock())
    rack = GpuRack(open_gpus(nvml))
    for g in nvml.gpus:
        g.fail_after.update({"nvmlDeviceSetPowerManagementLimit": pynvml.NVML_ERROR_TIMEOUT,
                             "nvmlDevicePowerSmoothingSetState": pynvml.NVML_ERROR_TIMEOUT})
    assert not rack.apply_cap(500.0)
    assert not rack.apply_profile(SmoothingProfile(300.0, 100.0))
    assert all(g.limit_mw == 250_000 and g.smoothing_enabled for g in nvml.gpus)  # took effect all the same
    for g in nvml.gpus:
        g.fail_after.clear()
    assert rack.restore() == []
    assert all(g.limit_mw == 700_000 and not g.smoothing_enabled for g in nvml.gpus)


def test_a_write_refused_for_permission_is_not_put_back() -> None:
    nvml, rack = opened(FakeGpu(limit_mw=500_000), root=False)
    assert not rack.apply_cap(300.0)
    assert rack.restore() == []  # the refusal changed nothing: nothing to put back
    assert nvml.gpus[0].limit_mw == 500_000
