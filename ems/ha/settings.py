"""The `ha:` section of a site file: where the lease lives and how long it lasts."""

from __future__ import annotations

from pydantic import Field, model_validator

from ems.topology import Strict


class HaConfig(Strict):
    """Active/standby on one site file. The lease's TTL bounds the takeover; the guard is what
    the active keeps in hand: it stops writing `guard_s` before its lease can expire."""

    nats_url: str = Field(default="nats://127.0.0.1:4222", pattern=r"^(nats|tls)://")
    bucket: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$",
                               description="lease bucket; default ems_lease_<site>")
    lease_ttl_s: float = Field(default=0.6, ge=0.1, le=60, description="the lease's life after its last renewal")
    renew_every_s: float = Field(default=0.1, gt=0, le=20, description="how often the active renews")
    poll_every_s: float = Field(default=0.05, gt=0, le=20, description="how often the standby looks at the lease")
    guard_s: float = Field(default=0.2, ge=0, le=30,
                           description="the active stops writing this long before its lease can expire")
    request_timeout_s: float = Field(default=0.2, gt=0, le=10, description="each NATS request")
    handover_events: int = Field(default=200, ge=0, le=10_000, description="recent events kept in the handover")
    peer_listen: str | None = Field(default=None, pattern=r"^[^\s:]*:\d{1,5}$",
                                    description="host:port where this controller answers its peer (NATS outage)")
    peer: str | None = Field(default=None, pattern=r"^[^\s:]+:\d{1,5}$",
                             description="host:port of the other controller's peer_listen")

    @model_validator(mode="after")
    def _renewal_fits(self) -> HaConfig:
        if self.renew_every_s + self.request_timeout_s + self.guard_s >= self.lease_ttl_s:
            raise ValueError("ha: renew_every_s + request_timeout_s + guard_s must be under lease_ttl_s "
                             "(a renewal must be able to land before the active has to stop writing)")
        return self

    def lease_bucket(self, site: str) -> str:
        return self.bucket or "ems_lease_" + "".join(c if c.isalnum() or c in "_-" else "_" for c in site)

    def state_bucket(self, site: str) -> str:
        """Where the active hands its state over: no TTL, so it outlives the lease."""
        return self.lease_bucket(site) + "_state"
