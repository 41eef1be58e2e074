"""Render device profiles as Markdown register maps, and what each kind of device requires
(docs/register-maps.md is generated).

`python -m drivers.profile_docs > docs/register-maps.md`; a test keeps the file in step.
"""

from __future__ import annotations

import sys

from drivers.profile import KINDS_FILE, PROFILE_DIR, DeviceProfile, RegisterNeed, device_kinds, load_profile

HEADER = """# Modbus register maps

Generated from `config/profiles/*.yaml` and `config/device-kinds.yaml` by
`python -m drivers.profile_docs`; do not edit by hand. The simulator serves exactly these
maps and the drivers read them: register names, enum codes and bit names all come from the
profile, and a profile is checked against what its kind requires (below) when it loads.

Conventions: Modbus TCP, holding registers (function 3 to read, 6 or 16 to write; function 4
reads the same block), big-endian words (high word first for 32-bit values), unit id 1.
`value = raw x scale` in the unit shown. Power is > 0 for discharge (PCS) and import
(meter). Writes to read-only registers answer exception 2 (illegal address); values outside
min..max, or enum codes the profile does not name, answer exception 3 (illegal value); a 32-bit
value must be written whole (function 16).

Read every register of a device in one request, e.g. with mbpoll:
`mbpoll -m tcp -p PORT -a 1 -r FIRST -c SPAN -t 4 -0 127.0.0.1` (FIRST and SPAN below; `-0`
makes addresses 0-based as listed here), or with pymodbus:
`AsyncModbusTcpClient(host, port=PORT).read_holding_registers(FIRST, count=SPAN, device_id=1)`.
"""


def _range(lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return ""
    return f"{'' if lo is None else f'{lo:g}'}..{'' if hi is None else f'{hi:g}'}"


def render_profile(p: DeviceProfile, stem: str) -> str:
    lines = [f"## {p.name} (`{stem}`, {p.kind})", "", p.description, "",
             f"Block: first register {p.first_address}, span {p.span} registers.", "",
             "| register | address | type | scale | unit | access | range | description |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(p.registers, key=lambda r: r.address):
        desc = r.description
        if r.enum:
            desc += " (" + ", ".join(f"{k} = {v}" for k, v in sorted(r.enum.items())) + ")"
        if r.bits:
            desc += " (" + ", ".join(f"bit {k} = {v}" for k, v in sorted(r.bits.items())) + ")"
        lines.append(f"| `{r.name}` | {r.address} | {r.type.value} | {r.scale:g} | {r.unit} | {r.access} "
                     f"| {_range(r.min, r.max)} | {desc} |")
    return "\n".join(lines) + "\n"


def _need(need: RegisterNeed, quantities: dict[str, list[str]]) -> str:
    if need.quantity is not None:
        what = f"{need.quantity} ({', '.join(quantities[need.quantity])})"
    elif need.enum is not None:
        what = "enum naming " + ", ".join(f"`{n}`" for n in need.enum)
    else:
        named = ", ".join(f"`{n}`" for n in need.bits or [])
        what = "bitfield" + (f" with {'a bit' if len(need.bits or []) == 1 else 'bits'} named {named}" if named else "")
    return what + (", writable" if need.access == "rw" else "")


def render_kinds() -> str:
    kinds = device_kinds()
    lines = ["## What each kind requires", "",
             f"From `config/{KINDS_FILE.name}`. A profile may have more registers, enum registers map",
             "their own codes to these names (exactly these), and bitfields may name more bits; a profile",
             "that falls short is refused when it loads, naming the register, and a site file that puts a",
             "profile in a slot of another kind is refused by `ems check-config` and `ems run`.", ""]
    for kind, spec in kinds.kinds.items():
        lines += [f"### {kind}", "", spec.description, "", "| register | must be |", "|---|---|"]
        lines += [f"| `{name}` | {_need(need, kinds.quantities)} |" for name, need in spec.registers.items()]
        lines.append("")
    return "\n".join(lines)


def render_all() -> str:
    parts = [HEADER, render_kinds()]
    for path in sorted(PROFILE_DIR.glob("*.yaml")):
        parts.append(render_profile(load_profile(path), path.stem))
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render_all())
