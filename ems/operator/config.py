"""The `http:` section of the site file: the operator server, off unless enabled.

The operator token is never in the site file: it comes from the environment variable
named by `token_env` or from the file at `token_file` (see ems/operator/auth.py).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    host: str = Field(default="127.0.0.1", description="bind address; loopback unless you mean it")
    port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    token_env: str = Field(default="EMS_HTTP_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    token_file: Path | None = Field(default=None, description="lines of `token` or `name:token`")
    overrides_file: Path | None = Field(default=None, description="default: state.dir/overrides.json")
    max_force_s: float = Field(default=4 * 3600.0, gt=0, description="longest forced mode (site seconds)")
    stream_interval_s: float = Field(default=0.5, ge=0.05, le=10, description="dashboard update, real seconds")
