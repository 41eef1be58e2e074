"""OpenADR 3.0.1 end to end against a small fake VTN (aiohttp on loopback): no OpenADR 3 VTN
is packaged on PyPI, so the fake serves the spec's JSON (tests/vtn3_payloads.py,
checked against openadr3-client's own models by scripts/check_openadr3_shapes.py) behind an
OAuth2 client-credentials token endpoint. The VEN polls it over real HTTP: events land in the
book with their windows and targets, a cancelled one leaves, reports arrive, and hostile
answers (bad JSON, NaN, huge or far-off intervals, thousands of events, a hanging VTN) are
refused and counted while the VEN, and the real controller's periods, go on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ems.clock import ScaledClock
from ems.config import OpenAdr3Config
from ems.dr_book import DrBook
from ems.openadr3_ven import OpenAdr3Ven, VtnAnswer
from ems.operator.metrics import ControllerMetrics
from tests.conftest import free_port, running_controller, running_site, wait_for
from tests.vtn3_payloads import CREATED, event, program, ven_object

pytestmark = pytest.mark.integration

CLIENT_ID, SECRET = "ems-site", "s3cret"
MIN = timedelta(minutes=1)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeVtn:
    """Programs and events as the test sets them; the reports and tokens the VEN sent."""

    def __init__(self) -> None:
        self.programs = [program("p-1", "site-flex"), program("p-2", "other-program")]
        self.events: list[dict[str, Any]] = []
        self.program_gets = 0
        self.program_skips: set[int] = set()
        self.program_paging = True  # False: a VTN that ignores skip and limit
        self.reports: list[dict[str, Any]] = []
        self.tokens = 0
        self.event_gets = 0
        self.events_answer: Handler | None = None  # a misbehaving VTN's GET /events
        self.vens: list[dict[str, Any]] = []
        self.ven_posts: list[dict[str, Any]] = []
        self.ven_puts: list[tuple[str, dict[str, Any]]] = []
        self.ven_put_status = 200  # 405: a VTN where a VEN may not change its ven object
        self.resources: dict[str, list[dict[str, Any]]] = {}  # per ven id, its resources
        self.resource_posts: list[dict[str, Any]] = []
        self.resource_create_status = 201
        self.ven_create_status = 201  # 403: a VTN whose business logic alone creates vens
        self.ven_filter = True  # False: a VTN that ignores GET /vens's venName
        self.ven_id_given: Any = None  # what POST /vens answers as the new ven's id (None: v-N)
        self.url = ""
        self.closing = asyncio.Event()

    async def hang(self, _request: web.Request) -> web.Response:
        """A VTN that never answers (until the test ends)."""
        await self.closing.wait()
        return web.json_response([])

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        auth = aiohttp.BasicAuth.decode(request.headers.get("Authorization", ""))
        if form.get("grant_type") != "client_credentials" or (auth.login, auth.password) != (CLIENT_ID, SECRET):
            return web.json_response({"error": "invalid_client"}, status=401)
        self.tokens += 1
        return web.json_response({"access_token": f"tok-{self.tokens}", "token_type": "Bearer", "expires_in": 3600})

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer tok-{self.tokens}"

    async def get_programs(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"title": "unauthorised"}, status=401)
        self.program_gets += 1
        if not self.program_paging:
            return web.json_response(self.programs)
        skip, limit = int(request.query.get("skip", 0)), int(request.query.get("limit", 50))
        self.program_skips.add(skip)
        return web.json_response(self.programs[skip:skip + limit])

    async def get_events(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return web.json_response({"title": "unauthorised"}, status=401)
        self.event_gets += 1
        if self.events_answer is not None:
            return await self.events_answer(request)
        pid = request.query.get("programID")
        return web.json_response([e for e in self.events if e["programID"] == pid])

    async def get_vens(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"title": "unauthorised"}, status=401)
        name = request.query.get("venName") if self.ven_filter else None
        return web.json_response([v for v in self.vens if name is None or v["venName"] == name])

    async def post_ven(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"title": "unauthorised"}, status=401)
        body = await request.json()
        self.ven_posts.append(body)
        if self.ven_create_status != 201:
            return web.json_response({"title": "forbidden"}, status=self.ven_create_status)
        ven = ven_object(f"v-{len(self.ven_posts)}", body)
        if self.ven_id_given is not None:
            ven["id"] = self.ven_id_given
        self.vens.append(ven)
        return web.json_response(ven, status=201)

    async def put_ven(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"title": "unauthorised"}, status=401)
        vid, body = request.match_info["ven_id"], await request.json()
        self.ven_puts.append((vid, body))
        if self.ven_put_status != 200:
            return web.json_response({"title": "not allowed"}, status=self.ven_put_status)
        found = [v for v in self.vens if v["id"] == vid]
        if not found:
            return web.json_response({"title": "not found"}, status=404)
        found[0].update(body)
        return web.json_response(found[0])

    async def get_resources(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"title": "unauthorised"}, status=401)
        vid = request.match_info["ven_id"]
        if not any(v["id"] == vid for v in self.vens):
            return web.json_response({"title": "not found"}, status=404)
        return web.json_response(self.resources.get(vid, []))

    async def post_resource(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"title": "unauthorised"}, status=401)
        vid, body = request.match_info["ven_id"], await request.json()
        self.resource_posts.append(body)
        if self.resource_create_status != 201:
            return web.json_response({"title": "forbidden"}, status=self.resource_create_status)
        made = {"id": f"r-{len(self.resource_posts)}", "createdDateTime": CREATED, "modificationDateTime": CREATED,
                **body}
        self.resources.setdefault(vid, []).append(made)
        return web.json_response(made, status=201)

    async def post_report(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"title": "unauthorised"}, status=401)
        body = await request.json()
        self.reports.append(body)
        return web.json_response({**body, "id": f"r-{len(self.reports)}"}, status=201)


@contextlib.asynccontextmanager
async def running_vtn() -> AsyncIterator[FakeVtn]:
    vtn = FakeVtn()
    app = web.Application()
    app.add_routes([web.post("/auth/token", vtn.token), web.get("/programs", vtn.get_programs),
                    web.get("/events", vtn.get_events), web.post("/reports", vtn.post_report),
                    web.get("/vens", vtn.get_vens), web.post("/vens", vtn.post_ven),
                    web.put("/vens/{ven_id}", vtn.put_ven), web.get("/vens/{ven_id}/resources", vtn.get_resources),
                    web.post("/vens/{ven_id}/resources", vtn.post_resource)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    vtn.url = f"http://127.0.0.1:{port}"
    try:
        yield vtn
    finally:
        vtn.closing.set()
        await runner.cleanup()


def _cfg(vtn: FakeVtn, **kw: Any) -> dict[str, Any]:
    return {"vtn_url": vtn.url, "token_url": f"{vtn.url}/auth/token", "client_id": CLIENT_ID,
            "client_secret_env": "EMS_TEST_OADR3_SECRET", "programs": ["site-flex"], "ven_name": "site-7",
            "poll_every_s": 1.0, "timeout_s": 1.0, "report_every_s": 1.0, **kw}


@contextlib.asynccontextmanager
async def running_ven(vtn: FakeVtn, import_w: float | None = 480e3, **kw: Any) -> AsyncIterator[OpenAdr3Ven]:
    ven = OpenAdr3Ven(OpenAdr3Config.model_validate(_cfg(vtn, **kw)), SECRET, DrBook(),
                      lambda: datetime.now(UTC).timestamp(), lambda: import_w, lambda: 120e3)
    task = asyncio.create_task(ven.run(), name="openadr3")
    try:
        yield ven
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _polls(ven: OpenAdr3Ven, n: int = 1) -> None:
    """Wait for `n` more polls, complete or failed."""
    def done() -> int:
        return ven.polls + sum(v for k, v in ven.failures.items() if k.startswith("poll:"))
    have = done()
    await wait_for(lambda: done() >= have + n, timeout_s=10 * n)


@pytest.mark.timeout(60)
async def test_events_land_in_the_book_with_their_windows_and_targets() -> None:
    async with running_vtn() as vtn:
        t0 = datetime.now(UTC).replace(microsecond=0) + 10 * MIN
        vtn.events = [
            event("e-1", "p-1", t0, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0),
                                     (15 * MIN, "IMPORT_CAPACITY_LIMIT", 0.4)], units="MW", priority=1),
            event("e-2", "p-1", t0 + 2 * timedelta(hours=1), [(MIN, "SIMPLE", 2), (MIN, "SIMPLE", 0)], units=None),
            event("e-3", "p-1", t0, [(MIN, "DISPATCH_SETPOINT_RELATIVE", -50.0)], units=None),
            event("e-9", "p-2", t0, [(MIN, "IMPORT_CAPACITY_LIMIT", 1.0)]),  # a program the site does not follow
        ]
        async with running_ven(vtn) as ven:
            await _polls(ven, 2)
            book = {e.event_id: e for e in ven.book.pending()}
    assert set(book) == {"e-1:0", "e-1:1", "e-2:0", "e-3:0"}  # SIMPLE level 0 asks nothing
    s = t0.timestamp()
    assert (book["e-1:0"].start_s, book["e-1:0"].end_s, book["e-1:0"].target_import_w) == (s, s + 1800, 360e6)
    assert (book["e-1:1"].start_s, book["e-1:1"].end_s, book["e-1:1"].target_import_w) == (s + 1800, s + 2700, 0.4e6)
    assert book["e-1:0"].priority == -1 and book["e-1:0"].source == "openadr3"
    assert book["e-2:0"].reduction_fraction == 0.25 and book["e-2:0"].start_s == s + 7200
    assert book["e-3:0"].reduction_w == 50e3  # no units: power_scale_w (kW)
    assert ven.book.received == 4  # an unchanged event is not added again at the next poll
    assert vtn.tokens == 1  # the token is kept for half its life


@pytest.mark.timeout(60)
async def test_events_targeted_at_other_sites_stay_out_of_the_book() -> None:
    async with running_vtn() as vtn:
        t0 = datetime.now(UTC).replace(microsecond=0) + 10 * MIN
        ask = [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0)]
        vtn.events = [event("all", "p-1", t0, ask),
                      event("mine", "p-1", t0, ask, targets={"VEN_NAME": ["site-3", "site-7"]}),
                      event("other", "p-1", t0, ask, targets={"VEN_NAME": ["site-9"]}),
                      event("north", "p-1", t0, ask, targets={"GROUP": ["north"]}),
                      event("south", "p-1", t0, ask, targets={"GROUP": ["south"]}),
                      event("feeder", "p-1", t0, ask, targets={"RESOURCE_NAME": ["feeder-12"]})]
        async with running_ven(vtn, targets={"GROUP": ["north"]}) as ven:
            await _polls(ven, 2)
            assert {e.event_id for e in ven.book.pending()} == {"all:0", "mine:0", "north:0", "feeder:0"}
            assert ven.status()["targeted_elsewhere"] == 2 and ven.refused == {}
            # the VTN moves an event to another site: it leaves the book as a cancelled one does
            vtn.events[1] = event("mine", "p-1", t0, ask, targets={"VEN_NAME": ["site-9"]},
                                  modified="2026-01-02T00:00:00Z")
            await wait_for(lambda: "mine:0" not in {e.event_id for e in ven.book.pending()})
            assert ven.status()["targeted_elsewhere"] == 3


@pytest.mark.timeout(60)
async def test_the_ven_registers_by_creating_its_ven_object_once() -> None:
    async with running_vtn() as vtn, running_ven(vtn, targets={"GROUP": ["north"]}) as ven:
        await wait_for(lambda: ven.status()["resources"] == ["site", "flexibility"])
        await _polls(ven, 2)
        assert ven.status()["ven_id"] == "v-1" and ven.failures == {}
    assert vtn.ven_posts == [{"objectType": "VEN", "venName": "site-7",
                              "targets": [{"type": "GROUP", "values": ["north"]}]}]
    # the resources the reports name, under the ven, once
    assert vtn.resource_posts == [{"objectType": "RESOURCE", "resourceName": name, "venID": "v-1"}
                                  for name in ("site", "flexibility")]


@pytest.mark.timeout(60)
async def test_resources_the_vtn_has_are_not_made_again_and_a_refusal_leaves_the_site_registered() -> None:
    async with running_vtn() as vtn:
        vtn.vens = [ven_object("v-7", {"venName": "site-7"})]
        vtn.resources = {"v-7": [{"id": "r-0", "objectType": "RESOURCE", "resourceName": "site", "venID": "v-7"},
                                 {"id": "r-x", "objectType": "RESOURCE", "resourceName": ["x"], "venID": "v-7"}]}
        async with running_ven(vtn) as ven:
            await wait_for(lambda: ven.status()["resources"] == ["site", "flexibility"])
        assert [r["resourceName"] for r in vtn.resource_posts] == ["flexibility"]
        # a VTN where a VEN may not make resources: registered, reports all the same, counted
        vtn.resources, vtn.resource_posts, vtn.resource_create_status = {}, [], 403
        async with running_ven(vtn) as ven:
            await wait_for(lambda: ven.failures["resources:VtnAnswer"] >= 1)
            assert ven.status()["registered"] and ven.status()["resources"] == []
            assert ven.status()["register_error"] is None


@pytest.mark.timeout(60)
async def test_a_ven_object_the_vtn_already_has_is_found_not_created_again() -> None:
    async with running_vtn() as vtn:
        vtn.vens = [ven_object("v-9", {"venName": "site-3"}), ven_object("v-7", {"venName": "site-7"})]
        async with running_ven(vtn) as ven:
            await wait_for(lambda: ven.status()["registered"])
            await _polls(ven, 2)
            assert ven.status()["ven_id"] == "v-7"
    assert vtn.ven_posts == []


@pytest.mark.timeout(60)
async def test_a_found_ven_object_is_given_the_sites_targets_once_and_keeps_the_vtns_own() -> None:
    """The site's `targets:` changed since its ven object was made (GROUP south -> north): the
    VEN sets its types' values (PUT /vens/{id}) and keeps a type only the VTN names; the hourly
    look finds them right and sends nothing. 3.1's string targets are left to the VTN."""
    async with running_vtn() as vtn:
        vtn.vens = [ven_object("v-7", {"venName": "site-7", "attributes": [{"type": "X", "values": [1]}],
                                       "targets": [{"type": "GROUP", "values": ["south"]},
                                                   {"type": "POWER_SERVICE_LOCATION", "values": ["psl-1"]}]})]
        async with running_ven(vtn, targets={"GROUP": ["north"]}) as ven:
            await wait_for(lambda: ven.status()["registered"])
            assert ven.status()["ven_updates"] == 1 and ven.failures == {}
            ven._register_after_s = 0.0  # the hour passed
            await wait_for(lambda: ven._register_after_s > 0.0)
            assert ven.status()["ven_updates"] == 1
        [(vid, body)] = vtn.ven_puts
        assert vid == "v-7" and body["venName"] == "site-7" and "id" not in body
        assert body["attributes"] == [{"type": "X", "values": [1]}]
        assert body["targets"] == [{"type": "POWER_SERVICE_LOCATION", "values": ["psl-1"]},
                                   {"type": "GROUP", "values": ["north"]}]
        vtn.vens, vtn.ven_puts = [ven_object("v-8", {"venName": "site-7", "targets": ["south"]})], []
        async with running_ven(vtn, targets={"GROUP": ["north"]}) as ven:
            await wait_for(lambda: ven.status()["ven_id"] == "v-8")
            assert ven.status()["ven_updates"] == 0
        assert vtn.ven_puts == []
        # a VTN where a VEN may not change its ven object: registered all the same, the refusal counted
        vtn.vens, vtn.ven_put_status = [ven_object("v-9", {"venName": "site-7"})], 405
        async with running_ven(vtn, targets={"GROUP": ["north"]}) as ven:
            await wait_for(lambda: ven.failures["ven-update:VtnAnswer"] == 1)
            assert ven.status()["registered"] and ven.status()["ven_id"] == "v-9"
            assert ven.status()["register_error"] is None and ven.status()["ven_updates"] == 0


@pytest.mark.timeout(60)
async def test_a_vtn_that_refuses_the_vens_own_ven_object_still_serves_events() -> None:
    """A VTN whose business logic alone creates vens answers 403: the VEN books and reports
    all the same, counts the refusal, asks again less and less often, and finds the ven object
    once the VTN's side has created it."""
    async with running_vtn() as vtn:
        vtn.ven_create_status = 403
        t0 = datetime.now(UTC).replace(microsecond=0) + 10 * MIN
        vtn.events = [event("e-1", "p-1", t0, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0)])]
        async with running_ven(vtn) as ven:
            await _polls(ven, 5)
            assert {e.event_id for e in ven.book.pending()} == {"e-1:0"}
            assert not ven.status()["registered"] and ven.status()["ven_id"] is None
            # tried at the first poll, then after 2 s, 4 s, ...: not at each of 5 polls a second apart
            assert 1 <= len(vtn.ven_posts) <= 3
            assert ven.failures["register:VtnAnswer"] == len(vtn.ven_posts) and ven.polls_failing == 0
            vtn.vens = [ven_object("v-1", {"venName": "site-7"})]  # the VTN's business logic made it
            await wait_for(lambda: ven.status()["registered"], timeout_s=20)
            assert ven.status()["ven_id"] == "v-1"


@pytest.mark.timeout(60)
async def test_registration_refuses_what_would_register_the_wrong_ven_and_remakes_a_deleted_one() -> None:
    async with running_vtn() as vtn:
        # a VTN that ignores the venName filter: its list may hold the site's ven further on; no
        # second one is created
        vtn.ven_filter = False
        vtn.vens = [ven_object(f"v-o{k}", {"venName": f"site-{k}"}) for k in range(100, 160)]
        async with running_ven(vtn) as ven:
            await wait_for(lambda: ven.failures["register:VtnAnswer"] >= 1)
            assert vtn.ven_posts == [] and not ven.status()["registered"]
            assert "none named 'site-7'" in str(ven.status()["register_error"])
        # a ven id that is a bool: not an id
        vtn.ven_filter, vtn.vens, vtn.ven_id_given = True, [], True
        async with running_ven(vtn) as ven:
            await wait_for(lambda: ven.failures["register:VtnAnswer"] >= 1)
            assert not ven.status()["registered"] and "usable id" in str(ven.status()["register_error"])
        # registered, then the VTN deletes the ven: the hourly look makes it anew
        vtn.vens, vtn.ven_posts, vtn.ven_id_given = [], [], None
        async with running_ven(vtn) as ven:
            await wait_for(lambda: ven.status()["ven_id"] == "v-1")
            vtn.vens = []
            ven._register_after_s = 0.0  # the hour passed
            await wait_for(lambda: ven.status()["ven_id"] == "v-2")
            assert ven.status()["registered"] and ven.status()["register_error"] is None


@pytest.mark.timeout(60)
async def test_registration_tries_past_a_thousand_wait_an_hour_not_overflow() -> None:
    """Six weeks of hourly refusals: 2 ** tries no longer fits a float (OverflowError killed the VEN)."""
    async with running_vtn() as vtn:
        vtn.ven_create_status = 403
        ven = OpenAdr3Ven(OpenAdr3Config.model_validate(_cfg(vtn)), SECRET, DrBook(),
                          lambda: datetime.now(UTC).timestamp(), lambda: None, lambda: None)
        ven._register_tries = 1100
        async with aiohttp.ClientSession() as http:
            with pytest.raises(VtnAnswer, match="403"):
                await ven._register_if_due(http)
        assert 3590 < ven._register_after_s - asyncio.get_running_loop().time() <= 3600
        assert len(vtn.ven_posts) == 1


@pytest.mark.timeout(60)
async def test_a_followed_program_past_the_first_page_of_programs_is_found() -> None:
    """A VTN of 120 programs lists them 50 at a time: the site's 111th was never found (its
    events unread). Pages are read until the followed ones are listed; a VTN that ignores
    `skip` (the first page again) is read once, not 20 times."""
    async with running_vtn() as vtn:
        t0 = datetime.now(UTC).replace(microsecond=0) + 10 * MIN
        vtn.programs = [program(f"p-o{k}", f"other-{k}") for k in range(110)] + [program("p-1", "site-flex")]
        vtn.programs[3]["programName"] = ["not", "a", "name"]  # malformed: passed over, not the poll's end
        vtn.programs += [program(f"p-o{k}", f"other-{k}") for k in range(110, 120)]
        vtn.events = [event("e-1", "p-1", t0, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0)])]
        async with running_ven(vtn) as ven:
            await wait_for(lambda: {e.event_id for e in ven.book.pending()} == {"e-1:0"})
            await _polls(ven, 2)
            assert vtn.program_skips == {0, 50, 100}  # found on the third page, none read past it
        vtn.program_paging, vtn.program_gets = False, 0
        vtn.programs = vtn.programs[:60]  # without the site's: the same 60 at every skip
        async with running_ven(vtn) as ven:
            await _polls(ven, 2)
            assert vtn.program_gets <= 2 * ven.polls and ven.book.pending() == []


@pytest.mark.timeout(60)
async def test_a_program_targeted_at_other_sites_has_its_events_left_unread() -> None:
    """A program's targets name its recipients as an event's do: a VTN listing every program
    to every VEN made the site act on the events of a program for other sites."""
    async with running_vtn() as vtn:
        t0 = datetime.now(UTC).replace(microsecond=0) + 10 * MIN
        ask = [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0)]
        vtn.programs = [program("p-1", "site-flex", targets={"VEN_NAME": ["site-7"]}),
                        program("p-3", "south-flex", targets={"GROUP": ["south"]})]
        vtn.events = [event("e-1", "p-1", t0, ask), event("e-3", "p-3", t0, ask)]
        async with running_ven(vtn, programs=["site-flex", "south-flex"], targets={"GROUP": ["north"]}) as ven:
            await _polls(ven, 2)
            assert {e.event_id for e in ven.book.pending()} == {"e-1:0"}
            assert ven.status()["programs_targeted_elsewhere"] == ["south-flex"] and ven.refused == {}
            # the VTN moves the site's program to another site: its events leave the book
            vtn.programs[0] = program("p-1", "site-flex", targets={"VEN_NAME": ["site-9"]},
                                      modified="2026-01-02T00:00:00Z")
            await wait_for(lambda: not ven.book.pending())
            assert ven.status()["programs_targeted_elsewhere"] == ["site-flex", "south-flex"]
            # targets not of the spec's shape: reported once, and the program read as untargeted
            # (a typo at the VTN must not end an event in force), its version unknown
            vtn.programs[1] = program("p-3", "south-flex") | {"targets": "south", "modificationDateTime": [[["x"]]]}
            await wait_for(lambda: {e.event_id for e in ven.book.pending()} == {"e-3:0"})
            await _polls(ven, 2)
            assert ven.refused == {"Malformed": 1}
            assert ven.status()["programs_targeted_elsewhere"] == ["site-flex"]
            # the VTN fixes it: read by its targets again
            vtn.programs[1] = program("p-3", "south-flex", targets={"GROUP": ["north"]})
            await _polls(ven, 2)
            assert {e.event_id for e in ven.book.pending()} == {"e-3:0"} and ven.refused == {"Malformed": 1}
            # the same name listed twice, once for others and once for the site: the site's is read
            vtn.programs = [program("p-1", "site-flex", targets={"VEN_NAME": ["site-9"]}),
                            program("p-1b", "site-flex"), vtn.programs[1]]
            vtn.events.append(event("e-1b", "p-1b", t0, ask))
            await wait_for(lambda: "e-1b:0" in {e.event_id for e in ven.book.pending()})
            assert ven.status()["programs_targeted_elsewhere"] == []


@pytest.mark.timeout(60)
async def test_integer_program_ids_are_read_as_the_programs_events_name_them() -> None:
    """Ids are text in the spec; a VTN with integer ones had every event dropped (5 != "5")."""
    async with running_vtn() as vtn:
        t0 = datetime.now(UTC).replace(microsecond=0) + 10 * MIN
        vtn.programs = [program("p", "site-flex") | {"id": 5}]
        ev = event("e-1", "p", t0, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0)]) | {"programID": 5}
        vtn.events_answer = lambda _r: _answer(obj=[ev])
        async with running_ven(vtn) as ven:
            await wait_for(lambda: {e.event_id for e in ven.book.pending()} == {"e-1:0"})


@pytest.mark.timeout(60)
async def test_refusals_remembered_stay_bounded_when_later_polls_fail() -> None:
    """Programs whose malformed targets change version every poll while GET /events fails: the
    refusals remembered (so each is counted once) grew without bound."""
    async with running_vtn() as vtn:
        vtn.events_answer = lambda _r: _answer(status=500, obj={"title": "oops"})
        async with running_ven(vtn) as ven:
            for version in range(8):
                vtn.programs = [program(f"p-{k}", "site-flex", modified=f"2026-01-01T00:00:{version:02d}Z")
                                | {"targets": "bad"} for k in range(50)]
                await _polls(ven, 1)
            assert ven.refused["Malformed"] >= 256 and len(ven._refused_ids) <= 256
            assert ven.failures["poll:VtnAnswer"] >= 8


@pytest.mark.timeout(60)
async def test_a_cancelled_event_leaves_and_a_modified_one_replaces() -> None:
    async with running_vtn() as vtn:
        t0 = datetime.now(UTC).replace(microsecond=0) + 10 * MIN
        vtn.events = [event("e-1", "p-1", t0, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0)]),
                      event("e-2", "p-1", t0, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 300.0)])]
        async with running_ven(vtn) as ven:
            await wait_for(lambda: len(ven.book.pending()) == 2)
            vtn.events = [event("e-2", "p-1", t0, [(20 * MIN, "IMPORT_CAPACITY_LIMIT", 250.0)],
                                modified="2026-01-02T00:00:00Z")]  # e-1 cancelled (deleted), e-2 changed
            await wait_for(lambda: [e.event_id for e in ven.book.pending()] == ["e-2:0"]
                           and ven.book.pending()[0].target_import_w == 250e3)
            assert ven.book.pending()[0].end_s == t0.timestamp() + 1200


@pytest.mark.timeout(60)
async def test_reports_reach_the_vtn_while_an_event_is_in_force() -> None:
    async with running_vtn() as vtn:
        now = datetime.now(UTC).replace(microsecond=0)
        vtn.events = [event("e-1", "p-1", now - MIN, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0)]),
                      event("e-2", "p-1", now + 10 * MIN, [(MIN, "IMPORT_CAPACITY_LIMIT", 1.0)])]  # not yet
        async with running_ven(vtn) as ven:
            await wait_for(lambda: len(vtn.reports) >= 2)
    assert {r["eventID"] for r in vtn.reports} == {"e-1"}
    r = vtn.reports[0]
    assert (r["programID"], r["clientName"]) == ("p-1", "site-7")
    values = {res["resourceName"]: res["intervals"][0]["payloads"][0] for res in r["resources"]}
    assert values == {"site": {"type": "DEMAND", "values": [480.0]},
                      "flexibility": {"type": "LOAD_SHED_DELTA_AVAILABLE", "values": [120.0]}}
    assert ven.reports >= 2


@pytest.mark.timeout(60)
async def test_a_refused_secret_is_counted_and_a_revoked_token_renewed() -> None:
    async with running_vtn() as vtn:
        t0 = datetime.now(UTC).replace(microsecond=0) + 10 * MIN
        vtn.events = [event("e-1", "p-1", t0, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0)])]
        ven = OpenAdr3Ven(OpenAdr3Config.model_validate(_cfg(vtn)), "wrong", DrBook(),
                          lambda: datetime.now(UTC).timestamp(), lambda: None, lambda: None)
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                with pytest.raises(VtnAnswer, match="HTTP 401"):
                    await ven.poll(http)
            assert not ven.book.pending() and vtn.tokens == 0
        async with running_ven(vtn) as ven:
            await wait_for(lambda: len(ven.book.pending()) == 1)
            vtn.tokens += 1  # the VTN revokes the token it gave: the next poll is refused, the one after renews
            await wait_for(lambda: ven.failures["poll:VtnAnswer"] >= 1 and vtn.tokens >= 3)
            await _polls(ven, 1)
            assert [e.event_id for e in ven.book.pending()] == ["e-1:0"]


async def _answer(status: int = 200, body: bytes | None = None, obj: Any = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(obj).encode() if body is None else body,
                        content_type="application/json")


async def _failed(ven: OpenAdr3Ven, kind: str, before: int) -> None:
    """Two more failures: at least one poll ran wholly on the answer just set."""
    await wait_for(lambda: ven.failures[kind] > before + 1)


@pytest.mark.timeout(90)
async def test_bad_answers_are_refused_counted_and_the_ven_goes_on() -> None:
    async with running_vtn() as vtn:
        t0 = datetime.now(UTC).replace(microsecond=0) + 10 * MIN
        good = event("e-1", "p-1", t0, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0)])
        vtn.events = [good]
        async with running_ven(vtn) as ven:
            await wait_for(lambda: len(ven.book.pending()) == 1)
            # answers that fail a whole poll: the book keeps what it had
            for answer, kind in ((lambda _r: _answer(body=b"{not json"), "poll:VtnAnswer"),
                                 (lambda _r: _answer(status=500, obj={"title": "oops"}), "poll:VtnAnswer"),
                                 (lambda _r: _answer(obj={"events": []}), "poll:VtnAnswer"),
                                 (lambda _r: _answer(body=b"[" + b" " * (2 << 20) + b"]"), "poll:VtnAnswer")):
                failed = ven.failures[kind]
                vtn.events_answer = answer
                await _failed(ven, kind, failed)
                assert [e.event_id for e in ven.book.pending()] == ["e-1:0"]
            # a VTN that ignores the programID filter: the other program's events are not the site's
            vtn.events_answer = lambda _r: _answer(obj=[good, event("e-9", "p-2", t0, [(MIN, "SIMPLE", 3)])])
            await _polls(ven, 2)
            assert [e.event_id for e in ven.book.pending()] == ["e-1:0"]
            vtn.events_answer = None
            # events that are refused one by one, beside a good one
            far = t0 + timedelta(days=400)
            vtn.events = [good,
                          event("nan", "p-1", t0, [(MIN, "IMPORT_CAPACITY_LIMIT", float("nan"))]),
                          event("huge", "p-1", t0, [(MIN, "IMPORT_CAPACITY_LIMIT", 1.0)] * 500),
                          event("long", "p-1", t0, [(timedelta(days=30), "IMPORT_CAPACITY_LIMIT", 1.0)]),
                          event("far", "p-1", far, [(MIN, "IMPORT_CAPACITY_LIMIT", 1.0)]),
                          event("price", "p-1", t0, [(MIN, "PRICE", 0.3)]),
                          event("export", "p-1", t0, [(MIN, "EXPORT_CAPACITY_LIMIT", 100.0)]),
                          {"id": "junk", "programID": "p-1", "intervals": "none"}]
            await _polls(ven, 1)  # a poll still on the last bad answer
            failures = sum(ven.failures.values())
            await _polls(ven, 2)
            assert sum(ven.failures.values()) == failures, ven.failures
            assert ven.refused == {"Malformed": 5, "Unsupported": 2}  # each counted once, not every poll
            assert [e.event_id for e in ven.book.pending()] == ["e-1:0"]
            # over a thousand events (under the answer's byte bound): the first MAX_EVENTS are read, the rest counted
            vtn.events = [event(f"m-{k}", "p-1", t0 + k * MIN, [(MIN, "IMPORT_CAPACITY_LIMIT", 1.0)])
                          for k in range(1500)]
            await wait_for(lambda: len(ven.book.pending()) == 64)  # the book's bound
            assert ven.refused["TooManyEvents"] >= 1500 - 64
            vtn.events = [good]
            await wait_for(lambda: [e.event_id for e in ven.book.pending()] == ["e-1:0"])


@pytest.mark.timeout(60)
async def test_a_hanging_vtn_costs_a_poll_bounded_by_the_timeout() -> None:
    async with running_vtn() as vtn:
        t0 = datetime.now(UTC).replace(microsecond=0) + 10 * MIN
        vtn.events = [event("e-1", "p-1", t0, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 360.0)])]

        async with running_ven(vtn) as ven:
            await wait_for(lambda: len(ven.book.pending()) == 1)
            vtn.events_answer = vtn.hang
            await wait_for(lambda: ven.failures["poll:TimeoutError"] >= 2)
            assert [e.event_id for e in ven.book.pending()] == ["e-1:0"]  # an outage cancels nothing
            assert ven.status()["polls_failing"] >= 2  # what EmsVenFailing watches
            vtn.events_answer = None
            vtn.events = []
            await wait_for(lambda: not ven.book.pending())  # back: the VTN's word again
            assert ven.status()["polls_failing"] == 0


def _site(make_site, mqtt_url: str, vtn: FakeVtn):
    return make_site(
        mqtt_url, rows=1, racks_per_row=4, period_s=0.5, units=1,
        policies={"demand_response": {"flex_tiers": {"row01": 4}, "precharge_s": 0.0,
                                      "openadr3": _cfg(vtn)}})


@pytest.mark.timeout(120)
async def test_the_controller_follows_openadr3_and_a_hanging_vtn_does_not_hold_its_periods(
        broker, make_site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMS_TEST_OADR3_SECRET", SECRET)
    async with running_vtn() as vtn:
        now = datetime.now(UTC).replace(microsecond=0)
        vtn.events = [event("e-1", "p-1", now - MIN, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 1e4)])]
        cfg = _site(make_site, broker.url, vtn)
        clock = ScaledClock(1.0)
        async with running_site(cfg, clock), running_controller(cfg, clock) as ctl:
            ven = ctl.ven3
            assert ven is not None
            await wait_for(lambda: [e.event_id for e in ctl.dr.pending()] == ["e-1:0"], timeout_s=20)
            await wait_for(lambda: ctl.last is not None and ctl.last.step.dr is not None
                           and ctl.last.step.dr.event_id == "e-1:0", timeout_s=10)  # the step holds it
            await wait_for(lambda: len(vtn.reports) >= 1, timeout_s=10)
            assert vtn.reports[0]["resources"][0]["resourceName"] == "site"

            vtn.events_answer = vtn.hang
            gets = vtn.event_gets
            await wait_for(lambda: vtn.event_gets > gets, timeout_s=10)  # a poll is hanging now
            periods = ctl.stats.periods
            await wait_for(lambda: ven.failures["poll:TimeoutError"] >= 2, timeout_s=20)
            # the site status says so: the VEN's polls, and its failures by kind
            await wait_for(lambda: ctl.last is not None and ctl.last.status["dr"]["ven"]["failures"].get(
                "poll:TimeoutError", 0) >= 2, timeout_s=5)
            ven_status = ctl.last.status["dr"]["ven"]
            assert ven_status["protocol"] == "OpenADR 3.0.1" and ven_status["polls"] >= 1
            assert ven_status["reports"] >= 1 and ven_status["refused"] == {}
            # and so do the metrics an operator alerts on
            text = ControllerMetrics(ctl.published).render().decode()
            assert f'ems_dr_ven_info{{protocol="OpenADR 3.0.1",vtn="{vtn.url}"}} 1.0' in text
            timeouts = re.search(r'^ems_dr_ven_failures_total\{kind="poll:TimeoutError"\} (\S+)$', text, re.M)
            assert timeouts is not None and float(timeouts.group(1)) >= 2
            assert re.search(r"^ems_dr_ven_reports_total [1-9]", text, re.M)
            # while the VTN hung through two polls (>= 2 timeouts of 1 s), the 0.5-s periods went on
            assert ctl.stats.periods >= periods + 3
            assert [e.event_id for e in ctl.dr.pending()] == ["e-1:0"]
