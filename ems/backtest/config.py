"""What a backtest needs to know of a site: the battery, the policies, the reserve, the money.

A backtest file names the battery units by their physics (the plant model's parameters)
and nothing about Modbus endpoints, which a backtest never opens; its optional `racks` are a
share of the load series (ems/backtest/racks.py). A live site
file works too: its units are its `bess_units`, their physics its `simulation.bess`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ems.backtest.racks import BacktestRacksConfig
from ems.config import (
    ControlConfig,
    EconomicsConfig,
    FailoverConfig,
    GridConnectionConfig,
    PoliciesConfig,
    SiteConfig,
    check_microgrid,
    parse_config,
)
from ems.microgrid_config import MicrogridConfig
from ems.model.errors import ConfigError
from ems.topology import Strict, read_yaml_mapping, unique_ids, validated
from plant.config import SimBessConfig


class BacktestUnitConfig(SimBessConfig):
    """One BESS unit as the plant model sees it (capacity, rating, efficiencies, ...)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")


class BacktestConfig(Strict):
    site: str = Field(default="site", pattern=r"^[A-Za-z0-9_.-]+$")
    control: ControlConfig = ControlConfig()
    battery_units: list[BacktestUnitConfig] = Field(min_length=1)
    policies: PoliciesConfig = PoliciesConfig()
    grid_connection: GridConnectionConfig = GridConnectionConfig()
    failover: FailoverConfig | None = Field(default=None, description="only its reserve plays a part")
    economics: EconomicsConfig | None = None
    microgrid: MicrogridConfig | None = None
    racks: BacktestRacksConfig | None = Field(
        default=None, description="GPU racks as a share of the load: demand response's caps act on it")

    @model_validator(mode="after")
    def _unique(self) -> BacktestConfig:
        unique_ids("battery_units", [u.id for u in self.battery_units])
        dr = self.policies.demand_response  # (without racks its tiers are moot: a live site file's, say)
        if dr is not None and self.racks is not None and (unknown := set(dr.flex_tiers) - set(self.racks.row_ids())):
            raise ValueError(f"policies.demand_response.flex_tiers names unknown rows: {sorted(unknown)}")
        check_microgrid(self.microgrid, self.grid_connection, self.policies)
        return self

    @classmethod
    def from_site(cls, cfg: SiteConfig, source: str = "<config>") -> BacktestConfig:
        """A live site file's battery: its units, with the physics of `simulation.bess`
        (one entry for all units, or one per unit; the plant's defaults without it)."""
        raw = (cfg.simulation or {}).get("bess") or [{}]
        if not isinstance(raw, list) or len(raw) not in (1, len(cfg.bess_units)):
            raise ConfigError(f"{source}: simulation.bess must have one entry or one per bess unit")
        physics = raw * len(cfg.bess_units) if len(raw) == 1 else raw
        data: dict[str, Any] = {
            "site": cfg.site, "control": cfg.control.model_dump(),
            "battery_units": [{"id": u.id, **p} for u, p in zip(cfg.bess_units, physics, strict=True)],
            "policies": cfg.policies.model_dump(), "grid_connection": cfg.grid_connection.model_dump(),
            "failover": None if cfg.failover is None else cfg.failover.model_dump(),
            "economics": None if cfg.economics is None else cfg.economics.model_dump(),
            "microgrid": None if cfg.microgrid is None else cfg.microgrid.model_dump(),
        }
        return parse_backtest_config(data, source)


def parse_backtest_config(data: dict[str, Any], source: str = "<config>") -> BacktestConfig:
    if "bess_units" in data:  # a live site file
        return BacktestConfig.from_site(parse_config(data, source), source)
    return validated(BacktestConfig, data, source, "backtest configuration")


def load_backtest_config(path: str | Path) -> BacktestConfig:
    return parse_backtest_config(read_yaml_mapping(path), str(path))
