"""Parameters of the plant model: the physics part of a site file's `simulation:` section.

The simulator (sim_devices/config.py) adds how it serves the plant; the backtest reads
the battery's part of it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SimBessConfig(_Model):
    """One modular BESS unit: a battery (BMS) behind an inverter (PCS)."""

    capacity_wh: float = Field(default=2_000_000, gt=0)
    rated_power_w: float = Field(default=1_000_000, gt=0)
    initial_soc: Fraction = 0.8
    soh: Fraction = 0.98
    charge_efficiency: float = Field(default=0.96, gt=0, le=1)
    discharge_efficiency: float = Field(default=0.96, gt=0, le=1)
    ramp_w_per_s: float = Field(default=2_000_000, gt=0)
    heartbeat_timeout_s: float = Field(default=10.0, ge=0, description="0 disables")
    nominal_voltage_v: float = Field(default=1000.0, gt=0)
    ambient_c: float = 25.0


class SimRackLoadConfig(_Model):
    """How the GPU racks draw power. `training` swings like synchronous jobs; `steady`
    holds a fixed fraction of nameplate (for crisp tests)."""

    model: Literal["training", "steady"] = "training"
    steady_fraction: Fraction = 0.6
    idle_fraction: Fraction = 0.15
    swing_low_fraction: Fraction = 0.40
    swing_high_fraction: Fraction = 1.00
    swing_hz_min: float = Field(default=0.2, gt=0)
    swing_hz_max: float = Field(default=3.0, gt=0)
    racks_per_job: int = Field(default=8, ge=1)
    mean_job_s: float = Field(default=4 * 3600.0, gt=0)
    mean_idle_s: float = Field(default=1800.0, gt=0)
    ramp_s: float = Field(default=60.0, ge=0)
    checkpoint_every_s: float = Field(default=1800.0, gt=0)
    checkpoint_s: float = Field(default=30.0, ge=0)
    checkpoint_fraction: Fraction = 0.30
    min_cap_fraction: Fraction = Field(default=0.25, description="lowest power a cap can force")
    cap_response_s: float = Field(default=0.2, ge=0, description="delay before a cap bites")
    telemetry_period_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> SimRackLoadConfig:
        if self.swing_low_fraction > self.swing_high_fraction:
            raise ValueError("swing_low_fraction must not exceed swing_high_fraction")
        if self.swing_hz_min > self.swing_hz_max:
            raise ValueError("swing_hz_min must not exceed swing_hz_max")
        return self


class SimPvConfig(_Model):
    peak_w: float = Field(ge=0)
    sunrise_h: float = Field(default=6.0, ge=0, le=24)
    sunset_h: float = Field(default=18.0, ge=0, le=24)


class SimGridConfig(_Model):
    nominal_voltage_v: float = Field(default=230.0, gt=0)
    nominal_frequency_hz: float = Field(default=50.0, gt=0)
    seamless_transfer: bool = Field(
        default=True, description="PCS hardware armed to form the island at the instant of grid loss")
    pcs_overload_ratio: float = Field(default=1.5, ge=1.0, description="above rating x this a PCS trips at once")
    pcs_overload_s: float = Field(default=2.0, ge=0, description="how long a PCS carries up to that overload")
    psu_holdup_s: float = Field(default=0.010, gt=0, description="rack PSU hold-up at full load")
    rack_reboot_s: float = Field(default=120.0, ge=0, description="a lost rack is back this long after power")
    connected: bool = Field(
        default=True, description="False: an off-grid site: no grid at all, the BESS forms the island from the start")


class SimGensetConfig(_Model):
    rated_power_w: float = Field(default=1_000_000, gt=0)
    start_delay_s: float = Field(default=10.0, ge=0)
    warmup_s: float = Field(default=20.0, ge=0)
    ramp_w_per_s: float = Field(default=200_000, gt=0)
    cooldown_s: float = Field(default=120.0, ge=0)
    fuel_idle_l_per_h: float = Field(default=20.0, ge=0)
    fuel_l_per_kwh: float = Field(default=0.25, ge=0)
    fails_to_start: bool = False


class SimFillerConfig(_Model):
    rated_power_w: float = Field(default=500_000, gt=0)
    response_s: float = Field(default=0.1, ge=0, le=60, description="from a setpoint to drawing it")
    watchdog_s: float = Field(default=5.0, gt=0, le=3600, description="no setpoint for this long: back to 0 W")


class ScenarioEvent(_Model):
    """Something that happens to the plant at a site time (seconds after the sim starts)."""

    at_s: float = Field(ge=0)
    action: Literal["rack_load", "rack_model", "pcs_fault", "pcs_clear_fault", "grid_loss", "grid_return",
                    "grid_dip", "genset_fail_next_start", "genset_trip"]
    fraction: Fraction | None = Field(default=None, description="rack_load: share of nameplate")
    rows: list[str] | None = Field(default=None, description="rack_load: limit to these rows")
    unit: str | None = Field(default=None, description="pcs_*: the BESS unit id")
    voltage_pu: float = Field(default=1.0, ge=0, le=2, description="grid_dip: the grid's voltage meanwhile")
    frequency_pu: float = Field(default=1.0, ge=0.5, le=1.5, description="grid_dip: its frequency")
    duration_s: float = Field(default=1.0, gt=0, le=86_400, description="grid_dip: how long")
    genset: str | None = Field(default=None, description="genset_*: the genset device (default: the site's `genset`)")

    @model_validator(mode="after")
    def _args(self) -> ScenarioEvent:
        if self.action == "rack_load" and self.fraction is None:
            raise ValueError("rack_load needs fraction")
        if self.action.startswith("pcs_") and self.unit is None:
            raise ValueError(f"{self.action} needs unit")
        return self


class PlantConfig(_Model):
    seed: int = 1
    max_substep_s: float = Field(default=1.0, gt=0, description="longest plant integration step")
    meter_average_s: float = Field(
        default=0.2, gt=0, le=3600,
        description="the meter's averaging window (its active_power_avg register); 0.2 s: IEC 61000-4-30's 10 cycles")
    start_hour: float = Field(default=0.0, ge=0, lt=24, description="site time of day at start")
    pue: float = Field(default=1.25, ge=1.0, le=3.0)
    pue_daily_amplitude: float = Field(default=0.0, ge=0, le=1.0, description="peaks at 15:00")
    bess: list[SimBessConfig] = Field(default_factory=lambda: [SimBessConfig()], min_length=1)
    racks: SimRackLoadConfig = SimRackLoadConfig()
    pv: SimPvConfig | None = None
    grid: SimGridConfig = SimGridConfig()
    genset: SimGensetConfig | None = None
    gensets: list[SimGensetConfig] = Field(
        default_factory=list, description="more gensets, one per `gensets:` device of the site file, in order")
    filler: SimFillerConfig | None = None
    scenario: list[ScenarioEvent] = Field(default_factory=list)
