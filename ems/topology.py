"""The site's devices as its site file names them: Modbus endpoints, BESS units, racks, broker.

Shared by the controller's schema (ems/config.py) and the simulator's
(sim_devices/config.py), which see the same site from either side. Also the strict base
model of every section and the YAML reader of site files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ems.model.errors import ConfigError


class Strict(BaseModel):
    """A section of a site file: unknown keys, NaN and infinities are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Upper bounds on every power and duration a site file names: finite, but far beyond any site
# (a cap of 1e308 W is a typo or an attack, not a site)
MAX_W = 1e10  # 10 GW
MAX_S = 7 * 86_400.0  # a week

Port = Annotated[int, Field(ge=1, le=65535)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ModbusEndpoint(Strict):
    host: str = "127.0.0.1"
    port: Port
    unit_id: int = Field(default=1, ge=0, le=255)
    profile: str = Field(description="profile name under config/profiles/ or a path")
    timeout_s: float = Field(default=0.5, gt=0, le=10)


class MeterEndpoint(ModbusEndpoint):
    average_s: float | None = Field(
        default=None, gt=0, le=3600,
        description="the meter's averaging window for its averaged power register (active_power_avg): a "
                    "period's policies then act on the site's load over it; none: on the instant reading")


class GensetEndpoint(ModbusEndpoint):
    """One more genset's device, named by the `microgrid.gensets` entry it carries out."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")


class BessUnitConfig(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    bms: ModbusEndpoint
    pcs: ModbusEndpoint


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class MqttTlsConfig(Strict):
    """TLS towards the broker (used with an `mqtts://` url); see ems/mqtt_auth.py."""

    ca_file: Path | None = Field(default=None, description="CA bundle; None: the system's trust store")
    cert_file: Path | None = Field(default=None, description="client certificate (brokers that require one)")
    key_file: Path | None = Field(default=None, description="its private key")
    insecure: bool = Field(default=False, description="skip the host name check (never in production)")

    @model_validator(mode="after")
    def _cert_and_key(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttConfig(Strict):
    url: str = Field(default="mqtt://127.0.0.1:1883", pattern=r"^mqtts?://[^/:]+(:\d+)?/?$")
    topic_prefix: str = Field(default="ems", pattern=r"^[A-Za-z0-9_/-]+$")
    client_id: str = "ems-controller"
    keepalive_s: int = Field(default=30, ge=5, le=600)
    tls: MqttTlsConfig | None = Field(default=None, description="needs an mqtts:// url")
    # secrets never live in the site file: only where to find them
    username: str | None = Field(default=None, min_length=1)
    password_env: EnvName | None = Field(default=None, description="environment variable holding the password")
    password_file: Path | None = Field(default=None, description="file whose first line is the password")

    @model_validator(mode="before")
    @classmethod
    def _no_literal_password(cls, data: object) -> object:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("mqtt.password: secrets are not read from the site file; name an environment "
                             "variable with password_env or a file with password_file")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if self.tls is not None and not self.url.startswith("mqtts://"):
            raise ValueError("tls is set but the url is not mqtts://")
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("give password_env or password_file, not both")
        if (self.password_env is not None or self.password_file is not None) and self.username is None:
            raise ValueError("a password needs a username")
        return self

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/").split(":")[0]

    @property
    def port(self) -> int:
        rest = self.url.split("://", 1)[1].rstrip("/")
        if ":" in rest:
            return int(rest.split(":")[1])
        return 8883 if self.url.startswith("mqtts") else 1883


class RacksConfig(Strict):
    """The GPU racks, in rows. Rack ids are `{row}-rack{n:02d}`, rows `row{n:02d}`."""

    rows: int = Field(ge=1, le=1000)
    racks_per_row: int = Field(ge=1, le=200)
    nameplate_w: float = Field(gt=0, le=1e6)
    critical_rows: list[str] = Field(default_factory=list)
    telemetry_stale_after_s: float = Field(default=5.0, gt=0, le=MAX_S)

    @property
    def count(self) -> int:
        return self.rows * self.racks_per_row

    def row_ids(self) -> list[str]:
        return [f"row{r + 1:02d}" for r in range(self.rows)]

    def rack_ids(self) -> list[str]:
        return [f"{row}-rack{k + 1:02d}" for row in self.row_ids() for k in range(self.racks_per_row)]

    @model_validator(mode="after")
    def _critical_rows_exist(self) -> RacksConfig:
        unknown = set(self.critical_rows) - set(self.row_ids())
        if unknown:
            raise ValueError(f"critical_rows names unknown rows: {sorted(unknown)}")
        return self




def unique_ids(field: str, ids: list[str]) -> None:
    """Raise naming the ids `field` repeats."""
    if len(ids) != len(set(ids)):
        raise ValueError(f"{field} ids must be unique: {sorted({i for i in ids if ids.count(i) > 1})}")


class SiteDevices(Strict):
    """A site's devices: what the controller reads and writes and the simulator serves."""

    site: str = Field(default="site", pattern=r"^[A-Za-z0-9_.-]+$")
    mqtt: MqttConfig = MqttConfig()
    meter: MeterEndpoint
    bess_units: list[BessUnitConfig] = Field(min_length=1)
    genset: ModbusEndpoint | None = None
    gensets: list[GensetEndpoint] = Field(
        default_factory=list, description="more gensets (off-grid), each named by its microgrid.gensets id")
    filler: ModbusEndpoint | None = Field(
        default=None, description="a controllable filler load (load bank): smoothing's last lever, off by default")
    pv: ModbusEndpoint | None = Field(
        default=None, description="the PV inverter, metered every period and curtailed when export is not allowed "
                                  "(sunspec_pv, or a register map: pv_v1)")
    racks: RacksConfig

    @model_validator(mode="after")
    def _unique_devices(self) -> SiteDevices:
        unique_ids("bess_units", [u.id for u in self.bess_units])
        unique_ids("gensets", [g.id for g in self.gensets])
        # each device by its place in the file, so a clash names the two to fix
        devices: list[tuple[str, ModbusEndpoint]] = [("meter", self.meter)]
        devices += [(name, ep) for name, ep in (("genset", self.genset), ("filler", self.filler), ("pv", self.pv))
                    if ep is not None]
        devices += [(f"gensets.{i}", g) for i, g in enumerate(self.gensets)]
        for i, u in enumerate(self.bess_units):
            devices += [(f"bess_units.{i}.bms", u.bms), (f"bess_units.{i}.pcs", u.pcs)]
        seen: dict[tuple[str, int, int], str] = {}
        for name, ep in devices:
            key = (ep.host, ep.port, ep.unit_id)
            if key in seen:
                raise ValueError(f"{seen[key]} and {name} share host {ep.host}, port {ep.port} and unit_id "
                                 f"{ep.unit_id}")
            seen[key] = name
        return self


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: object, source: str, what: str = "site configuration") -> M:
    """`data` as `model`, or a ConfigError that names each field and its problem."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the site file must be a YAML mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_error(exc, source, what)) from None


def format_error(exc: ValidationError, source: str, what: str = "site configuration") -> str:
    lines = [f"{source}: invalid {what}"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A site file's top-level mapping; ConfigError (never a traceback) when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the site file must be a YAML mapping at the top level")
    return data
