"""What an operator has changed, and how the control loop applies it each period.

Three kinds of action, each with who, what and why, each recorded in the event log and
kept in the override file so a restart does not undo it:

- a tuned policy parameter (ems/operator/overrides.py), optionally reverted after a time;
- a unit in maintenance: the snapshot marks it unavailable (`UNIT_MAINTENANCE`), so it
  gets 0 W and no mode command until taken out again; never reverted by a timer (someone
  may be working on it);
- a forced mode (0 W, or a fixed site battery power) that always ends after a timeout.

Actions are applied by the control loop, from its action queue (ems/action_queue.py),
at the start of a period, so that period sees them. Readers in other threads (the
operator server) never touch this object: each change publishes an immutable
`OperatorView` through `on_change`. Timeouts are in site seconds (the controller's
clock; real seconds on a real site).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import structlog

from ems.clock import Clock
from ems.config import SiteConfig
from ems.dr_book import DrBook, DrBookFull
from ems.events import Event, EventLog
from ems.load_target import BadLoadTarget, LoadTargetDecoder
from ems.model.reasons import Reason
from ems.model.snapshot import SiteSnapshot
from ems.operator import overrides as ov
from ems.step_params import step_params
from policies.operator_force import ForceParams

log = structlog.get_logger("ems.operator")

ACTION = "operator_action"
REVERT = "operator_revert"
ForceMode = Literal["zero", "setpoint"]


class UnknownUnit(ov.OverrideError):
    """No BESS unit has that id."""


class InvalidAction(ov.OverrideError):
    """The action's arguments are out of bounds (or beyond what the site can do)."""


class StateConflict(ov.OverrideError):
    """The action does not fit the state it would change (already in maintenance, nothing
    to reset, no forced mode to end)."""


@dataclass(frozen=True, slots=True)
class Maintenance:
    unit_id: str
    by: str
    why: str
    at_wall_s: float
    event_id: int = 0


@dataclass(frozen=True, slots=True)
class Force:
    mode: ForceMode
    setpoint_w: float
    by: str
    why: str
    at_wall_s: float
    until_wall_s: float
    event_id: int = 0


@dataclass(frozen=True)
class OperatorView:
    """The operator state as readers in other threads see it: taken at each change, never
    changed afterwards (`summary` is JSON-ready; readers copy it before adding to it)."""

    configured: SiteConfig
    effective: SiteConfig
    params: Mapping[str, ov.ParamOverride]
    maintenance: frozenset[str]
    force_active: bool
    unit_ids: frozenset[str]
    summary: Mapping[str, Any]
    path: Path | None


class OperatorControls:
    def __init__(self, cfg: SiteConfig, events: EventLog, clock: Clock, path: Path | None,
                 max_force_s: float = 4 * 3600.0, on_change: Callable[[OperatorView], None] | None = None) -> None:
        self.configured = cfg
        self.effective = cfg
        self.events = events
        self.clock = clock
        self.path = path
        self.max_force_s = max_force_s
        self.params: dict[str, ov.ParamOverride] = {}
        self.maintenance: dict[str, Maintenance] = {}
        self.force: Force | None = None
        self.unit_ids = {u.id for u in cfg.bess_units}
        # (discharge, charge) W the available units can do: unknown until the first period, so
        # nothing is refused before the controller has seen the site
        self.capability_w = (math.inf, math.inf)
        self.capability_units = "not read yet"
        self.step_params = step_params(cfg)
        self.actions = 0
        # re-reads the site file (Controller.reload_config): set where the controller runs on one
        self.reload: Callable[[], tuple[bool, str]] | None = None
        self.unsaved = False  # the override file's disk refused the last change (full)
        self.dr_book: DrBook | None = None  # the controller's demand-response events (where it has them)
        self.load_targets: LoadTargetDecoder | None = None  # shared with the MQTT channel: one replay memory
        self.on_change: Callable[[OperatorView], None] | None = None
        self.view = self._view()  # the state now; `on_change` gets each later change
        self._load()
        self.on_change = on_change

    # --- actions ---------------------------------------------------------------------
    def set_param(self, name: str, value: Any, by: str, why: str, revert_after_s: float | None = None) -> Event:
        if revert_after_s is not None and not (0 < revert_after_s <= 366 * 86_400):
            raise InvalidAction("revert_after_s must be > 0 and at most a year")
        candidate = {**{k: o.value for k, o in self.params.items()}, name: value}
        effective = ov.apply_overrides(self.configured, candidate)  # raises with the field's problem
        previous = ov.current_value(self.effective, name)
        now = self.clock.wall()
        until = None if revert_after_s is None else now + revert_after_s
        ev = self._record(ACTION, None, by, why, action="set_param", param=name, value=value, previous=previous,
                          configured=ov.current_value(self.configured, name), revert_at_wall_s=until)
        self.params[name] = ov.ParamOverride(name, value, by, why, now, until, ev.id)
        self._apply(effective)
        return ev

    def reset_param(self, name: str, by: str, why: str) -> Event:
        ov.current_value(self.configured, name)  # raises for unknown or unavailable names
        if name not in self.params:
            raise StateConflict(f"{name!r} is not overridden")
        rest = {k: o.value for k, o in self.params.items() if k != name}
        effective = ov.apply_overrides(self.configured, rest)
        ev = self._record(ACTION, None, by, why, action="reset_param", param=name,
                          value=ov.current_value(effective, name), previous=self.params[name].value)
        del self.params[name]
        self._apply(effective)
        return ev

    def set_maintenance(self, unit_id: str, on: bool, by: str, why: str) -> Event:
        if unit_id not in self.unit_ids:
            raise UnknownUnit(f"no BESS unit {unit_id!r} (units: {', '.join(sorted(self.unit_ids))})")
        if on == (unit_id in self.maintenance):
            raise StateConflict(f"{unit_id} is {'already' if on else 'not'} in maintenance")
        ev = self._record(ACTION, Reason.UNIT_MAINTENANCE.code if on else None, by, why,
                          action="maintenance_on" if on else "maintenance_off", unit=unit_id)
        if on:
            self.maintenance[unit_id] = Maintenance(unit_id, by, why, self.clock.wall(), ev.id)
        else:
            del self.maintenance[unit_id]
        self._changed()
        return ev

    def reload_site_file(self, by: str, why: str) -> Event:
        if self.reload is None:
            raise StateConflict("this controller runs without a site file to re-read")
        applied, problem = self.reload()  # records config_applied or config_rejected itself
        if not applied:
            raise StateConflict(f"site file not applied, the running configuration stays: {problem}")
        return self._record(ACTION, None, by, why, action="reload_site_file")

    def force_mode(self, mode: ForceMode, setpoint_w: float, timeout_s: float, by: str, why: str) -> Event:
        if not (0 < timeout_s <= self.max_force_s):
            raise InvalidAction(f"timeout_s must be > 0 and at most {self.max_force_s:g} s (http.max_force_s)")
        if mode == "zero":
            setpoint_w = 0.0
        if not math.isfinite(setpoint_w):
            raise InvalidAction("setpoint_w must be a finite number of watts")
        most_w = self.capability_w[0 if setpoint_w > 0 else 1]
        if abs(setpoint_w) > most_w + 1.0:
            raise InvalidAction(
                f"the site can {'discharge' if setpoint_w > 0 else 'charge'} at most {most_w / 1e6:.3f} MW now "
                f"({self.capability_units}): asked {abs(setpoint_w) / 1e6:.3f} MW")
        now = self.clock.wall()
        ev = self._record(ACTION, Reason.OPERATOR_FORCED.code, by, why, action="force_mode", mode=mode,
                          setpoint_w=setpoint_w, timeout_s=timeout_s, until_wall_s=now + timeout_s)
        self.force = Force(mode, setpoint_w, by, why, now, now + timeout_s, ev.id)
        self._apply(self.effective)
        return ev

    def clear_force(self, by: str, why: str) -> Event:
        if self.force is None:
            raise StateConflict("no forced mode is in force")
        ev = self._record(ACTION, None, by, why, action="force_cleared", mode=self.force.mode)
        self.force = None
        self._apply(self.effective)
        return ev

    def load_target(self, body: bytes, by: str) -> Event:
        """A `grid.loadtarget.set.v1` request from the operator API (ems/load_target.py)."""
        book, decoder = self.dr_book, self.load_targets
        if book is None or decoder is None:
            raise StateConflict("this site takes no load targets (policies.demand_response.load_target)")
        try:
            lt = decoder.decode(body, self.clock.wall(), "operator")
        except BadLoadTarget as exc:
            raise InvalidAction(str(exc)) from None
        if lt.event is None:
            if not book.cancel(lt.correlation_id):
                raise StateConflict(f"no pending demand-response event {lt.correlation_id}")
            return self._record(ACTION, None, by, f"load target cancelled ({lt.source})", action="load_target_cancel",
                                event_id=lt.correlation_id)
        try:
            book.add(lt.event)
        except DrBookFull as exc:
            raise StateConflict(str(exc)) from None
        e = lt.event
        return self._record(ACTION, Reason.DR_EVENT_ACTIVE.code, by, f"load target ({lt.source})",
                            action="load_target", event_id=e.event_id, target_w=e.target_import_w,
                            start_wall_s=e.start_s, end_wall_s=e.end_s, priority=e.priority)

    def dr_opt_out(self, event_id: str, opt_out: bool, by: str, why: str) -> Event:
        book = self.dr_book
        if book is None or event_id not in book.events:
            raise StateConflict(f"no pending demand-response event {event_id}")
        if opt_out:
            book.opt_out(event_id)
        else:
            book.opted_out.discard(event_id)
        return self._record(ACTION, None, by, why, action="dr_opt_out" if opt_out else "dr_opt_in", event_id=event_id)

    # --- each period -----------------------------------------------------------------
    def observe_capability(self, snap: SiteSnapshot) -> None:
        """What the site's units can do now (their PCS ratings, units available and not in
        maintenance), to refuse a forced setpoint beyond it before the period applies it."""
        units = [u for u in snap.units if u.available and u.unit_id not in self.maintenance and u.pcs is not None]
        rated_w = sum(u.pcs.rated_power_w for u in units if u.pcs is not None)
        self.capability_w = (rated_w, rated_w)
        self.capability_units = f"{len(units)} of {len(snap.units)} units available"

    def apply(self, snap: SiteSnapshot) -> SiteSnapshot:
        """Expire timed actions, then mark units in maintenance unavailable."""
        if self.unsaved:
            self._save()
        self._expire(snap.wall_s)
        if not self.maintenance:
            return snap
        units = tuple(replace(u, unavailable=Reason.UNIT_MAINTENANCE) if u.unit_id in self.maintenance else u
                      for u in snap.units)
        return replace(snap, units=units)

    def _expire(self, wall_s: float) -> None:
        if self.force is not None and wall_s >= self.force.until_wall_s:
            f, self.force = self.force, None
            self._record(REVERT, None, "controller", "timeout", action="force_mode", mode=f.mode,
                         reverts_event=f.event_id)
            self._apply(self.effective)
        due = [o for o in self.params.values() if o.revert_at_wall_s is not None and wall_s >= o.revert_at_wall_s]
        if due:
            for o in due:
                del self.params[o.name]
            effective = ov.apply_overrides(self.configured, {k: o.value for k, o in self.params.items()})
            for o in due:
                self._record(REVERT, None, "controller", "timeout", action="set_param", param=o.name,
                             value=ov.current_value(effective, o.name), reverts_event=o.event_id)
            self._apply(effective)

    def summary(self) -> dict[str, Any]:
        f = self.force
        return {
            "force": None if f is None else {"mode": f.mode, "setpoint_w": f.setpoint_w, "by": f.by, "why": f.why,
                                             "until_wall_s": round(f.until_wall_s, 3)},
            "maintenance": {u: {"by": m.by, "why": m.why, "since_wall_s": round(m.at_wall_s, 3)}
                            for u, m in sorted(self.maintenance.items())},
            "overrides": {k: {"value": o.value, "by": o.by, "why": o.why, "revert_at_wall_s": o.revert_at_wall_s}
                          for k, o in sorted(self.params.items())},
        }

    def rebase(self, cfg: SiteConfig) -> None:
        """The site file was reloaded: overrides go on top of it again; one that no longer
        validates is dropped and recorded, never half-applied."""
        self.configured = cfg
        self.unit_ids = {u.id for u in cfg.bess_units}  # units added or removed with the file
        for gone in [uid for uid in self.maintenance if uid not in self.unit_ids]:
            m = self.maintenance.pop(gone)
            self.events.record(REVERT, self.clock.wall(), None, by="controller", why="unit removed from the site file",
                               action="maintenance_on", unit=gone, reverts_event=m.event_id)
        kept: dict[str, ov.ParamOverride] = {}
        for name, o in self.params.items():
            try:
                ov.apply_overrides(cfg, {**{k: p.value for k, p in kept.items()}, name: o.value})
            except ov.OverrideError as exc:
                self.events.record(REVERT, self.clock.wall(), None, by="controller", why=f"no longer valid: {exc}",
                                   action="set_param", param=name, reverts_event=o.event_id)
                continue
            kept[name] = o
        self.params = kept
        self._apply(ov.apply_overrides(cfg, {k: o.value for k, o in kept.items()}))

    # --- internals -------------------------------------------------------------------
    def _record(self, kind: str, reason: str | None, by: str, why: str, **data: Any) -> Event:
        self.actions += kind == ACTION
        log.info("operator " + ("action" if kind == ACTION else "revert"), by=by, why=why, **data)
        return self.events.record(kind, self.clock.wall(), reason, by=by, why=why, **data)

    def _apply(self, effective: SiteConfig) -> None:
        self.effective = effective
        self.step_params = step_params(effective)
        self._changed()

    def _changed(self) -> None:
        """Every change ends here: kept in the override file, published to readers."""
        self._save()
        self.view = self._view()
        if self.on_change is not None:
            self.on_change(self.view)

    def _view(self) -> OperatorView:
        return OperatorView(self.configured, self.effective, MappingProxyType(dict(self.params)),
                            frozenset(self.maintenance), self.force is not None, frozenset(self.unit_ids),
                            MappingProxyType(self.summary()), self.path)

    @property
    def force_params(self) -> ForceParams | None:
        """The forced mode in force, as the period step takes it."""
        return None if self.force is None else ForceParams(self.force.setpoint_w)

    def state(self) -> dict[str, Any]:
        """The operators' decisions in force, as the override file keeps them (and ems/ha hands over)."""
        f = self.force
        return {
            "params": {k: ov.override_to_dict(o) for k, o in self.params.items()},
            "maintenance": {u: {"by": m.by, "why": m.why, "at_wall_s": m.at_wall_s, "event_id": m.event_id}
                            for u, m in self.maintenance.items()},
            "force": None if f is None else {"mode": f.mode, "setpoint_w": f.setpoint_w, "by": f.by, "why": f.why,
                                             "at_wall_s": f.at_wall_s, "until_wall_s": f.until_wall_s,
                                             "event_id": f.event_id},
        }

    def adopt(self, data: dict[str, Any]) -> list[str]:
        """A new active takes the old one's operator decisions in place of its own (ems/ha): a unit
        someone put in maintenance stays out of service, an override and a forced mode hold on.
        Each entry is checked as an operator's action would be; what is refused is returned."""
        self.params, self.maintenance, self.force = {}, {}, None
        return self._restore(data)

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            ov.write_file(self.path, self.state())
        except OSError as exc:  # a full state disk: what is in force holds here, the file catches up
            if not self.unsaved:  # logged once per outage; tried again each period (`apply`)
                log.error("operator state: the override file cannot be written; in force, written when it can be",
                          path=str(self.path), error=str(exc))
            self.unsaved = True
            return
        if self.unsaved:
            log.warning("operator state: the override file is written again", path=str(self.path))
        self.unsaved = False

    def _load(self) -> None:
        """Re-apply what was saved; what no longer validates (the site file changed) is
        dropped and recorded, never half-applied."""
        if self.path is None:
            return
        self._restore(ov.read_file(self.path))

    def _restore(self, data: Mapping[str, Any]) -> list[str]:
        """Each entry on its own: a malformed or out-of-bounds one (a hand-edited file, a hostile
        or broken handover) is refused, logged and returned, never applied nor fatal."""
        wall = self.clock.wall()
        refused: list[str] = []

        def refuse(what: str, why: object) -> None:
            refused.append(f"{what}: {why}")
            log.warning("operator state refused", entry=what, why=str(why))

        for key, raw in _entries(data.get("params"), "params", refuse):
            try:
                o = ov.override_from_dict(raw)
                _finite(o.at_wall_s, "at_wall_s")
                if o.revert_at_wall_s is not None:
                    _finite(o.revert_at_wall_s, "revert_at_wall_s")
            except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # float(10**400), int(inf)
                refuse(f"params.{key}", exc)
                continue
            try:
                candidate = {**{k: p.value for k, p in self.params.items()}, o.name: o.value}
                ov.apply_overrides(self.configured, candidate)
            except ov.OverrideError as exc:
                self.events.record(REVERT, wall, None, by="controller", why=f"no longer valid: {exc}",
                                   action="set_param", param=o.name, reverts_event=o.event_id)
                continue
            self.params[o.name] = o
        for unit, m in _entries(data.get("maintenance"), "maintenance", refuse):
            if unit not in self.unit_ids:
                refuse(f"maintenance.{unit}", "no such BESS unit")
                continue
            try:
                self.maintenance[unit] = Maintenance(unit, str(m["by"]), str(m["why"]),
                                                     _finite(float(m["at_wall_s"]), "at_wall_s"),
                                                     int(m.get("event_id", 0)))
            except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
                refuse(f"maintenance.{unit}", exc)
        f = data.get("force")
        if f is not None:
            try:
                force = self._force_from(f, wall)
            except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
                refuse("force", exc)
            else:
                if force.until_wall_s > wall:
                    self.force = force
                else:  # it ran out while the controller was down: say so, as a timeout would
                    self.events.record(REVERT, wall, None, by="controller", why="timeout (while stopped)",
                                       action="force_mode", mode=force.mode, reverts_event=force.event_id)
        self._apply(ov.apply_overrides(self.configured, {k: o.value for k, o in self.params.items()}))
        return refused

    def _force_from(self, f: Mapping[str, Any], wall: float) -> Force:
        """A forced mode as saved or handed over, within the bounds `force_mode` holds an operator to."""
        mode = f["mode"]
        if mode not in ("zero", "setpoint"):
            raise ValueError(f"mode {mode!r} is neither 'zero' nor 'setpoint'")
        setpoint_w = 0.0 if mode == "zero" else _finite(float(f["setpoint_w"]), "setpoint_w")
        most_w = self.capability_w[0 if setpoint_w > 0 else 1]
        if abs(setpoint_w) > most_w + 1.0:
            raise ValueError(f"setpoint_w {setpoint_w:.0f} W is beyond the {most_w:.0f} W the site can do")
        at_wall_s = _finite(float(f["at_wall_s"]), "at_wall_s")
        until_wall_s = _finite(float(f["until_wall_s"]), "until_wall_s")
        if until_wall_s > wall + self.max_force_s:
            raise ValueError(f"until_wall_s is more than http.max_force_s ({self.max_force_s:g} s) ahead")
        return Force(mode, setpoint_w, str(f["by"]), str(f["why"]), at_wall_s, until_wall_s, int(f.get("event_id", 0)))


def _finite(x: float, name: str) -> float:
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number")
    return x


def _entries(section: object, name: str, refuse: Callable[[str, object], None]) -> list[tuple[str, Any]]:
    """A section's (key, entry) pairs, each entry a mapping; anything else refused."""
    if section is None:
        return []
    if not isinstance(section, Mapping):
        refuse(name, f"not a mapping: {type(section).__name__}")
        return []
    out = []
    for key, entry in section.items():
        if isinstance(entry, Mapping):
            out.append((str(key), entry))
        else:
            refuse(f"{name}.{key}", f"not a mapping: {type(entry).__name__}")
    return out
