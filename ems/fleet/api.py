"""The fleet page and API (aiohttp), reading PostgreSQL on a connection of their own.

GET /api/fleet: every site's latest grid import, SoC, mode, reason and alarms, and the
fleet-wide flexibility (what the fresh sites could add in battery discharge now, for
demand response; a site whose status is older than `stale_after_s` is listed as stale and
not counted). GET /api/sites/{site}/history?minutes=N: its 1-minute history. GET /: the page
(it sends the token given once in the URL's fragment, `#token=...`, kept for the tab).
Reads only. With tokens configured every /api/ read needs one (401 otherwise); without,
the service must bind to loopback (ems/fleet/service.py refuses anything else).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from aiohttp import web
from psycopg.rows import dict_row

from ems.operator.auth import Tokens

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>ems fleet</title>
<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{padding:2px 8px;
border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}
.stale{color:#999}.alarm{color:#b00}</style></head><body>
<h1>Fleet</h1><p id="sum"></p><table><thead><tr><th>site</th><th>grid import kW</th><th>SoC %</th>
<th>mode</th><th>reason</th><th>flexibility kW</th><th>alarms</th><th>age s</th></tr></thead>
<tbody id="rows"></tbody></table><script>
const m=location.hash.match(/token=([^&]+)/);
if(m){sessionStorage.setItem('fleetToken',m[1]);history.replaceState(null,'',location.pathname)}
const tok=sessionStorage.getItem('fleetToken');const hdr=tok?{Authorization:'Bearer '+tok}:{};
async function tick(){const r=await fetch('api/fleet',{headers:hdr});
if(r.status===401){document.getElementById('sum').textContent=
'a token is needed: open this page as .../#token=YOUR_TOKEN';return}
const f=await r.json();
document.getElementById('sum').textContent=`${f.sites.length} sites, ${f.stale} stale; `+
`fleet flexibility now ${(f.flexibility_w/1e3).toFixed(0)} kW; grid import ${(f.grid_w/1e3).toFixed(0)} kW`;
const tb=document.getElementById('rows');tb.replaceChildren();
for(const s of f.sites){const tr=document.createElement('tr');
if(s.stale)tr.className='stale';const c=[s.site,s.grid_w==null?'':(s.grid_w/1e3).toFixed(1),
s.soc==null?'':(100*s.soc).toFixed(1),s.mode,s.reason,s.flex_w==null?'':(s.flex_w/1e3).toFixed(0),
s.alarms.join(' '),s.age_s.toFixed(0)];for(const v of c){const td=document.createElement('td');td.textContent=v;
tr.appendChild(td)}if(s.alarms.length)tr.lastChild.previousSibling.className='alarm';tb.appendChild(tr)}}
tick();setInterval(tick,2000);</script></body></html>"""


@web.middleware
async def _no_store(request: web.Request, handler: Any) -> web.StreamResponse:
    resp: web.StreamResponse = await handler(request)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _auth(tokens: Tokens) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/") and tokens.configured \
                and tokens.operator(request.headers.get("Authorization")) is None:
            return web.json_response({"error": "missing or wrong token (Authorization: Bearer <token>)"},
                                     status=401, headers={"WWW-Authenticate": 'Bearer realm="ems-fleet"'})
        resp: web.StreamResponse = await handler(request)
        return resp
    return check


def app(dsn: str, stale_after_s: float, tokens: Tokens | None = None) -> web.Application:
    a = web.Application(middlewares=[_auth(tokens or Tokens({})), _no_store])
    held: dict[str, psycopg.AsyncConnection[Any]] = {}  # the API's one connection, opened when first needed

    async def conn() -> psycopg.AsyncConnection[Any]:
        c = held.get("conn")
        if c is None or c.closed:
            c = held["conn"] = await psycopg.AsyncConnection.connect(dsn, connect_timeout=5, autocommit=True)
        return c

    async def fleet(_req: web.Request) -> web.Response:
        try:
            c = await conn()
            async with c.cursor(row_factory=dict_row) as cur:
                await cur.execute("SELECT site, ts, grid_w, soc, mode, reason, alarms, flex_w FROM fleet_sites "
                                  "ORDER BY site")
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            held.pop("conn", None)
            return web.json_response({"error": f"PostgreSQL: {exc}"}, status=503)
        now = dt.datetime.now(dt.UTC)
        sites = []
        for r in rows:
            age = (now - r["ts"]).total_seconds()
            sites.append({"site": r["site"], "ts": r["ts"].timestamp(), "age_s": round(age, 1),
                          "stale": age > stale_after_s, "grid_w": r["grid_w"], "soc": r["soc"], "mode": r["mode"],
                          "reason": r["reason"], "alarms": r["alarms"], "flex_w": r["flex_w"]})
        fresh = [s for s in sites if not s["stale"]]
        return web.json_response({
            "sites": sites, "stale": len(sites) - len(fresh),
            "flexibility_w": round(sum(s["flex_w"] or 0.0 for s in fresh), 1),
            "grid_w": round(sum(s["grid_w"] or 0.0 for s in fresh), 1)})

    async def history(req: web.Request) -> web.Response:
        try:
            minutes = min(max(int(req.query.get("minutes", "60")), 1), 7 * 24 * 60)
        except ValueError:
            return web.json_response({"error": "minutes: an integer"}, status=400)
        try:
            c = await conn()
            async with c.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    "SELECT ts, grid_avg_w, grid_max_w, soc_avg, battery_avg_w, samples, reason FROM fleet_history "
                    "WHERE site = %s AND ts >= now() - make_interval(mins => %s) ORDER BY ts",
                    (req.match_info["site"], minutes))
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            held.pop("conn", None)
            return web.json_response({"error": f"PostgreSQL: {exc}"}, status=503)
        return web.json_response({"site": req.match_info["site"],
                                  "minutes": [{**r, "ts": r["ts"].timestamp()} for r in rows]})

    async def page(_req: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    async def close(_app: web.Application) -> None:
        c = held.get("conn")
        if c is not None:
            await c.close()

    a.router.add_get("/", page)
    a.router.add_get("/api/fleet", fleet)
    a.router.add_get("/api/sites/{site}/history", history)
    a.on_cleanup.append(close)
    return a
