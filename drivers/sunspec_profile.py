"""SunSpec device profiles: what ems needs to know of a SunSpec device beyond its models.

A SunSpec device describes its own registers (the models it lists after "SunS"), so its
profile is short: its kind (which models ems reads), the function code its writes take,
where its map starts if discovery should not look, the reversion time written as the
heartbeat (PCS), and the sign of a meter's power. Profiles live in `config/sunspec/`
(a bare name) or anywhere (a path); a file with `protocol: sunspec` is one.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drivers.errors import ProfileError
from drivers.profile import read_profile_yaml

SUNSPEC_DIR = Path(__file__).resolve().parent.parent / "config" / "sunspec"

# the models each kind of SunSpec device must list (any one of a tuple inside)
KIND_MODELS: dict[str, tuple[int | tuple[int, ...], ...]] = {
    "pcs": (1, 701, 702, 704),
    "pv": (1, 701, 702, 704),
    "bms": (1, 802, 803),
    "meter": (1, (201, 202, 203, 204)),
}


class SunSpecProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    protocol: Literal["sunspec"]
    kind: Literal["pcs", "pv", "bms", "meter"]
    description: str = ""
    write_function_code: Literal[6, 16] = Field(
        default=16, description="16 (0x10, write multiple registers) or 6 (0x06, one register per request)")
    base_address: Literal[0, 40000, 50000] | None = Field(
        default=None, description="where the map starts ('SunS'); none: look at 40000, 0, 50000")
    reversion_s: int = Field(default=10, ge=1, le=3600,
                             description="pcs/pv: WSetRvrtTms written every period (the heartbeat)")
    power_sign: Literal[1, -1] = Field(
        default=1, description="meter: 1 if its W is positive on import, -1 if positive on export")


def is_sunspec_profile(name_or_path: str) -> bool:
    """True for a bare name under config/sunspec/, or a file that says `protocol: sunspec`."""
    path = Path(name_or_path)
    if not path.suffix:
        return (SUNSPEC_DIR / f"{name_or_path}.yaml").is_file()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.get("protocol") == "sunspec"


@cache
def load_sunspec_profile(name_or_path: str) -> SunSpecProfile:
    path = Path(name_or_path)
    if not path.suffix:
        path = SUNSPEC_DIR / f"{name_or_path}.yaml"
    data = read_profile_yaml(path, "SunSpec profile")
    try:
        return SunSpecProfile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProfileError(f"SunSpec profile {path}: {where}: {first['msg']}") from exc
