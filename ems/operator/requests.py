"""Request bodies of the operator actions, validated strictly as JSON.

Strict: a number must be a JSON number (no "1e6" strings), a flag a JSON boolean, and
no NaN or infinity; unknown fields are refused. Their JSON schemas go into the OpenAPI
document unchanged, so the API and its documentation cannot disagree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Why = Annotated[str, Field(min_length=3, max_length=500, pattern=r"\S",
                           description="why: goes into the event log with who and what")]
MAX_SETPOINT_W = 1e9  # far above any site: the battery limits policy clamps to what units can do


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class SetParam(_Body):
    """Change one policy parameter; it applies from the next control period."""

    param: str = Field(description="dotted name, e.g. policies.peak_shaving.grid_import_cap_w")
    value: bool | float | None = Field(description="validated like the site file (type and bounds)")
    reason: Why
    revert_after_s: float | None = Field(default=None, gt=0, le=366 * 86_400,
                                         description="go back to the configured value after this (site seconds)")


class ResetParam(_Body):
    """Drop an override: the parameter goes back to the site file's value."""

    param: str
    reason: Why


class SetMaintenance(_Body):
    """Take a BESS unit out of service (0 W, no mode commands) or put it back."""

    unit: str
    in_maintenance: bool
    reason: Why


class ReloadSiteFile(_Body):
    """Re-read the site file the controller was started with, as SIGHUP does: applied from
    the next period (BESS units added or removed with it), or refused with the reason while
    the running configuration stays."""

    reason: Why


class ForceZero(_Body):
    """Hold the battery at 0 W for `timeout_s`."""

    mode: Literal["zero"]
    timeout_s: float = Field(gt=0, description="site seconds; then the policies take over again")
    reason: Why


class ForceSetpoint(_Body):
    """Hold the site battery power at `setpoint_w` (> 0 discharge) for `timeout_s`, within
    the battery limits and the outage reserve."""

    mode: Literal["setpoint"]
    setpoint_w: float = Field(ge=-MAX_SETPOINT_W, le=MAX_SETPOINT_W)
    timeout_s: float = Field(gt=0, description="site seconds; then the policies take over again")
    reason: Why


class ForceAuto(_Body):
    """End a forced mode now: the policies take over."""

    mode: Literal["auto"]
    reason: Why


ForceMode = Annotated[ForceZero | ForceSetpoint | ForceAuto, Field(discriminator="mode")]


class LoadTargetSet(_Body):
    """A `grid.loadtarget.set.v1` request (CloudEvents, as over MQTT; docs/demand-response.md):
    `data` holds `target` ({value, unit} or null to cancel), `start`, `duration_s`, `priority`,
    or is their JWS (HS256) where the site requires signed requests."""

    model_config = ConfigDict(extra="forbid", strict=False, allow_inf_nan=False, frozen=True)
    specversion: Literal["1.0", "1.0.2"]
    id: str = Field(max_length=64, description="a UUID; a request whose id was seen before is refused")
    source: str = Field(max_length=256)
    type: Literal["grid.loadtarget.set.v1"]
    time: str = Field(max_length=64, description="ISO 8601 with a zone; refused when too far from now")
    datacontenttype: Literal["application/json"] = "application/json"
    subject: str | None = Field(default=None, max_length=256)
    correlationid: str | None = Field(default=None, max_length=64)
    traceparent: str | None = Field(default=None, max_length=256)
    tracestate: str | None = Field(default=None, max_length=512)
    data: dict[str, Any] | str


class DrOptOut(_Body):
    """Opt the site out of a demand-response event (or back in): it is not acted on."""

    event_id: str = Field(min_length=1, max_length=200)
    opt_out: bool
    reason: Why
