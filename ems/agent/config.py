"""The agent file of `ems agent`: which rack this node stands for, its broker, its telemetry.

A small YAML of its own (not the site file): an agent knows its rack and its broker, nothing
of batteries or policies. Every field is validated; an error names the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from ems.config import LoggingConfig
from ems.topology import MAX_W, Fraction, MqttConfig, Strict, read_yaml_mapping, validated


class AgentConfig(Strict):
    # the controller's rack ids are `row{nn}-rack{nn}` (ems/topology.py RacksConfig); any other
    # id would never be commanded, so it is refused here rather than ignored later
    rack_id: str = Field(pattern=r"^row\d{2,}-rack\d{2,}$", description="e.g. row03-rack07")
    mqtt: MqttConfig = MqttConfig()
    telemetry_period_s: float = Field(default=1.0, ge=0.05, le=60.0)
    gpus: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, min_length=1,
                                                            description="NVML indices; None: every GPU")
    node_overhead_w: float = Field(default=0.0, ge=0, le=MAX_W,
                                   description="non-GPU power of the rack (CPUs, fans, NICs), added to the GPUs'")
    nameplate_w: float | None = Field(default=None, gt=0, le=MAX_W,
                                      description="None: the GPUs' largest limits plus node_overhead_w")
    idle_below_share: Fraction = Field(default=0.25,
                                       description="state idle while the GPUs draw less than this share of their "
                                                   "default limits, training above")
    smoothing_preset: int = Field(default=0, ge=0, le=4,
                                  description="the NVML power smoothing preset profile the agent writes and activates")
    logging: LoggingConfig = LoggingConfig()

    @field_validator("gpus")
    @classmethod
    def _each_gpu_once(cls, gpus: list[int] | None) -> list[int] | None:
        # a GPU listed twice would be read twice (its power doubled) and get two shares of a cap
        if gpus is not None and len(set(gpus)) != len(gpus):
            raise ValueError("each GPU index at most once")
        return gpus

    @property
    def row_id(self) -> str:
        return self.rack_id.split("-", 1)[0]

    @property
    def client_id(self) -> str:
        """The broker client id: mqtt.client_id when the file sets it, else one of this rack's
        own (the default `ems-controller` would throw the controller off the broker)."""
        return self.mqtt.client_id if "client_id" in self.mqtt.model_fields_set else f"ems-agent-{self.rack_id}"


def load_agent_config(path: str | Path, mqtt_url: str | None = None) -> AgentConfig:
    """The agent file, with `mqtt.url` replaced by `mqtt_url` when given (validated the same way)."""
    data = read_yaml_mapping(path)
    if mqtt_url is not None:
        mqtt = data.get("mqtt")
        data = {**data, "mqtt": {**(mqtt if isinstance(mqtt, dict) else {}), "url": mqtt_url}}
    return validated(AgentConfig, data, str(path), "agent configuration")
