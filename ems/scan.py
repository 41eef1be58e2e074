"""`ems scan HOST:PORT [--unit N]`: what a Modbus device is, seen through SunSpec.

Looks for "SunS" at 40000, 0 and 50000, lists every model the device offers with its
points (scaled, in their units; a point the device does not implement is counted, not
shown as a number), and says what kind of device ems would take it for. With
`--entry FILE` it writes a starting site-file entry for it (endpoint and SunSpec
profile). A device without the marker is said to be no SunSpec device: it needs a
register-map profile (docs/devices.md). Exit 0: SunSpec; 1: not SunSpec; 2: unreachable
or bad arguments.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from drivers.errors import DeviceUnavailable, DriverError, NotSupported
from drivers.sunspec_device import NotSunSpec, SunSpecDevice
from drivers.sunspec_models import PointValue, model_def
from ems.model.errors import ConfigError

EXIT_SUNSPEC, EXIT_NOT_SUNSPEC, EXIT_UNREACHABLE = 0, 1, 2

# the kind ems takes a device for, by the models it lists; and the profile that reads it
_KINDS: tuple[tuple[str, tuple[int, ...], str], ...] = (
    ("bms", (802,), "sunspec_bms"),
    ("pcs", (701, 702, 704), "sunspec_pcs"),
    ("meter", (201,), "sunspec_meter"),
    ("meter", (202,), "sunspec_meter"),
    ("meter", (203,), "sunspec_meter"),
    ("meter", (204,), "sunspec_meter"),
)


def parse_target(target: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", target)
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise ConfigError(f"scan: {target!r} is not HOST:PORT")
    return m.group(1), int(m.group(2))


def kind_of(model_ids: list[int], capacity: dict[str, PointValue] | None = None) -> tuple[str, str] | None:
    """(kind, profile) ems would take a device listing these models for, or None. An inverter
    (701, 702, 704) that rates no charging (702 WChaRteMaxRtg) and lists no storage (713) is
    taken for PV."""
    for kind, needs, profile in _KINDS:
        if all(m in model_ids for m in needs):
            if kind == "pcs" and 713 not in model_ids and (capacity or {}).get("WChaRteMaxRtg") is None:
                return "pv", "sunspec_pv"
            return kind, profile
    return None


def _fmt(v: PointValue, units: str) -> str:
    if isinstance(v, float):
        text = f"{v:.0f}" if v.is_integer() and abs(v) < 1e15 else f"{v:.6g}"
    else:
        text = str(v)
    return f"{text} {units}".rstrip()


def describe_model(model_id: int, address: int, length: int, values: dict[str, PointValue] | None,
                   error: str | None = None, show_missing: bool = False) -> list[str]:
    try:
        md = model_def(model_id)
        name = md.name
    except NotSupported:
        return [f"model {model_id} (no definition in pysunspec2), {length} registers at {address}"]
    lines = [f"model {model_id} {name}, {length} registers at {address}"]
    if error is not None:
        return [*lines, f"  (read failed: {error})"]
    missing = 0
    for pname, pd in md.points.items():
        if pname in ("ID", "L") or pd.type == "pad" or values is None:
            continue
        v = values.get(pname)
        if v is None:
            missing += 1
            if show_missing:
                lines.append(f"  {pname:<18} (not implemented)")
            continue
        symbol = pd.symbols.get(int(v)) if pd.type.startswith("enum") and isinstance(v, int | float) else None
        shown = f"{int(v)} ({symbol})" if symbol is not None else _fmt(v, pd.units if pd.type != "sunssf" else "")
        lines.append(f"  {pname:<18} {shown}{'  rw' if pd.writable else ''}")
    if missing and not show_missing:
        lines.append(f"  ... {missing} {'point' if missing == 1 else 'points'} not implemented (--all lists them)")
    return lines


async def scan(host: str, port: int, unit_id: int, timeout_s: float = 1.0,
               show_missing: bool = False) -> tuple[int, list[str], dict[str, object] | None]:
    """(exit code, lines to print, a site-file entry or None)."""
    dev = SunSpecDevice("scan", host, port, unit_id, timeout_s)
    where = f"{host}:{port} unit {unit_id}"
    try:
        try:
            locs = await dev.discover()
        except NotSunSpec:
            return EXIT_NOT_SUNSPEC, [f"{where}: not a SunSpec device (no \"SunS\" at 40000, 0 or 50000); "
                                      "describe its registers in a profile (docs/devices.md)"], None
        except DeviceUnavailable as exc:
            return EXIT_UNREACHABLE, [f"{where}: cannot reach the device: {exc}"], None
        base = locs[0].address - 2 if locs else "?"
        lines = [f"{where}: SunSpec at {base}, {len(locs)} models: {' '.join(str(loc.model_id) for loc in locs)}"]
        capacity: dict[str, PointValue] | None = None
        for loc in locs:
            values: dict[str, PointValue] | None = None
            error = None
            try:
                model_def(loc.model_id)
                values = await dev.read_block_decoded(loc)
            except NotSupported:
                pass
            except DriverError as exc:
                error = str(exc)
            if loc.model_id == 702 and values is not None:
                capacity = values
            lines += ["", *describe_model(loc.model_id, loc.address, loc.length, values, error, show_missing)]
        kind = kind_of([loc.model_id for loc in locs], capacity)
        entry: dict[str, object] | None = None
        if kind is None:
            lines += ["", "ems has no SunSpec driver for a device with these models"]
        else:
            entry = {"host": host, "port": port, "unit_id": unit_id, "profile": kind[1]}
            lines += ["", f"ems reads it as a SunSpec {kind[0]}: {kind[0]}: "
                          f"{{host: {host}, port: {port}, unit_id: {unit_id}, profile: {kind[1]}}}"]
            entry = {"kind": kind[0], **entry}
        return EXIT_SUNSPEC, lines, entry
    finally:
        dev.close()


def write_entry(path: Path, entry: dict[str, object]) -> str:
    """A starting site-file entry: the meter's endpoint, or a BESS unit with this BMS or PCS
    (the other half left for the engineer to fill in)."""
    kind = entry["kind"]
    ep = {k: entry[k] for k in ("host", "port", "unit_id", "profile")}
    if kind in ("meter", "pv"):
        doc: dict[str, object] = {str(kind): ep}
    else:
        other = "pcs" if kind == "bms" else "bms"
        doc = {"bess_units": [{"id": "bess-1", str(kind): ep,
                               other: {"host": entry["host"], "port": 0, "profile": f"FILL IN: the unit's {other}"}}]}
    text = "# written by `ems scan`: a starting entry, to merge into the site file\n" + yaml.safe_dump(
        doc, sort_keys=False)
    path.write_text(text)
    return text
