"""The site's `fleet:` section, and the file of the `ems fleet` service."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ems.topology import Strict, read_yaml_mapping, validated

NAME = r"^[A-Za-z0-9_-]+$"


class FleetLinkConfig(Strict):
    """What a site sends to the fleet: status (at most every `status_every_s`), every event,
    a 1-minute history; kept in a local outbox while the link is down."""

    nats_url: str = Field(default="nats://127.0.0.1:4222", pattern=r"^(nats|tls)://")
    stream: str = Field(default="EMS_FLEET", pattern=NAME)
    subject_prefix: str = Field(default="ems.fleet", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    status_every_s: float = Field(default=1.0, gt=0, le=3600, description="site seconds between status messages")
    outbox_max: int = Field(default=2_000_000, ge=1000, le=100_000_000, description="messages kept while down")
    batch: int = Field(default=256, ge=1, le=10_000, description="most messages in flight while replaying")
    request_timeout_s: float = Field(default=2.0, gt=0, le=60)
    retention_days: float = Field(default=7.0, gt=0, le=3650, description="the stream's max age, if it creates it")


class FleetHttpConfig(Strict):
    """The fleet page and API. With a token (from `token_env` or `token_file`, as the operator
    API's) every API read needs `Authorization: Bearer <token>`; without one they are open,
    and only a loopback `host` is allowed."""

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    token_env: str = Field(default="EMS_FLEET_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    token_file: Path | None = Field(default=None, description="lines of `token` or `name:token`")


class FleetServiceConfig(Strict):
    """`ems fleet --config FILE`: one replica of the consumer group, and the fleet page/API."""

    nats_url: str = Field(default="nats://127.0.0.1:4222", pattern=r"^(nats|tls)://")
    stream: str = Field(default="EMS_FLEET", pattern=NAME)
    subject_prefix: str = Field(default="ems.fleet", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    consumer: str = Field(default="fleet-db", pattern=NAME, description="durable pull consumer shared by replicas")
    postgres_dsn: str = Field(default="postgresql://127.0.0.1:5432/postgres", min_length=1)
    batch: int = Field(default=500, ge=1, le=10_000)
    stale_after_s: float = Field(default=30.0, gt=0, le=86_400, description="a site's status older is not counted")
    retention_days: float = Field(default=7.0, gt=0, le=3650)
    http: FleetHttpConfig = FleetHttpConfig()


def load_fleet_config(path: str | Path) -> FleetServiceConfig:
    return validated(FleetServiceConfig, read_yaml_mapping(path), str(path), "fleet configuration")
