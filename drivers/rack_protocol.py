"""MQTT topics and JSON payloads of GPU racks (documented in docs/topics.md).

Shared by the simulated racks and the controller's rack driver, so both sides speak
exactly one protocol. Decoding is strict: a payload that is not the documented shape,
or carries a non-finite or negative power, raises `MalformedData`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from drivers.errors import MalformedData
from ems.model import bounded_json
from ems.model.racks import SmoothingProfile

RACK_STATES = frozenset({"idle", "ramp_up", "training", "checkpoint", "ramp_down", "steady"})
TELEMETRY_MAX_BYTES = 4096  # one rack's message is ~150 bytes
CAPS_MAX_BYTES = 256 * 1024  # a row's caps, a smoothing profile: a few thousand racks' worth


# Rack topics live under their row (`PREFIX/rows/{row}/racks/{rack}/...`) so that a broker ACL
# can confine a row agent to its own row: Mosquitto's `%u` fills a whole topic level, and
# `PREFIX/racks/row03-+/...` is not a valid pattern (a wildcard cannot share a level).
def row_of(rack_id: str) -> str:
    """`row03-rack07` -> `row03`."""
    return rack_id.split("-", 1)[0]


def telemetry_topic(prefix: str, rack_id: str) -> str:
    return f"{prefix}/rows/{row_of(rack_id)}/racks/{rack_id}/telemetry"


def telemetry_wildcard(prefix: str) -> str:
    return f"{prefix}/rows/+/racks/+/telemetry"


def cap_topic(prefix: str, rack_id: str) -> str:
    return f"{prefix}/rows/{row_of(rack_id)}/racks/{rack_id}/cap"


def row_caps_topic(prefix: str, row_id: str) -> str:
    return f"{prefix}/rows/{row_id}/caps"


def status_topic(prefix: str) -> str:
    return f"{prefix}/site/status"


def rack_id_from_topic(topic: str) -> str:
    """`{prefix}/rows/{row}/racks/{rack_id}/telemetry` -> rack_id, which must belong to that row
    (the broker lets a row agent publish only under its own row: the row level is what it vouches for)."""
    parts = topic.rsplit("/", 5)
    if len(parts) != 6 or parts[1] != "rows" or parts[3] != "racks" or parts[5] != "telemetry":
        raise MalformedData(f"not a rack topic: {topic!r}")
    if row_of(parts[4]) != parts[2]:
        raise MalformedData(f"rack {parts[4]!r} published under row {parts[2]!r}")
    return parts[4]


@dataclass(frozen=True, slots=True)
class RackTelemetry:
    rack_id: str
    power_w: float
    cap_w: float | None
    nameplate_w: float
    state: str
    seq: int
    ts: float  # sender's clock, seconds since the epoch (informational; age uses receipt time)


def _number(obj: dict[str, object], key: str, *, optional: bool = False) -> float | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedData(f"{key} must be a number, got {_short(value)}")
    try:
        f = float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        raise MalformedData(f"{key} is too large") from None
    if not math.isfinite(f) or f < 0:
        raise MalformedData(f"{key} must be finite and >= 0, got {_short(value)}")
    return f


def _short(value: object) -> str:
    """A value for an error message, bounded: a hostile payload must not flood the log."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _load(payload: bytes, what: str, max_bytes: int) -> object:
    # refused unread past `max_bytes`: a row agent's 20 MB "telemetry" took 0.4 s of the
    # control loop's thread to parse (the broker's default limit is 256 MB)
    if len(payload) > max_bytes:
        raise MalformedData(f"{what}: {len(payload)} bytes, at most {max_bytes}")
    try:  # nesting bounded: _short() renders what it decodes (a list 990 deep decodes, then its repr raises)
        return bounded_json.loads(payload)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise MalformedData(f"{what} is not JSON") from exc


def encode_telemetry(t: RackTelemetry) -> bytes:
    return json.dumps({
        "rack": t.rack_id, "ts": round(t.ts, 3), "seq": t.seq, "state": t.state,
        "power_w": round(t.power_w, 1), "cap_w": None if t.cap_w is None else round(t.cap_w, 1),
        "nameplate_w": t.nameplate_w,
    }, separators=(",", ":")).encode()


def decode_telemetry(rack_id: str, payload: bytes) -> RackTelemetry:
    obj = _load(payload, f"telemetry of {rack_id}", TELEMETRY_MAX_BYTES)
    if not isinstance(obj, dict):
        raise MalformedData(f"telemetry of {rack_id} is not a JSON object")
    if obj.get("rack") != rack_id:
        raise MalformedData(f"telemetry on {rack_id}'s topic names rack {_short(obj.get('rack'))}")
    state = obj.get("state")
    if not isinstance(state, str) or state not in RACK_STATES:
        raise MalformedData(f"unknown rack state {_short(state)}")
    seq = obj.get("seq")
    # the store keeps seq in an int64 array
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise MalformedData(f"seq must be an integer in 0..2**63-1, got {_short(seq)}")
    power = _number(obj, "power_w")
    nameplate = _number(obj, "nameplate_w")
    ts = _number(obj, "ts")
    assert power is not None and nameplate is not None and ts is not None
    if nameplate == 0:
        raise MalformedData("nameplate_w must be > 0")
    if power > 2.0 * nameplate:
        raise MalformedData(f"power_w {power} is implausible for nameplate {nameplate}")
    return RackTelemetry(rack_id, power, _number(obj, "cap_w", optional=True), nameplate,
                         str(state), seq, ts)


def encode_cap(cap_w: float | None, seq: int) -> bytes:
    return json.dumps({"cap_w": None if cap_w is None else round(cap_w, 1), "seq": seq},
                      separators=(",", ":")).encode()


def encode_row_caps(caps_w: dict[str, float | None], seq: int) -> bytes:
    body = {k: None if v is None else round(v, 1) for k, v in caps_w.items()}
    return json.dumps({"caps_w": body, "seq": seq}, separators=(",", ":")).encode()


def decode_cap(payload: bytes) -> float | None:
    obj = _object(payload)
    return _number(obj, "cap_w", optional=True)


def decode_row_caps(payload: bytes) -> dict[str, float | None]:
    obj = _object(payload)
    caps = obj.get("caps_w")
    if not isinstance(caps, dict):
        raise MalformedData("caps_w must be an object of rack id -> watts or null")
    return {str(k): _number(caps, k, optional=True) for k in caps}


def _object(payload: bytes) -> dict[str, object]:
    obj = _load(payload, "payload", CAPS_MAX_BYTES)
    if not isinstance(obj, dict):
        raise MalformedData("payload is not a JSON object")
    return obj


# --- GPU power smoothing profiles (controller -> racks), one retained message per row ---------
def row_smoothing_topic(prefix: str, row_id: str) -> str:
    return f"{prefix}/rows/{row_id}/smoothing"


def encode_row_smoothing(profiles: dict[str, SmoothingProfile | None], seq: int) -> bytes:
    body = {k: None if v is None else {"floor_w": round(v.floor_w, 1), "ramp_w_per_s": round(v.ramp_w_per_s, 1)}
            for k, v in profiles.items()}
    return json.dumps({"profiles": body, "seq": seq}, separators=(",", ":")).encode()


def decode_row_smoothing(payload: bytes) -> dict[str, SmoothingProfile | None]:
    obj = _object(payload)
    profiles = obj.get("profiles")
    if not isinstance(profiles, dict):
        raise MalformedData("profiles must be an object of rack id -> {floor_w, ramp_w_per_s} or null")
    out: dict[str, SmoothingProfile | None] = {}
    for rack, value in profiles.items():
        if value is None:
            out[str(rack)] = None
            continue
        if not isinstance(value, dict):
            raise MalformedData(f"profile of {_short(rack)} must be an object or null")
        floor_w, ramp = _number(value, "floor_w"), _number(value, "ramp_w_per_s")
        assert floor_w is not None and ramp is not None
        if ramp <= 0:
            raise MalformedData("ramp_w_per_s must be > 0")
        out[str(rack)] = SmoothingProfile(floor_w, ramp)
    return out
