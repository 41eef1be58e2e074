"""Policy parameters an operator may change at run time, checked by the site file's models.

A change is applied to a copy of the site configuration and the whole `SiteConfig` is
validated again, so a tuned value meets exactly the bounds (and cross-field rules, e.g.
recharge threshold under the cap) that the YAML must meet. Only parameters that the
policies read each period are tunable; what the arbitrage planner reads at start-up
(tariff, efficiencies, reserve) needs a restart.

Overrides live in their own JSON file (`state.dir/overrides.json` by default), not in the
site file: that file may be generated or under version control, and keeps its comments.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ems import state_file
from ems.config import SiteConfig
from ems.model import bounded_json
from ems.model.errors import EmsError

# section (dotted, from the top of the site file) -> fields the policies read every period
TUNABLE: dict[str, tuple[str, ...]] = {
    "policies.battery": ("soc_min", "soc_max", "ramp_w_per_s"),
    "policies.peak_shaving": ("enabled", "grid_import_cap_w", "recharge_below_w", "peak_hold_s"),
    "policies.arbitrage": ("enabled", "max_plan_age_s"),
}


class OverrideError(EmsError):
    """An operator change cannot be applied; the message says why."""


class UnknownParameter(OverrideError):
    """The name is not a tunable parameter."""


class ParameterUnavailable(OverrideError):
    """The parameter's section is not configured on this site (e.g. no peak shaving)."""


class InvalidValue(OverrideError):
    """The value fails the site file's validation; `problems` lists field: message."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ParamOverride:
    name: str
    value: Any  # JSON scalar, already validated
    by: str
    why: str
    at_wall_s: float
    revert_at_wall_s: float | None = None
    event_id: int = 0


def _section(cfg: BaseModel, dotted: str) -> BaseModel | None:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node if isinstance(node, BaseModel) else None


def _split(name: str) -> tuple[str, str]:
    section, _, field = name.rpartition(".")
    if field not in TUNABLE.get(section, ()):
        known = ", ".join(f"{s}.{f}" for s, fs in TUNABLE.items() for f in fs)
        raise UnknownParameter(f"{name!r} is not a tunable parameter (tunable: {known})")
    return section, field


def field_schema(cfg: SiteConfig, name: str) -> dict[str, Any]:
    """The JSON schema of one tunable field (type, bounds, description), from its model."""
    section, field = _split(name)
    model = _section(cfg, section)
    if model is None:
        raise ParameterUnavailable(f"{name!r}: this site has no {section} section")
    props: dict[str, Any] = type(model).model_json_schema()["properties"][field]
    return props


def _types(schema: Mapping[str, Any]) -> set[str]:
    if "anyOf" in schema:
        return {t for sub in schema["anyOf"] for t in _types(sub)}
    t = schema.get("type")
    return {t} if isinstance(t, str) else set()


def _json_type_ok(value: Any, types: set[str]) -> bool:
    """JSON types only: no "1e6" strings for numbers, no true for 1 (pydantic would coerce them)."""
    if value is None:
        return "null" in types
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int | float):
        return bool({"number", "integer"} & types) and math.isfinite(value)
    return False


def tunable(cfg: SiteConfig) -> list[str]:
    """The parameter names this site can tune (sections it configures)."""
    return [f"{s}.{f}" for s, fs in TUNABLE.items() if _section(cfg, s) is not None for f in fs]


def current_value(cfg: SiteConfig, name: str) -> Any:
    section, field = _split(name)
    model = _section(cfg, section)
    if model is None:
        raise ParameterUnavailable(f"{name!r}: this site has no {section} section")
    return getattr(model, field)


def apply_overrides(cfg: SiteConfig, values: Mapping[str, Any]) -> SiteConfig:
    """The site configuration with `values` applied, validated like the site file."""
    data = cfg.model_dump()
    problems: list[str] = []
    for name, value in values.items():
        section, field = _split(name)
        node: Any = data
        for part in section.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ParameterUnavailable(f"{name!r}: this site has no {section} section")
        types = _types(field_schema(cfg, name))
        if not _json_type_ok(value, types):
            problems.append(f"{name}: expected {' or '.join(sorted(types))}, got {json.dumps(value)}")
            continue
        node[field] = value
    if problems:
        raise InvalidValue(problems)
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidValue([f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                            for e in exc.errors()]) from None


# --- the override file -----------------------------------------------------------------

FILE_VERSION = 1
MAX_FILE_BYTES = 1 << 20  # a few overrides and units in maintenance are a few kB


def read_file(path: Path) -> dict[str, Any]:
    """The saved operator state; empty if there is none yet. A corrupt or unreadable file is an
    error naming it (the operators' decisions are not dropped unseen)."""
    try:
        text = state_file.read_text(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        return {}
    except state_file.UnusableFile as exc:
        raise OverrideError(f"{path}: {exc}: not an ems override file") from None
    except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, bytes that are not text
        raise OverrideError(f"{path}: cannot be read: {exc}") from None
    try:
        data = bounded_json.loads(text)  # nesting bounded: a value 990 deep would break a later log line
    except ValueError as exc:
        raise OverrideError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
        raise OverrideError(f"{path}: not an ems override file (version {FILE_VERSION})")
    return data


def write_file(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically: a crash leaves the old file or the new one, never half of one."""
    state_file.write_atomically(path, json.dumps({"version": FILE_VERSION, **data}, indent=2, default=str))


def override_from_dict(d: Mapping[str, Any]) -> ParamOverride:
    return ParamOverride(str(d["name"]), d["value"], str(d["by"]), str(d["why"]), float(d["at_wall_s"]),
                         None if d.get("revert_at_wall_s") is None else float(d["revert_at_wall_s"]),
                         int(d.get("event_id", 0)))


def override_to_dict(o: ParamOverride) -> dict[str, Any]:
    return asdict(o)
