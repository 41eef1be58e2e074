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
from drivers.sunspec_profile import SunSpecProfile, is_sunspec_profile, load_sunspec_profile
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

    @property
    def pv(self) -> ModbusEndpoint | None: ...


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
    if cfg.pv is not None:
        slots.append(("pv", "pv", cfg.pv))
    return slots


def check_site_profiles(cfg: SiteDevices, source: str) -> dict[str, DeviceProfile | SunSpecProfile]:
    """Every slot's profile (a register map, or SunSpec), loaded and of the slot's kind ->
    {slot: profile}. ConfigError (one line: the file, the slot, the profile and what is
    wrong) otherwise."""
    profiles: dict[str, DeviceProfile | SunSpecProfile] = {}
    for slot, kind, ep in device_slots(cfg):
        try:
            profile: DeviceProfile | SunSpecProfile = (
                load_sunspec_profile(ep.profile) if is_sunspec_profile(ep.profile) else load_profile(ep.profile))
        except ProfileError as exc:
            raise ConfigError(f"{source}: {slot}: {exc}") from None
        if profile.kind != kind:
            raise ConfigError(f"{source}: {slot}: profile {ep.profile!r} ({profile.name}) is a {profile.kind} "
                              f"profile; this slot needs a {kind} profile")
        profiles[slot] = profile
    _sunspec_fits_the_site(cfg, profiles, source)
    return profiles


def _sunspec_fits_the_site(cfg: SiteDevices, profiles: dict[str, DeviceProfile | SunSpecProfile],
                           source: str) -> None:
    """Failover's watcher and fast path read and write register maps on their own connections,
    and SunSpec 704 has no grid-forming command: a site whose PCS or meter speaks SunSpec cannot
    ask for failover. (The smoothing loop speaks both: ems/fast_power.py.)"""
    sunspec = [slot for slot, p in profiles.items()
               if isinstance(p, SunSpecProfile) and p.kind in ("pcs", "meter")]
    if not sunspec:
        return
    failover = getattr(cfg, "failover", None)
    if failover is not None and getattr(failover, "enabled", False):
        raise ConfigError(f"{source}: failover: {sunspec[0]} speaks SunSpec; failover needs register-map "
                          "profiles for the meter and PCS (SunSpec 704 has no grid-forming command)")

