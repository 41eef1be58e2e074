"""The site's device profiles, checked against the slots the site file puts them in.

A profile must load (which checks it against its kind, config/device-kinds.yaml) and be of
the kind its slot needs: a PCS profile where a BMS belongs is a configuration error, found
before anything connects. `ems check-config`, `ems run` and the simulator ask the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from drivers.errors import ProfileError
from drivers.profile import DeviceProfile, load_profile
from ems.model.errors import ConfigError
from ems.topology import BessUnitConfig, ModbusEndpoint


class SiteDevices(Protocol):
    """The device sections of a site file (the controller's SiteConfig or the simulator's)."""

    @property
    def meter(self) -> ModbusEndpoint: ...

    @property
    def bess_units(self) -> Sequence[BessUnitConfig]: ...

    @property
    def genset(self) -> ModbusEndpoint | None: ...

    @property
    def filler(self) -> ModbusEndpoint | None: ...


def device_slots(cfg: SiteDevices) -> list[tuple[str, str, ModbusEndpoint]]:
    """(slot, kind it needs, endpoint) for every device the site file names; the slot is the
    field's path in the file, e.g. `bess_units.0.bms`."""
    slots = [("meter", "meter", cfg.meter)]
    for i, unit in enumerate(cfg.bess_units):
        slots += [(f"bess_units.{i}.bms", "bms", unit.bms), (f"bess_units.{i}.pcs", "pcs", unit.pcs)]
    if cfg.genset is not None:
        slots.append(("genset", "genset", cfg.genset))
    if cfg.filler is not None:
        slots.append(("filler", "filler", cfg.filler))
    return slots


def check_site_profiles(cfg: SiteDevices, source: str) -> dict[str, DeviceProfile]:
    """Every slot's profile, loaded and of the slot's kind -> {slot: profile}. ConfigError
    (one line: the file, the slot, the profile and what is wrong) otherwise."""
    profiles: dict[str, DeviceProfile] = {}
    for slot, kind, ep in device_slots(cfg):
        try:
            profile = load_profile(ep.profile)
        except ProfileError as exc:
            raise ConfigError(f"{source}: {slot}: {exc}") from None
        if profile.kind != kind:
            raise ConfigError(f"{source}: {slot}: profile {ep.profile!r} ({profile.name}) is a {profile.kind} "
                              f"profile; this slot needs a {kind} profile")
        profiles[slot] = profile
    return profiles
