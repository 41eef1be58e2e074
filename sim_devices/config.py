"""The simulator's view of a site file: the devices it serves and its `simulation:` section.

`ems sim` and `ems demo` read it; the controller's schema (ems/config.py) keeps the
`simulation:` section unparsed, and sections the simulator does not serve (policies,
control, http, ...) are left to the controller's schema.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from ems.mqtt_auth import MqttAuthError, passwords_file
from ems.topology import SiteDevices, validated
from ems.topology import read_yaml_mapping as _read
from plant.config import PlantConfig


class SimulationConfig(PlantConfig):
    """The plant's parameters and how the simulator serves them."""

    speed: float = Field(default=1.0, gt=0, le=10_000, description="site seconds per real second")
    step_s: float = Field(default=0.01, gt=0, le=1.0, description="real seconds between plant steps")
    # MQTT credentials of the simulator's clients against a broker with a password file (ems/mqtt_auth.py):
    # each row agent logs in as its row id (`row03`), the plant publisher as `sim-plant`. The secret is
    # never here: one password for all in an environment variable, or a file of `user:password` lines.
    mqtt_password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    mqtt_passwords_file: Path | None = Field(default=None, description="lines of `user:password`")
    announce_jobs_s: float = Field(
        default=60.0, ge=0, le=86_400,
        description="site seconds ahead the simulated scheduler announces job starts and stops (0: never)")

    def plant(self) -> PlantConfig:
        return PlantConfig.model_validate(self.model_dump(include=set(PlantConfig.model_fields)))


class SimSiteConfig(SiteDevices):
    """The site as the simulator serves it; other sections of the file belong to the controller."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    simulation: SimulationConfig = SimulationConfig()

    @model_validator(mode="after")
    def _consistent(self) -> SimSiteConfig:
        if len(self.simulation.bess) not in (1, len(self.bess_units)):
            raise ValueError("simulation.bess must have one entry or one per bess unit")
        if (self.simulation.genset is None) != (self.genset is None):
            raise ValueError("genset and simulation.genset must be both present or both absent")
        if len(self.simulation.gensets) != len(self.gensets):
            raise ValueError("simulation.gensets must have one entry per `gensets:` device")
        if self.simulation.filler is not None and self.filler is None:
            raise ValueError("simulation.filler needs a filler device in the site file")
        return self


def parse_sim_config(data: Mapping[str, Any], source: str = "<config>") -> SimSiteConfig:
    return validated(SimSiteConfig, data, source, "simulated site")


def load_sim_config(path: str | Path) -> SimSiteConfig:
    return parse_sim_config(_read(path), str(path))


def simulator_passwords(sim: SimulationConfig, users: list[str],
                        environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """Each simulator user's password (`simulation.mqtt_password_env` / `mqtt_passwords_file`);
    None when the simulation names no credentials (its clients then connect anonymously)."""
    if sim.mqtt_passwords_file is not None:
        known = passwords_file(sim.mqtt_passwords_file, "simulation.mqtt_passwords_file")
        missing = [u for u in users if u not in known]
        if missing:
            raise MqttAuthError(f"simulation.mqtt_passwords_file: no password for {', '.join(missing)}")
        return {u: known[u] for u in users}
    if sim.mqtt_password_env is not None:
        env = os.environ if environ is None else environ
        value = env.get(sim.mqtt_password_env, "")
        if not value:
            raise MqttAuthError(f"simulation.mqtt_password_env: environment variable {sim.mqtt_password_env} "
                                "is not set or empty")
        return dict.fromkeys(users, value)
    return None
