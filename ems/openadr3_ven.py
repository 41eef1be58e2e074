"""The site's OpenADR 3.0.1 VEN: polls the VTN's REST API for its programs' events.

Every `poll_every_s` it takes an OAuth2 client-credentials token, registers once (finds its
ven object by `ven_name`, or creates it: GET and POST /vens), finds the configured
programs (GET /programs, by programName; one whose targets name only other sites is left
out, as such an event is), reads their events (GET /events?programID=) and
makes the book's OpenADR 3 events the ones the VTN lists now (ems/openadr3_events.py): new
and changed events in, events the VTN no longer lists (cancelled, deleted) out. While one
of its events is in force it posts a report (POST /reports) every `report_every_s`: the
site's grid import (DEMAND) and the flexibility it has now (LOAD_SHED_DELTA_AVAILABLE), as
the 2.0b VEN's telemetry.

A VTN is a third party: each poll is bounded by `timeout_s` (a slow or hanging VTN costs
the VEN a poll, never the control loop: this is a side task of its own and all its I/O is
async), each answer by MAX_BODY bytes and MAX_EVENTS events, decoded and mapped in a worker
thread; an answer that is not what the spec says is refused, counted and logged once per
kind, and a failed poll changes nothing in the book (an outage does not cancel a running
event).

Built on aiohttp rather than ElaadNL's `openadr3-client`, which needs Python 3.12 (this
project runs on 3.11; docs/demand-response.md).
"""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.parse
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog

from ems.config import OpenAdr3Config
from ems.dr_book import MAX_EVENTS, DrBook, DrBookFull
from ems.model import bounded_json
from ems.model.cancel_guard import checkpoint
from ems.model.dr import DrEvent
from ems.model.errors import EmsError
from ems.openadr3_events import Malformed, Unsupported, dr_events3, for_this_site, id_text

log = structlog.get_logger("ems.openadr3")
MAX_BODY = 1 << 20  # bytes of one answer: a program's events are a few kB
SOURCE = "openadr3"
_KEEP_REFUSED = 256  # refused events remembered, so one is counted once, not every poll
PROTOCOL = "OpenADR 3.0.1"
PROGRAM_PAGE = 50  # programs asked for a page
MAX_PROGRAM_PAGES = 20  # pages read a poll at most (1,000 programs): beyond, a followed one is not listed
RESOURCES = ("site", "flexibility")  # the resources the reports name (report_body)
REGISTER_RETRY_MAX_S = 3600.0  # the longest wait between two tries to register with a VTN that refuses
# every kind `refused` counts: the metrics export each from 0, since `increase()` reads a series
# that appears at 1 as no increase (a first refused event would alert no one)
REFUSED_KINDS = ("Unsupported", "Malformed", "DrBookFull", "TooManyEvents")


@dataclass
class ProgramsRead:
    """One poll's reading of the VTN's programs (`OpenAdr3Ven._programs`)."""

    ids: dict[str, str] = field(default_factory=dict)  # programs whose events are read: id -> name
    listed: set[str] = field(default_factory=set)  # the followed programs' names the VTN lists
    elsewhere: set[str] = field(default_factory=set)  # followed programs targeted only at others
    malformed: list[tuple[tuple[str, str], str]] = field(default_factory=list)  # (key, why), counted once


class VtnAnswer(EmsError):
    """An answer from the VTN the VEN cannot use (a status, too large, not JSON, not the spec's shape)."""


class OpenAdr3Ven:
    def __init__(self, cfg: OpenAdr3Config, secret: str, book: DrBook, wall: Callable[[], float],
                 import_w: Callable[[], float | None], flexibility_w: Callable[[], float | None]) -> None:
        self.cfg, self.secret, self.book, self.wall = cfg, secret, book, wall
        self.import_w, self.flexibility_w = import_w, flexibility_w
        self.polls = 0  # complete polls
        self.polls_failing = 0  # polls failed since the last complete one (the VTN out of reach now)
        self.failures: Counter[str] = Counter()  # failed polls and reports, by kind
        self.refused: Counter[str] = Counter()  # events refused, by kind (Unsupported, Malformed, DrBookFull, ...)
        self.reports = 0  # reports the VTN accepted
        self.elsewhere = 0  # events of the last poll targeted at other sites (not the site's)
        self.programs_elsewhere: set[str] = set()  # followed programs whose targets name only others
        self.identity = {"VEN_NAME": frozenset({cfg.ven_name}), **{k: frozenset(v) for k, v in cfg.targets.items()}}
        self.program_ids: dict[str, str] = {}  # VTN event id -> its program's id (for reports)
        self._refused_ids: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._logged: set[str] = set()
        self._token: tuple[float, str] | None = None  # (expires at, monotonic s; token)
        self._last_report_s = -float("inf")
        self.ven_id: str | None = None  # the site's ven object on the VTN, once found or created
        self.register_error: str | None = None  # why the last try to register failed (None: it did not)
        self._register_tries = 0
        self._register_after_s = -float("inf")  # monotonic
        self.ven_updates = 0  # times the ven object's targets were set to the site's (PUT /vens/{id})
        self.resources: tuple[str, ...] = ()  # the reports' resources, once the VTN has them under the ven

    def status(self) -> dict[str, object]:
        """The VEN's figures for the site status (`dr.ven`)."""
        return {"protocol": PROTOCOL, "vtn": self.cfg.vtn_url, "polls": self.polls,
                "failures": dict(self.failures), "refused": dict(self.refused), "reports": self.reports,
                "registered": self.ven_id is not None, "ven_id": self.ven_id, "register_error": self.register_error,
                "ven_updates": self.ven_updates, "resources": list(self.resources),
                "targeted_elsewhere": self.elsewhere, "programs_targeted_elsewhere": sorted(self.programs_elsewhere),
                "polls_failing": self.polls_failing}

    # --- HTTP ------------------------------------------------------------------------
    async def _json(self, resp: aiohttp.ClientResponse) -> Any:
        if resp.status // 100 != 2:
            if resp.status == 401:
                self._token = None
            raise VtnAnswer(f"HTTP {resp.status}")
        body = bytearray()
        while chunk := await resp.content.read(MAX_BODY + 1 - len(body)):  # a chunk at a time, to the bound
            body += chunk
            if len(body) > MAX_BODY:
                raise VtnAnswer(f"an answer over {MAX_BODY} bytes")
        try:  # nesting bounded: a value just under the parser's depth trips whatever renders it later
            return await asyncio.to_thread(bounded_json.loads, bytes(body))
        except ValueError:
            raise VtnAnswer("an answer that is not JSON") from None

    async def _bearer(self, http: aiohttp.ClientSession) -> dict[str, str]:
        now = time.monotonic()
        if self._token is None or self._token[0] <= now:
            basic = base64.b64encode(f"{self.cfg.client_id}:{self.secret}".encode()).decode()
            async with http.post(self.cfg.token_url, data={"grant_type": "client_credentials"},
                                 headers={"Authorization": f"Basic {basic}"}) as resp:
                answer = await self._json(resp)
            token = answer.get("access_token") if isinstance(answer, Mapping) else None
            if not isinstance(token, str) or not 0 < len(token) <= 8192:
                raise VtnAnswer("a token answer without an access_token")
            expires = answer.get("expires_in")
            life_s = float(expires) if isinstance(expires, int | float) and 0 < expires < 1e7 else 3600.0
            self._token = (now + life_s / 2, token)  # renewed at half its life, as openadr3-client does
        return {"Authorization": f"Bearer {self._token[1]}"}

    async def _get(self, http: aiohttp.ClientSession, path: str, params: dict[str, str]) -> list[Any]:
        async with http.get(f"{self.cfg.vtn_url}{path}", params=params, headers=await self._bearer(http)) as resp:
            answer = await self._json(resp)
        if not isinstance(answer, list):
            raise VtnAnswer(f"GET {path}: not a list")
        return answer

    # --- one poll ----------------------------------------------------------------------
    async def poll(self, http: aiohttp.ClientSession) -> None:
        """Read the programs' events and make the book's OpenADR 3 events those (raises on a failed poll)."""
        programs = await self._list_programs(http)
        # judged off the loop too: 50 programs' targets of up to 1 MiB take tens of ms
        read = await asyncio.to_thread(self._programs, programs)
        for key, why in read.malformed:  # counted once a version; the program is read all the same
            if key not in self._refused_ids:
                self._remember(key)
                self._refuse("Malformed", why, event_id=key[0])
        if read.elsewhere - self.programs_elsewhere:  # once a change, not every poll
            log.warning("openadr3 programs targeted at other sites: their events are not read",
                        programs=sorted(read.elsewhere))
        self.programs_elsewhere = read.elsewhere
        ids = read.ids
        missing = set(self.cfg.programs) - read.listed
        if missing and "ProgramNotFound" not in self._logged:
            self._logged.add("ProgramNotFound")
            log.warning("openadr3 programs not listed by the VTN", programs=sorted(missing))
        listed: list[tuple[str, Any]] = []
        for pid in ids:
            events = await self._get(http, "/events", {"programID": pid, "limit": str(MAX_EVENTS)})
            if len(events) > MAX_EVENTS:  # a VTN that ignores the limit: the rest is not read
                self._refuse("TooManyEvents", f"{len(events)} events listed (at most {MAX_EVENTS} read)",
                             count=len(events) - MAX_EVENTS)
            # a VTN that ignores the programID filter lists other programs' events too: not ours
            listed += [(pid, e) for e in events[:MAX_EVENTS]
                       if not isinstance(e, Mapping) or id_text(e.get("programID")) == pid]  # as _programs reads ids
        now_s = self.wall()
        # the mapping of up to MAX_EVENTS x MAX_INTERVALS intervals takes tens of ms: off the loop
        mapped = await asyncio.to_thread(self._map, listed, now_s, frozenset(self._refused_ids))
        self._reconcile(*mapped)
        self.polls += 1
        self.polls_failing = 0

    async def _list_programs(self, http: aiohttp.ClientSession) -> list[Any]:
        """The VTN's programs a page at a time (`skip`, `limit`), until every followed one is
        listed, a page is short, or MAX_PROGRAM_PAGES were read (the followed ones not seen by
        then are not listed). A VTN that ignores `skip` answers the first page again: read once."""
        out: list[Any] = []
        wanted = set(self.cfg.programs)
        first: object = None
        for page in range(MAX_PROGRAM_PAGES):
            params = {"skip": str(page * PROGRAM_PAGE), "limit": str(PROGRAM_PAGE)}
            got = (await self._get(http, "/programs", params))[:PROGRAM_PAGE]
            head = got[0].get("id") if got and isinstance(got[0], Mapping) else None
            if page == 0:
                first = head
            elif head is not None and head == first:
                break
            out += got
            wanted -= {_text(p.get("programName")) for p in got if isinstance(p, Mapping)}
            if len(got) < PROGRAM_PAGE or not wanted:
                break
        return out

    def _programs(self, programs: list[Any]) -> ProgramsRead:
        """Which of the followed programs the VTN lists have their events read. Not read: one
        whose targets name only other sites (a program's targets name its recipients as an
        event's do; the VTN may list every program to every VEN). One whose targets are
        malformed is read as if it had none (the VTN listed it to these credentials: a typo in
        its targets must not end an event in force) and reported. Touches nothing of the VEN's:
        it runs in a worker thread."""
        out = ProgramsRead()
        for p in programs:
            if not isinstance(p, Mapping) or p.get("programName") not in self.cfg.programs:
                continue
            name = str(p["programName"])
            out.listed.add(name)
            pid = id_text(p.get("id"))
            if pid is None:
                out.malformed.append(((f"program:{name}", "id"), f"program {name}: no usable id"))
                continue
            try:
                ours = for_this_site(p.get("targets"), self.identity)
            except Malformed as exc:
                version = id_text(p.get("modificationDateTime"), 64) or "?"
                out.malformed.append(((f"program:{pid}", version), f"program {name}: {exc} (read as untargeted)"))
                ours = True
            if ours:
                out.ids[pid] = name
            else:
                out.elsewhere.add(name)
        out.elsewhere -= set(out.ids.values())  # the same name listed twice, one of them ours: read
        return out

    def _map(self, listed: list[tuple[str, Any]], now_s: float, skip: frozenset[tuple[str, str]]
             ) -> tuple[dict[str, DrEvent], dict[str, str], list[tuple[tuple[str, str], str, str]], int]:
        """The events the VTN lists as the book's (by id), their programs, the refused ones
        (key, kind, why) and how many are other sites'. Touches nothing of the VEN's: it runs in
        a worker thread."""
        wanted: dict[str, DrEvent] = {}
        program_ids: dict[str, str] = {}
        refused: list[tuple[tuple[str, str], str, str]] = []
        elsewhere = 0
        for pid, event in listed:
            key = (id_text(event.get("id")) or "?", id_text(event.get("modificationDateTime"), 64) or "?") \
                if isinstance(event, Mapping) else ("?", "?")
            if key in skip:
                continue
            try:
                if isinstance(event, Mapping) and not for_this_site(event.get("targets"), self.identity):
                    elsewhere += 1  # another site's: not in the book (and out of it, if it was ours before)
                    continue
                got = dr_events3(event, self.cfg.simple_levels, self.cfg.power_scale_w, now_s, SOURCE)
            except (Unsupported, Malformed) as exc:
                refused.append((key, type(exc).__name__, str(exc)))
                continue
            program_ids[key[0]] = pid
            wanted.update((e.event_id, e) for e in got if e.end_s > now_s)
        return wanted, program_ids, refused, elsewhere

    def _reconcile(self, wanted: dict[str, DrEvent], program_ids: dict[str, str],
                   refused: list[tuple[tuple[str, str], str, str]], elsewhere: int) -> None:
        """Make the book's OpenADR 3 events `wanted` (on the loop's thread: the book lives there)."""
        self.elsewhere = elsewhere
        for key, kind, why in refused:
            self._remember(key)
            self._refuse(kind, why, event_id=key[0])
        for e in self.book.pending():
            if e.source == SOURCE and e.event_id not in wanted:
                self.book.cancel(e.event_id)
                log.info("openadr3 event removed", event_id=e.event_id)
        for e in sorted(wanted.values(), key=lambda e: e.start_s):
            if self.book.events.get(e.event_id) == e:
                continue
            try:
                self.book.add(e)
            except DrBookFull as exc:
                self._refuse("DrBookFull", str(exc), event_id=e.event_id)
                continue
            log.info("openadr3 event accepted", event_id=e.event_id, start_s=e.start_s, end_s=e.end_s,
                     target_import_w=e.target_import_w, reduction_w=e.reduction_w,
                     reduction_fraction=e.reduction_fraction)
        self.program_ids = program_ids

    def _remember(self, key: tuple[str, str]) -> None:
        """A refused event's or program's (id, version), so it is counted once, not every poll;
        the oldest forgotten past _KEEP_REFUSED (a VTN changing versions every poll)."""
        self._refused_ids[key] = None
        while len(self._refused_ids) > _KEEP_REFUSED:
            self._refused_ids.popitem(last=False)

    def _refuse(self, kind: str, why: str, event_id: str | None = None, count: int = 1) -> None:
        self.refused[kind] += count
        if kind not in self._logged:  # once per kind: a flood of bad events is counted, not logged
            self._logged.add(kind)
            log.warning("openadr3 event refused", kind=kind, event_id=event_id, why=why[:200])

    def _failed(self, exc: BaseException, what: str) -> None:
        kind = f"{what}:{type(exc).__name__}"
        self.failures[kind] += 1
        if what == "poll":
            self.polls_failing += 1
        if what == "register":
            self.register_error = str(exc)[:200] or type(exc).__name__
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(f"openadr3 {what} failed", vtn=self.cfg.vtn_url, error=repr(exc)[:200])

    # --- reports -----------------------------------------------------------------------
    def report_body(self, vtn_event_id: str, now_s: float) -> dict[str, Any] | None:
        """A report of the site's import and flexibility now, in kW (None: no reading yet). No
        payloadDescriptors: the spec's reportPayloadDescriptor is refused by openadr3-client's own
        Report model (it expects an event's), so the units are the program's: kW."""
        import_w, flex_w = self.import_w(), self.flexibility_w()
        if import_w is None:
            return None
        start = datetime.fromtimestamp(now_s, UTC).isoformat()
        period = {"start": start, "duration": f"PT{self.cfg.report_every_s:g}S"}
        site, flexibility = RESOURCES
        resources = [(site, "DEMAND", import_w)]
        if flex_w is not None:
            resources.append((flexibility, "LOAD_SHED_DELTA_AVAILABLE", flex_w))
        return {
            "objectType": "REPORT", "programID": self.program_ids[vtn_event_id], "eventID": vtn_event_id,
            "clientName": self.cfg.ven_name, "reportName": "ems-telemetry-kw",
            "resources": [{"resourceName": name, "intervalPeriod": period,
                           "intervals": [{"id": 0, "payloads": [{"type": kind, "values": [round(w / 1e3, 3)]}]}]}
                          for name, kind, w in resources]}

    async def report(self, http: aiohttp.ClientSession) -> None:
        """Post a report for each VTN event with an interval in force now."""
        now_s = self.wall()
        live = {e.event_id.rsplit(":", 1)[0] for e in self.book.pending()
                if e.source == SOURCE and e.start_s <= now_s < e.end_s}
        for vtn_event_id in sorted(live & self.program_ids.keys()):
            body = self.report_body(vtn_event_id, now_s)
            if body is None:
                return
            async with http.post(f"{self.cfg.vtn_url}/reports", json=body, headers=await self._bearer(http)) as resp:
                if resp.status // 100 != 2:
                    raise VtnAnswer(f"POST /reports: HTTP {resp.status}")
            self.reports += 1

    # --- registration -----------------------------------------------------------------
    def ven_request(self) -> dict[str, Any]:
        """The site's ven object as the VEN creates it: its name and what else names it."""
        body: dict[str, Any] = {"objectType": "VEN", "venName": self.cfg.ven_name}
        if self.cfg.targets:
            body["targets"] = [{"type": kind, "values": list(values)} for kind, values in self.cfg.targets.items()]
        return body

    async def _register_if_due(self, http: aiohttp.ClientSession) -> None:
        """Find the site's ven object on the VTN (GET /vens?venName=), or create it (POST /vens,
        with the site's targets): how a VTN learns the VEN its events and reports are for. Until
        it is registered the VEN polls and reports all the same (a VTN whose business logic keeps
        the vens may refuse a VEN's own); each failed try doubles the wait before the next (from
        two polls to an hour), and none is made while the VTN is out of reach (the poll says so).
        Once registered it looks again every hour: a ven the VTN deleted is made anew."""
        now = time.monotonic()
        if self.polls_failing or now < self._register_after_s:
            return
        self._register_tries += 1
        # the exponent bounded: 2 ** n past ~1024 tries (six weeks of hourly ones) overflows a float
        wait_s = self.cfg.poll_every_s * 2.0 ** min(self._register_tries, 32)
        self._register_after_s = now + min(REGISTER_RETRY_MAX_S, wait_s)
        found = await self._get(http, "/vens", {"venName": self.cfg.ven_name, "limit": "50"})
        ven = next((v for v in found[:50] if isinstance(v, Mapping) and v.get("venName") == self.cfg.ven_name), None)
        if ven is None and len(found) >= 50:  # a VTN that ignores the filter: its list may hold ours further on
            raise VtnAnswer(f"GET /vens?venName= listed {len(found)} vens, none named {self.cfg.ven_name!r}")
        created = ven is None
        if ven is None:
            self.ven_id, self.resources = None, ()  # none now (deleted by the VTN, if it had one)
            async with http.post(f"{self.cfg.vtn_url}/vens", json=self.ven_request(),
                                 headers=await self._bearer(http)) as resp:
                ven = await self._json(resp)
        vid = id_text(ven.get("id")) if isinstance(ven, Mapping) else None
        if vid is None:
            raise VtnAnswer("a ven object without a usable id")
        if vid != self.ven_id:
            log.info("openadr3 VEN registered", ven_id=vid, ven_name=self.cfg.ven_name, created=created)
        self.ven_id, self.register_error = vid, None
        self._register_tries = 0
        self._register_after_s = now + REGISTER_RETRY_MAX_S
        targets = None if created else site_targets(ven.get("targets"), self.cfg.targets)
        if targets is not None:  # found with other targets (the site's `targets:` changed since)
            body = {k: v for k, v in ven.items() if k not in _SERVER_SET} | {"objectType": "VEN", "targets": targets}
            await self._after_registration("ven-update", self._update_ven(http, vid, body))
        await self._after_registration("resources", self._register_resources(http, vid))

    async def _after_registration(self, what: str, step: Awaitable[None]) -> None:
        """A step once the site is registered: a VTN that refuses it (one where a VEN may not
        change its ven or resources) leaves the site registered; counted under `what`, logged
        once, tried again at the hourly look."""
        try:
            await step
        except (VtnAnswer, aiohttp.ClientError) as exc:
            self._failed(exc, what)

    async def _update_ven(self, http: aiohttp.ClientSession, vid: str, body: dict[str, Any]) -> None:
        async with http.put(f"{self.cfg.vtn_url}/vens/{urllib.parse.quote(vid, safe='')}", json=body,
                            headers=await self._bearer(http)) as resp:
            await self._json(resp)
        self.ven_updates += 1
        log.info("openadr3 VEN targets updated", ven_id=vid, targets=self.cfg.targets)

    async def _register_resources(self, http: aiohttp.ClientSession, vid: str) -> None:
        """The resources the reports name (RESOURCES), under the site's ven: listed (GET
        /vens/{id}/resources), each missing one created (POST), so a VTN that checks a report's
        resources against the ven's knows them."""
        path = f"/vens/{urllib.parse.quote(vid, safe='')}/resources"
        listed = await self._get(http, path, {"limit": "50"})
        have = {_text(r.get("resourceName")) for r in listed[:50] if isinstance(r, Mapping)}
        missing = [name for name in RESOURCES if name not in have]
        if missing and len(listed) >= 50:  # a full page: the site's may be further on
            raise VtnAnswer(f"GET {path} listed {len(listed)} resources, not {', '.join(missing)}")
        for name in missing:
            async with http.post(f"{self.cfg.vtn_url}{path}", json=resource_request(name, vid),
                                 headers=await self._bearer(http)) as resp:
                await self._json(resp)
            log.info("openadr3 VEN resource registered", ven_id=vid, resource=name)
        self.resources = RESOURCES

    # --- the task ----------------------------------------------------------------------
    async def run(self) -> None:
        """Poll (and report) until cancelled; each round bounded by `timeout_s`, failures counted."""
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                checkpoint()  # a stop a library swallowed (ems/model/cancel_guard)
                for what, call in (("poll", self.poll), ("register", self._register_if_due),
                                   ("report", self._report_if_due)):
                    try:
                        async with asyncio.timeout(self.cfg.timeout_s):
                            await call(http)
                    except Exception as exc:  # a timeout, the network, an answer of the wrong shape, or
                        # whatever else a VTN's answer trips: a side task must not end the controller
                        # (its task group); counted by kind, logged once
                        self._failed(exc, what)
                await asyncio.sleep(self.cfg.poll_every_s)

    async def _report_if_due(self, http: aiohttp.ClientSession) -> None:
        if not self.cfg.reports or time.monotonic() - self._last_report_s < self.cfg.report_every_s:
            return
        self._last_report_s = time.monotonic()
        await self.report(http)


_SERVER_SET = ("id", "createdDateTime", "modificationDateTime")  # a ven object's fields the VTN sets


def site_targets(have: object, mine: Mapping[str, list[str]]) -> list[dict[str, Any]] | None:
    """The targets a found ven object should carry: its own, with each type the site names
    itself by (`targets:`) set to the site's values (types the VTN added are its business,
    kept); None where they already say that, or are not 3.0.1's {type, values} (3.1's strings,
    or a shape no spec has: left to the VTN, as events are matched by the site's config)."""
    if have is None:
        have = []
    if not isinstance(have, list) or not all(
            isinstance(t, Mapping) and isinstance(t.get("type"), str) and isinstance(t.get("values"), list)
            for t in have):
        return None
    held = {t["type"]: {str(v) for v in t["values"] if isinstance(v, str | int)} for t in have}
    if all(held.get(kind) == set(values) for kind, values in mine.items()):
        return None
    kept = [dict(t) for t in have if t["type"] not in mine]
    return kept + [{"type": kind, "values": list(values)} for kind, values in mine.items()]


def resource_request(name: str, vid: str) -> dict[str, Any]:
    """A resource of the site's ven as the VEN creates it (POST /vens/{id}/resources)."""
    return {"objectType": "RESOURCE", "resourceName": name, "venID": vid}


def _text(value: object) -> str | None:
    """A name from the VTN where it is a string (a list there is malformed, and unhashable)."""
    return value if isinstance(value, str) else None
