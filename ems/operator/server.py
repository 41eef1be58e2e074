"""The operator HTTP server: dashboard, JSON API, server-sent events, /metrics.

aiohttp, in a thread and event loop of its own (ems/operator/server_thread.py), so that no
client can delay a control period. It reads only what the controller publishes
(ems/published.py): the latest period result and the operator state (immutable, swapped
by the loop), and the event log (queries on this thread's own connection). The dashboard
history and the metrics' histograms are fed here, from each result the loop hands over.
Operator actions go to the control loop through its bounded action queue and apply at the
start of the next period; the handler waits for the loop's answer (the event, or a typed
refusal). Every request first takes a token from its client's bucket and a shared one
(ems/operator/rate_limits.py): 429 with Retry-After beyond them.
Reads are open (bind to loopback, or put a proxy in front); actions need an operator token
and are recorded in the event log with who, what and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from ems.action_queue import QueueFull
from ems.config import HttpConfig
from ems.events import Event
from ems.model.errors import EmsError
from ems.operator import openapi
from ems.operator import overrides as ov
from ems.operator import requests as rq
from ems.operator.auth import Tokens
from ems.operator.controls import InvalidAction, OperatorControls, StateConflict, UnknownUnit
from ems.operator.history import History
from ems.operator.metrics import CONTENT_TYPE, ControllerMetrics
from ems.operator.problems import problems
from ems.operator.rate_limits import RequestLimits
from ems.operator.refusals import RefusalAudit
from ems.operator.server_thread import Pacer, ServerThread

if TYPE_CHECKING:
    from ems.control_loop import Controller
    from ems.published import PeriodResult, Published

log = structlog.get_logger("ems.http")

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 64 * 1024
_SECRET_KEY = re.compile(r"token|password|passwd|secret|api_?key|credential", re.I)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_KIND = re.compile(r"^[a-z_]{1,64}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M")


def jsonable(x: Any) -> Any:
    """JSON-safe: non-finite floats become null (JSON has no NaN), paths and the like strings."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if x is None or isinstance(x, bool | int | str):
        return x
    return str(x)


def redact(x: Any, key: str = "") -> Any:
    """Secrets out: values under secret-looking keys, and user:password in URLs."""
    if isinstance(x, Mapping):
        return {k: redact(v, str(k)) for k, v in x.items()}
    if isinstance(x, list):
        return [redact(v, key) for v in x]
    if x is not None and _SECRET_KEY.search(key) and not key.endswith(("_env", "_file")):
        return "***"
    if isinstance(x, str):
        return _URL_USERINFO.sub("***@", x)
    return x


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(jsonable(data), separators=(",", ":")), status=status,
                        content_type="application/json")


class ApiError(EmsError):
    def __init__(self, status: int, error: str, detail: list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail or [], headers


def _error_response(status: int, error: str, detail: list[str] | None = None,
                    headers: dict[str, str] | None = None) -> web.Response:
    resp = _json({"error": error, "detail": detail or []}, status)
    if headers:
        resp.headers.update(headers)
    return resp


def _refusal(exc: EmsError) -> ApiError:
    """An operator action's refusal (raised by the control loop) as the API's error."""
    if isinstance(exc, ov.InvalidValue):
        return ApiError(422, f"refused: {exc}", exc.problems)
    if isinstance(exc, ov.UnknownParameter | ov.ParameterUnavailable | UnknownUnit):
        return ApiError(404, str(exc))
    if isinstance(exc, StateConflict):
        return ApiError(409, str(exc))
    if isinstance(exc, InvalidAction):
        return ApiError(422, str(exc))
    raise exc


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is JSON with a message for a person; an unexpected one is logged, and
    answered as 500 without internals."""
    try:
        return await handler(request)
    except ApiError as exc:
        headers = {"WWW-Authenticate": 'Bearer realm="ems"'} if exc.status == 401 else exc.headers
        return _error_response(exc.status, exc.error, exc.detail, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items() if k in ("Allow",)}  # 405 must list the methods
        return _error_response(exc.status, exc.reason, headers=keep)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("operator API handler failed", path=request.path)
        return _error_response(500, "internal error (see the controller's log)")


def _query_int(request: web.Request, name: str, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", [f"{name}: {raw!r}"]) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}", [f"{name}: {value}"])
    return value


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


Act = Callable[[Any, str], Callable[[OperatorControls], Event]]


class OperatorSurface:
    """The aiohttp application over what one controller publishes, with its metrics and
    dashboard history. Built on the controller's thread; everything else runs on the
    server's, except `on_period` and `on_event` (safe from any thread)."""

    def __init__(self, published: Published, http: HttpConfig, tokens: Tokens) -> None:
        self.pub = published
        self.http = http
        self.tokens = tokens
        self.history = History(zone=published.zone)  # the month the billing demand names
        self.metrics = ControllerMetrics(published)
        self.limits = RequestLimits(http.limits)
        self.pacer = Pacer(http.limits.server_cpu_share)
        self._status: tuple[int, object, dict[str, Any]] | None = None  # (period, operator view, body)
        self._closing = asyncio.Event()
        self._streams: dict[asyncio.Queue[Event], asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._results: deque[PeriodResult] = deque(maxlen=4096)  # handed over, not yet taken in
        self._take_scheduled = False
        self.refusals = RefusalAudit(published.events, wall=published.clock.wall)
        cfg = published.operator.configured
        self.spec = openapi.build(site=published.site, params=ov.tunable(cfg),
                                  units=[u.id for u in cfg.bess_units], max_force_s=http.max_force_s)
        self.app = self._build_app()

    # --- hand-over from the controller (any thread: quick, never blocks) ---------------
    def on_period(self, r: PeriodResult) -> None:
        self._results.append(r)
        if not self._take_scheduled and self._loop is not None:
            self._take_scheduled = True
            with contextlib.suppress(RuntimeError):  # the server's loop has ended
                self._loop.call_soon_threadsafe(self._take_results)

    def on_event(self, event: Event) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._take_event, event)

    # --- on the server's thread ----------------------------------------------------------
    def started(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._take_scheduled = True
        loop.call_soon(self._take_results)  # what was published before the server was up

    async def stopped(self) -> None:
        self._loop = None
        self.pub.events.close_reader()

    def _take_results(self) -> None:
        self._take_scheduled = False  # before taking: a result handed over from now on schedules again
        while self._results:
            r = self._results.popleft()
            self.metrics.on_period(r)
            self.history.on_period(r, r.step.cap_w)

    def _take_event(self, event: Event) -> None:
        self.metrics.on_event(event)
        for q, wake in self._streams.items():
            if q.full():
                q.get_nowait()  # a slow browser loses its oldest events
            q.put_nowait(event)
            wake.set()

    # --- app -------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._limit, _errors], client_max_size=MAX_BODY_BYTES)
        r = app.router
        r.add_get("/", self.index)
        r.add_static("/static/", STATIC_DIR, show_index=False, follow_symlinks=False)
        r.add_get("/api/openapi.json", self.openapi)
        r.add_get("/api/health", self.health)
        r.add_get("/api/status", self.status)
        r.add_get("/api/snapshot", self.snapshot)
        r.add_get("/api/setpoints", self.setpoints)
        r.add_get("/api/history", self.history_samples)
        r.add_get("/api/events", self.events)
        r.add_get("/api/config", self.config)
        r.add_get("/api/params", self.params)
        r.add_post("/api/actions/set-param", self.set_param)
        r.add_post("/api/actions/reset-param", self.reset_param)
        r.add_post("/api/actions/maintenance", self.maintenance)
        r.add_post("/api/actions/force-mode", self.force_mode)
        r.add_post("/api/actions/reload-site-file", self.reload_site_file)
        r.add_post("/api/actions/load-target", self.load_target)
        r.add_post("/api/actions/dr-opt-out", self.dr_opt_out)
        r.add_get("/api/dr", self.dr)
        r.add_get("/api/stream", self.stream)
        r.add_get("/metrics", self.prometheus)
        app.on_shutdown.append(self._on_shutdown)
        return app

    @web.middleware
    async def _limit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Rate limits first: a refused request costs a bucket lookup and a short answer."""
        self.pacer.check()
        kind, refused = self.limits.take(_client(request), request.path)
        if refused is None:
            return await handler(request)
        self.metrics.limited.labels(kind, refused.scope).inc()
        who = "this client" if refused.scope == "client" else "all clients together"
        return _error_response(429, f"too many requests ({kind.replace('_', ' ')}) from {who}; "
                                    f"retry after {refused.retry_after_s} s",
                               headers={"Retry-After": str(refused.retry_after_s)})

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing.set()  # ends the open event streams
        for wake in self._streams.values():
            wake.set()

    # --- reads -----------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(self.spec)

    async def health(self, request: web.Request) -> web.Response:
        """The server answers even when the control loop is stuck: `ok` says whether a period
        finished within the last three periods (and a second)."""
        r = self.pub.result
        age_s = None if r is None else self.pub.clock.monotonic() - r.snapshot.now_s
        speed = self.pub.clock.speed
        ok = r is not None and age_s is not None and age_s / speed <= 3 * r.snapshot.period_s / speed + 1.0
        return _json({"ok": ok, "site": self.pub.site, "periods": 0 if r is None else r.period,
                      "last_period_age_s": age_s, "devices_down": [] if r is None else sorted(r.devices_down)})

    def _last(self) -> PeriodResult:
        r = self.pub.result
        if r is None:
            raise ApiError(503, "no control period has run yet")
        return r

    def status_body(self) -> dict[str, Any]:
        r, view = self._last(), self.pub.operator
        cached = self._status
        if cached is not None and cached[0] == r.period and cached[1] is view:  # once per period and change
            return cached[2]
        body = dict(r.status)
        body["month_peak"] = self.month_peak(r)
        body["operator"] = view.summary
        body["actions_enabled"] = self.tokens.configured
        body["wall_now_s"] = round(self.pub.clock.wall(), 3)
        body["time_zone"] = str(self.pub.zone)  # the tariff's (IANA name, or UTC): the dashboard's clock
        self._status = (r.period, view, body)
        return body

    def month_peak(self, r: PeriodResult) -> dict[str, Any]:
        """The billing demand the controller keeps (15-min, persisted; from the period's
        status) and the highest import of any period this month (in memory, here)."""
        d: Mapping[str, Any] = r.status.get("demand") or {}
        month = d.get("month") or ""
        p = self.history.peak
        same = p.month == month
        return {"month": month or p.month or None, "peak_demand_15min_w": d.get("month_peak_w"),
                "interval_average_w": d.get("interval_average_w"), "interval_s": d.get("interval_s"),
                "interval_start_wall_s": d.get("interval_start_wall_s"),
                "peak_import_w": p.peak_w if same or not month else None,
                "peak_at_wall_s": p.peak_at_wall_s if same or not month else None}

    async def status(self, request: web.Request) -> web.Response:
        return _json(self.status_body())

    async def snapshot(self, request: web.Request) -> web.Response:
        s = self._last().snapshot
        now = self.pub.clock.monotonic()
        racks = s.racks
        return _json({
            "ts": s.wall_s, "now_s": s.now_s, "period_s": s.period_s, "age_s": now - s.now_s,
            "meter": None if s.meter is None else {**_fields(s.meter), "age_s": now - s.meter.read_at_s},
            "units": [{"unit": u.unit_id, "available": u.available,
                       "unavailable": None if u.unavailable is None else u.unavailable.code,
                       "bms": None if u.bms is None else {**_fields(u.bms), "age_s": now - u.bms.read_at_s},
                       "pcs": None if u.pcs is None else {**_fields(u.pcs), "age_s": now - u.pcs.read_at_s}}
                      for u in s.units],
            "racks": [{"rack": rid, "row": row, "power_w": p, "cap_w": c, "nameplate_w": n, "age_s": a}
                      for rid, row, p, c, n, a in zip(racks.rack_ids, racks.row_of_rack, racks.power_w.tolist(),
                                                      racks.cap_w.tolist(), racks.nameplate_w.tolist(),
                                                      racks.age_s.tolist(), strict=True)],
            "racks_stale_after_s": racks.stale_after_s,
        })

    async def setpoints(self, request: web.Request) -> web.Response:
        r = self._last()
        a = r.step.arbitration
        return _json({
            "ts": r.snapshot.wall_s,
            "decisions": [{"policy": d.policy, "reason": d.reason.code, "min_w": d.min_w, "max_w": d.max_w,
                           "target_w": d.target_w} for d in r.step.decisions],
            "arbitration": {"setpoint_w": a.setpoint_w, "lo_w": a.lo_w, "hi_w": a.hi_w, "reason": a.reason.code,
                            "decided_by": a.decided_by, "overruled": list(a.overruled)},
            "reason": r.step.reason.code, "decided_by": r.step.decided_by, "envelope_narrowed": list(r.step.clamped),
            "unit_setpoints_w": r.step.unit_setpoints_w,
            "unit_written_w": r.unit_written_w,
            "rack_caps_sent_w": r.rack_caps_sent_w,
            "grid_import_cap_w": r.step.cap_w,
        })

    async def history_samples(self, request: web.Request) -> web.Response:
        """The recent samples after `since`; or, with `range_s` or `points`, the window the
        dashboard draws: the last `range_s` site seconds (all kept without it), coarse and
        recent samples, merged down to at most `points`."""
        since = _query_int(request, "since", 0, 2**62)
        range_s = _query_int(request, "range_s", 1, 10**9)
        points = _query_int(request, "points", 10, 10_000)
        if range_s is None and points is None:
            samples = self.history.since(since or 0)
        else:
            if since is not None:
                raise ApiError(400, "since cannot be combined with range_s or points",
                               ["since: the recent samples after a sequence number; range_s, points: a window"])
            samples = self.history.window(range_s, points)
        r = self.pub.result
        return _json({"samples": samples, "seq": self.history.seq,
                      "month_peak": None if r is None else self.month_peak(r)})

    async def events(self, request: web.Request) -> web.Response:
        limit = _query_int(request, "limit", 1, 1000) or 50
        before = _query_int(request, "before_id", 1, 2**62)
        kind = request.query.get("kind")
        if kind is not None and not _KIND.match(kind):
            raise ApiError(400, "kind must be lower-case letters and underscores", [f"kind: {kind!r}"])
        page = self.pub.events.query(limit=limit, before_id=before, kind=kind)  # this thread's own connection
        # one event at a time: no single long encoding call holds the interpreter
        items = ",".join(json.dumps(jsonable(e.as_dict()), separators=(",", ":")) for e in page)
        next_before = page[-1].id if len(page) == limit else None
        return web.Response(text=f'{{"events":[{items}],"next_before_id":{json.dumps(next_before)}}}',
                            content_type="application/json")

    async def config(self, request: web.Request) -> web.Response:
        c = self.pub.operator
        return _json({"configured": redact(c.configured.model_dump(mode="json")),
                      "effective": redact(c.effective.model_dump(mode="json")),
                      "overrides": c.summary["overrides"],
                      "overrides_file": None if c.path is None else str(c.path)})

    async def params(self, request: web.Request) -> web.Response:
        c = self.pub.operator
        out = []
        for name in ov.tunable(c.configured):
            schema = ov.field_schema(c.configured, name)
            o = c.params.get(name)
            out.append({"name": name, "value": ov.current_value(c.effective, name),
                        "configured": ov.current_value(c.configured, name), "schema": schema,
                        "override": None if o is None else {"by": o.by, "why": o.why, "at_wall_s": o.at_wall_s,
                                                            "revert_at_wall_s": o.revert_at_wall_s}})
        return _json({"params": out, "persisted": c.path is not None})

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    # --- actions ---------------------------------------------------------------------
    async def _authorized(self, request: web.Request) -> str:
        if not self.tokens.configured:
            raise ApiError(503, "operator actions are disabled: no operator token is configured "
                                f"(set ${self.http.token_env} or http.token_file)")
        who = self.tokens.operator(request.headers.get("Authorization"))
        if who is None:
            log.warning("operator action refused: missing or wrong token", path=request.path,
                        peer=request.remote)
            raise ApiError(401, "missing or wrong operator token (Authorization: Bearer <token>)")
        return who

    async def _body(self, request: web.Request, adapter: TypeAdapter[M]) -> M:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, f"request body larger than {MAX_BODY_BYTES} bytes") from None
        try:
            return adapter.validate_json(raw or b"null")
        except ValidationError as exc:
            raise ApiError(400, "malformed request", problems(exc, tagged=adapter is _FORCE)) from None

    async def _apply(self, act: Callable[[OperatorControls], Event]) -> Event:
        """Hand the action to the control loop and wait for its answer, within a bound."""
        try:
            fut = self.pub.actions.submit(act)
        except QueueFull as exc:
            raise ApiError(503, f"busy: {exc}", headers={"Retry-After": "1"}) from None
        timeout_s = self.http.limits.action_timeout_s
        try:
            return await _answer(fut, timeout_s)
        except TimeoutError:
            raise ApiError(503, f"the control loop did not take the action within {timeout_s:g} s: "
                                "not applied", headers={"Retry-After": "1"}) from None
        except EmsError as exc:
            raise _refusal(exc) from None

    async def _act(self, request: web.Request, adapter: TypeAdapter[Any], act: Act) -> web.Response:
        who: str | None = None
        try:
            who = await self._authorized(request)
            body = await self._body(request, adapter)
            event = await self._apply(act(body, who))
        except ApiError as exc:
            self.refusals.record(request.path, exc.status, exc.error, who, request.remote)
            raise
        return _json({"ok": True, "event": event.as_dict(), "applies": "from the control period that took it"})

    async def set_param(self, request: web.Request) -> web.Response:
        return await self._act(request, _SET_PARAM, lambda b, who: lambda c: c.set_param(
            b.param, b.value, who, b.reason, b.revert_after_s))

    async def reset_param(self, request: web.Request) -> web.Response:
        return await self._act(request, _RESET_PARAM, lambda b, who: lambda c: c.reset_param(b.param, who, b.reason))

    async def maintenance(self, request: web.Request) -> web.Response:
        return await self._act(request, _MAINTENANCE, lambda b, who: lambda c: c.set_maintenance(
            b.unit, b.in_maintenance, who, b.reason))

    async def reload_site_file(self, request: web.Request) -> web.Response:
        return await self._act(request, _RELOAD, lambda b, who: lambda c: c.reload_site_file(who, b.reason))

    async def force_mode(self, request: web.Request) -> web.Response:
        def act(b: rq.ForceZero | rq.ForceSetpoint | rq.ForceAuto, who: str) -> Callable[[OperatorControls], Event]:
            if isinstance(b, rq.ForceAuto):
                return lambda c: c.clear_force(who, b.reason)
            setpoint = b.setpoint_w if isinstance(b, rq.ForceSetpoint) else 0.0
            return lambda c: c.force_mode(b.mode, setpoint, b.timeout_s, who, b.reason)

        return await self._act(request, _FORCE, act)

    async def load_target(self, request: web.Request) -> web.Response:
        # validated here for the shape; decoded (signature, replay, times) on the loop's thread
        return await self._act(request, _LOAD_TARGET, lambda b, who: lambda c: c.load_target(
            b.model_dump_json(exclude_none=True).encode(), who))

    async def dr_opt_out(self, request: web.Request) -> web.Response:
        return await self._act(request, _DR_OPT_OUT, lambda b, who: lambda c: c.dr_opt_out(
            b.event_id, b.opt_out, who, b.reason))

    async def dr(self, request: web.Request) -> web.Response:
        """Demand response as of the last period: the event in force, pending ones, the GPU
        budget per row (what a scheduler follows), the last event's figures."""
        r = self.pub.result
        if r is None:
            raise ApiError(503, "no control period has run yet")
        return _json({"dr": r.status.get("dr")})

    # --- live stream -----------------------------------------------------------------
    async def stream(self, request: web.Request) -> web.StreamResponse:
        seq = _query_int(request, "since", 0, 2**62)
        client = _client(request)
        if not self.limits.streams.acquire(client):
            self.metrics.limited.labels("streams", "open").inc()
            raise ApiError(429, "too many open event streams (per client or in total); close one first",
                           headers={"Retry-After": "5"})
        try:
            return await self._stream(request, seq)
        finally:
            self.limits.streams.release(client)

    async def _stream(self, request: web.Request, seq: int | None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=500)
        wake = asyncio.Event()  # set on a new event, or when the server closes
        self._streams[q] = wake
        seq = self.history.seq if seq is None else seq
        period = -1
        last_write = time.monotonic()
        try:
            while not self._closing.is_set():
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the browser went away: its slot comes back now, not at the next write
                chunks: list[str] = []
                samples = self.history.since(seq)
                if samples:
                    seq = samples[-1]["seq"]
                    chunks.append(_sse("samples", samples))
                r = self.pub.result
                if r is not None and r.period != period:
                    period = r.period
                    chunks.append(_sse("status", self.status_body()))
                while not q.empty():
                    chunks.append(_sse("event", q.get_nowait().as_dict()))
                if not chunks and time.monotonic() - last_write > 15:
                    chunks.append(": keep-alive\n\n")  # proxies close idle connections
                if chunks:
                    await resp.write("".join(chunks).encode())
                    last_write = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.http.stream_interval_s)
                wake.clear()
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            self._streams.pop(q, None)
        return resp


async def _answer(fut: Future[Event], timeout_s: float) -> Event:
    """The loop's answer to a queued action. On timeout the action is withdrawn, so it is never
    applied after the client was told it was not; if the loop is applying it right then,
    its answer is moments away and is awaited."""
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout_s)
    except TimeoutError:
        if fut.cancel():
            raise
        return await asyncio.wrap_future(fut)
    except asyncio.CancelledError:  # the server is stopping: nobody will hear the answer
        fut.cancel()
        raise


def _sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(jsonable(data), separators=(',', ':'))}\n\n"


def _fields(reading: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(reading).items() if k != "read_at_s"}


_SET_PARAM = TypeAdapter(rq.SetParam)
_RESET_PARAM = TypeAdapter(rq.ResetParam)
_MAINTENANCE = TypeAdapter(rq.SetMaintenance)
_RELOAD = TypeAdapter(rq.ReloadSiteFile)
_FORCE: TypeAdapter[rq.ForceZero | rq.ForceSetpoint | rq.ForceAuto] = TypeAdapter(rq.ForceMode)
_LOAD_TARGET: TypeAdapter[rq.LoadTargetSet] = TypeAdapter(rq.LoadTargetSet)
_DR_OPT_OUT: TypeAdapter[rq.DrOptOut] = TypeAdapter(rq.DrOptOut)


@dataclasses.dataclass
class RunningServer:
    url: str
    port: int
    surface: OperatorSurface


@contextlib.asynccontextmanager
async def serve(ctl: Controller, http: HttpConfig, tokens: Tokens) -> AsyncIterator[RunningServer]:
    """Serve the operator surface of `ctl` on `http.host:http.port`, from a thread of its own,
    until the block exits. Call it from the control loop's thread (it hooks the loop's
    observers); a port that cannot be bound raises OSError here."""
    surface = OperatorSurface(ctl.published, http, tokens)
    thread = ServerThread(surface.app, http.host, http.port, on_start=surface.started, on_stop=surface.stopped,
                          pacer=surface.pacer)
    ctl.observers.append(surface.on_period)
    unsubscribe = ctl.events.subscribe(surface.on_event)
    try:
        port = await thread.start()
        host = http.host if http.host not in ("0.0.0.0", "::") else "127.0.0.1"
        url = f"http://{host}:{port}/"
        log.info("operator server up", url=url, actions_enabled=tokens.configured, thread=True)
        try:
            yield RunningServer(url, port, surface)
        finally:
            await thread.stop()
    finally:
        unsubscribe()
        with contextlib.suppress(ValueError):
            ctl.observers.remove(surface.on_period)
