"""The site's load-target channel: an aggregator's or operator's `grid.loadtarget.set`.

Following NVIDIA's DSX Flex schema where it fits: a CloudEvents 1.0 envelope
(`specversion`, a UUID `id`, `source`, `type` `grid.loadtarget.set.v1`, `time`,
`datacontenttype` `application/json`, `subject`, an optional UUID `correlationid` echoed
in every answer) whose `data` says the target (`{"value", "unit"}`, W, kW or MW), when it
starts (`start`, ISO 8601 with a zone), how long (`duration_s`) and its `priority` (0-9,
higher first where events overlap). `data` may be a JWS compact serialisation (HS256) of
that object: where the site file names a shared secret it must be, and its signature is
checked; DSX Flex signs `data` the same way. A request whose `target` is `null` cancels the
event of the same correlation id. Replays (an `id` seen before) and stale requests (`time`
more than `max_age_s` away from now) are refused. Pure: decoding only; the channel
(ems/load_target_mqtt.py) and the operator API (ems/operator) apply it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drivers.json_numbers import finite
from ems.model import bounded_json
from ems.model.dr import MAX_AHEAD_S, DrEvent
from ems.model.errors import EmsError

SET_TYPE = "grid.loadtarget.set.v1"
STATUS_TYPE = "grid.powerstate.status.v1"
ALERT_TYPE = "grid.powerbreach.alert.v1"
UNITS_W = {"W": 1.0, "kW": 1e3, "MW": 1e6}
MAX_W = 1e10
MAX_DURATION_S = 7 * 86400.0
MAX_PAYLOAD_BYTES = 16 * 1024
_SOURCE = re.compile(r"^[\x21-\x7e]{1,256}$")


class BadLoadTarget(EmsError):
    """A load-target request that is not the documented shape, badly signed, stale or a replay."""


@dataclass(frozen=True, slots=True)
class LoadTarget:
    correlation_id: str  # the event's id in the book: the correlation id, else the request's id
    request_id: str
    source: str
    event: DrEvent | None  # None: cancel
    priority: int


def _b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadLoadTarget("data: not base64url") from None


def jws_sign(payload: dict[str, Any], secret: bytes) -> str:
    """A JWS compact serialisation (HS256) of `payload` (for senders and tests)."""
    def enc(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = enc(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = enc(json.dumps(payload).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{enc(sig)}"


def _verified(data: object, secret: bytes | None) -> dict[str, Any]:
    if isinstance(data, str):
        parts = data.split(".")
        if len(parts) != 3:
            raise BadLoadTarget("data: not a JWS compact serialisation")
        try:
            head = bounded_json.loads(_b64url(parts[0]))
        except ValueError:
            raise BadLoadTarget("data: JWS header is not JSON") from None
        if not isinstance(head, dict) or head.get("alg") != "HS256":
            raise BadLoadTarget("data: only HS256 signatures are accepted")
        if secret is None:
            raise BadLoadTarget("data: signed, but the site has no secret to check it with")
        want = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, _b64url(parts[2])):
            raise BadLoadTarget("data: bad signature")
        try:
            data = bounded_json.loads(_b64url(parts[1]))
        except ValueError:
            raise BadLoadTarget("data: JWS payload is not JSON") from None
    elif secret is not None:
        raise BadLoadTarget("data must be signed (JWS HS256): the site requires it")
    if not isinstance(data, dict):
        raise BadLoadTarget("data must be a JSON object")
    return data


def _number(obj: dict[str, Any], key: str, lo: float, hi: float) -> float:
    v = finite(obj.get(key))
    if v is None or not lo <= v <= hi:
        raise BadLoadTarget(f"{key} must be a number within {lo:g}..{hi:g}")
    return v


def _time(value: object, key: str) -> float:
    if not isinstance(value, str) or len(value) > 64:
        raise BadLoadTarget(f"{key} must be an ISO 8601 time with a zone")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise BadLoadTarget(f"{key} must be an ISO 8601 time with a zone") from None
    if t.tzinfo is None:
        raise BadLoadTarget(f"{key} must carry a time zone")
    return t.timestamp()


def _uuid(value: object, key: str) -> str:
    try:
        return str(uuid.UUID(str(value))) if isinstance(value, str) and len(value) <= 64 else _raise(key)
    except ValueError:
        return _raise(key)


def _raise(key: str) -> str:
    raise BadLoadTarget(f"{key} must be a UUID")


class LoadTargetDecoder:
    """Decodes requests; remembers recent ids to refuse replays."""

    def __init__(self, secret: bytes | None, max_age_s: float = 300.0, remember: int = 1024) -> None:
        self.secret = secret
        self.max_age_s = max_age_s
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def decode(self, payload: bytes, now_wall_s: float, source_default: str = "mqtt") -> LoadTarget:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise BadLoadTarget(f"request of {len(payload)} bytes: at most {MAX_PAYLOAD_BYTES}")
        try:
            obj = bounded_json.loads(payload)  # nesting bounded, as every third party's JSON
        except ValueError:  # UnicodeDecodeError is one
            raise BadLoadTarget("not JSON") from None
        if not isinstance(obj, dict):
            raise BadLoadTarget("not a JSON object")
        if obj.get("specversion") not in ("1.0", "1.0.2"):
            raise BadLoadTarget("specversion must be 1.0 (CloudEvents)")
        if obj.get("type") != SET_TYPE:
            raise BadLoadTarget(f"type must be {SET_TYPE}")
        request_id = _uuid(obj.get("id"), "id")
        source = obj.get("source")
        if not isinstance(source, str) or not _SOURCE.match(source):
            raise BadLoadTarget("source must be a URI reference of at most 256 printable characters")
        if obj.get("datacontenttype", "application/json") != "application/json":
            raise BadLoadTarget("datacontenttype must be application/json")
        sent = _time(obj.get("time"), "time")
        if abs(sent - now_wall_s) > self.max_age_s:
            raise BadLoadTarget(f"time is {sent - now_wall_s:+.0f} s from now: at most {self.max_age_s:g} s")
        corr = obj.get("correlationid")
        correlation_id = request_id if corr is None else _uuid(corr, "correlationid")
        data = _verified(obj.get("data"), self.secret)
        if request_id in self._seen:
            raise BadLoadTarget("a replay: this id was seen before")
        priority = int(_number(data, "priority", 0, 9)) if "priority" in data else 0
        target = data.get("target", "missing")
        event: DrEvent | None = None
        if target is not None:
            if not isinstance(target, dict) or target.get("unit") not in UNITS_W:
                raise BadLoadTarget("target must be {\"value\": number, \"unit\": \"W\" | \"kW\" | \"MW\"} or null")
            target_w = _number(target, "value", 0, MAX_W) * UNITS_W[str(target["unit"])]
            if target_w > MAX_W:
                raise BadLoadTarget(f"target at most {MAX_W:g} W")
            start = _time(data.get("start"), "start")
            duration_s = _number(data, "duration_s", 1, MAX_DURATION_S)
            if start + duration_s <= now_wall_s:
                raise BadLoadTarget("the window is over already")
            if start > now_wall_s + MAX_AHEAD_S:
                raise BadLoadTarget(f"a window starting more than {MAX_AHEAD_S / 86400:.0f} days from now")
            event = DrEvent(correlation_id, start, start + duration_s, target_import_w=target_w,
                            source=source_default, priority=priority)
        self._seen[request_id] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return LoadTarget(correlation_id, request_id, source, event, priority)


def cloud_event(kind: str, source: str, subject: str, data: dict[str, Any], now_wall_s: float,
                correlation_id: str | None) -> bytes:
    """An answer (status or alert) in the same envelope."""
    obj: dict[str, Any] = {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": source, "type": kind, "subject": subject,
        "time": datetime.fromtimestamp(now_wall_s).astimezone().isoformat(), "datacontenttype": "application/json",
        "data": data}
    if correlation_id is not None:
        obj["correlationid"] = correlation_id
    return json.dumps(obj, separators=(",", ":")).encode()
