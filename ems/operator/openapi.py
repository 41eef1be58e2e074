"""The OpenAPI 3.1 document of the operator API, built for one site.

Request bodies come from the pydantic models that validate them (ems/operator/requests.py);
the site's own names (tunable parameters, unit ids) and limits (longest forced mode) are
filled in, so a client, and schemathesis, see exactly what the server accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from ems.operator import requests as rq

_REF = "#/components/schemas/{model}"

_ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string", "description": "what went wrong, for a person"},
    "detail": {"type": "array", "items": {"type": "string"}, "description": "one line per problem"}}}
_EVENT = {"type": "object", "required": ["id", "wall_s", "kind", "reason", "data"], "properties": {
    "id": {"type": "integer"}, "wall_s": {"type": "number"}, "kind": {"type": "string"},
    "reason": {"type": ["string", "null"]}, "data": {"type": "object"}}}
_ACTION_OK = {"type": "object", "required": ["ok", "event"], "properties": {
    "ok": {"const": True}, "event": {"$ref": "#/components/schemas/Event"},
    "applies": {"type": "string"}}}
_OBJECT = {"type": "object"}


def _err(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if retry_after:
        out["headers"] = {"Retry-After": {"description": "seconds to wait before trying again",
                                          "schema": {"type": "integer", "minimum": 1}}}
    return out


# every path: the client's or all clients' rate is spent (docs/operator.md, http.limits)
_LIMITED = {"429": _err("too many requests from this client, or from all clients together; "
                        "see Retry-After", retry_after=True)}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(summary: str, schema: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
         extra: dict[str, Any] | None = None, tag: str = "read") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag],
                          "responses": {"200": _json("OK", schema), **(extra or {}), **_LIMITED}}
    if params:
        op["parameters"] = params
    return {"get": op}


def _action(summary: str, body_ref: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "tags": ["operator actions"], "security": [{"bearerAuth": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": body_ref}}}},
        "responses": {
            "200": _json("applied (from the next control period) and recorded in the event log",
                         {"$ref": "#/components/schemas/ActionResult"}),
            "400": _err("malformed request: not JSON, a wrong type, a missing or unknown field"),
            "401": _err("missing or wrong operator token"),
            "404": _err("no such parameter or unit on this site"),
            "409": _err("the action does not fit the current state (e.g. already in maintenance)"),
            "413": _err("request body too large"),
            "422": _err("the value is out of its validated bounds; `detail` names the field and the bound"),
            "503": _err("operator actions are disabled (no operator token is configured), or the control loop "
                        "cannot take it now (its action queue is full, or it did not answer within "
                        "http.limits.action_timeout_s; the action was not applied)", retry_after=True),
            **_LIMITED,
        }}}


def build(*, site: str, params: list[str], units: list[str], max_force_s: float) -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "validation") for m in (rq.SetParam, rq.ResetParam, rq.SetMaintenance, rq.ReloadSiteFile,
                                     rq.ForceZero, rq.ForceSetpoint, rq.ForceAuto, rq.LoadTargetSet, rq.DrOptOut)],
        ref_template=_REF)
    schemas: dict[str, Any] = defs.get("$defs", {})
    force = TypeAdapter(rq.ForceMode).json_schema(ref_template=_REF)
    force.pop("$defs", None)
    schemas["ForceMode"] = force
    # this site's names and limits
    for name in ("SetParam", "ResetParam"):
        schemas[name]["properties"]["param"]["enum"] = params
    schemas["SetMaintenance"]["properties"]["unit"]["enum"] = units
    for name in ("ForceZero", "ForceSetpoint"):
        schemas[name]["properties"]["timeout_s"]["maximum"] = max_force_s
    schemas.update({"Error": _ERROR, "Event": _EVENT, "ActionResult": _ACTION_OK})

    page = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            {"name": "before_id", "in": "query", "description": "the smallest id of the previous page",
             "schema": {"type": "integer", "minimum": 1, "maximum": 2**62}},
            {"name": "kind", "in": "query", "schema": {"type": "string", "pattern": r"^[a-z_]{1,64}$"}}]
    since = [{"name": "since", "in": "query", "description": "only samples after this sequence number",
              "schema": {"type": "integer", "minimum": 0, "maximum": 2**62}}]
    window = [*since,
              {"name": "range_s", "in": "query", "description": "instead of `since`: the samples of the last "
               "range_s site seconds, recent and coarse (all kept without it)",
               "schema": {"type": "integer", "minimum": 1, "maximum": 10**9}},
              {"name": "points", "in": "query", "description": "instead of `since`: at most this many samples, "
               "consecutive ones merged (means, extremes of the extremes)",
               "schema": {"type": "integer", "minimum": 10, "maximum": 10_000}}]
    not_yet = {"503": _err("no control period has run yet")}
    bad = {"400": _err("malformed query parameter")}
    events_page = {"type": "object", "required": ["events", "next_before_id"], "properties": {
        "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
        "next_before_id": {"type": ["integer", "null"]}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"ems operator API ({site})", "version": "1",
                 "description": "Read the controller's state; tune policies and act, with a token. Powers in W "
                                "(grid > 0 import, battery > 0 discharge), SoC 0..1, times in site seconds."},
        "paths": {
            "/api/health": _get("liveness of the control loop (`ok`: a period finished within the last three), "
                                "periods run, site seconds since the last", _OBJECT),
            "/api/status": _get("the site status of the last period, with operator state and month peak",
                                _OBJECT, extra=not_yet),
            "/api/snapshot": _get("the last frozen snapshot: meter, every BMS and PCS, every rack, with ages",
                                  _OBJECT, extra=not_yet),
            "/api/setpoints": _get("what the last period decided: each policy's bounds and target, the "
                                   "arbitration, unit setpoints, rack caps sent", _OBJECT, extra=not_yet),
            "/api/history": _get("dashboard samples (newest last): the recent ones after `since`, or a window "
                                 "(`range_s`, `points`)", _OBJECT, params=window, extra=bad),
            "/api/events": _get("the event log, newest first, paged", events_page, params=page, extra=bad),
            "/api/config": _get("the site configuration, configured and in effect, secrets redacted", _OBJECT),
            "/api/params": _get("tunable parameters: value, configured value, bounds, override", _OBJECT),
            "/api/actions/set-param": _action("change a policy parameter within its validated bounds",
                                              "#/components/schemas/SetParam"),
            "/api/actions/reset-param": _action("go back to the site file's value",
                                                "#/components/schemas/ResetParam"),
            "/api/actions/maintenance": _action("put a unit in maintenance or take it out",
                                                "#/components/schemas/SetMaintenance"),
            "/api/actions/reload-site-file": _action("re-read the site file (as SIGHUP): units added or removed "
                                                     "without a restart", "#/components/schemas/ReloadSiteFile"),
            "/api/actions/force-mode": _action("force 0 W or a fixed battery power for a time, or end it",
                                               "#/components/schemas/ForceMode"),
            "/api/actions/load-target": _action("a load target for a window (grid.loadtarget.set.v1, as over MQTT), "
                                                "or its cancellation", "#/components/schemas/LoadTargetSet"),
            "/api/actions/dr-opt-out": _action("opt out of a demand-response event, or back in",
                                               "#/components/schemas/DrOptOut"),
            "/api/dr": _get("demand response: the event in force, pending events, the GPU budget per row, the last "
                            "event's figures", _OBJECT, extra=not_yet),
            "/api/stream": {"get": {"summary": "server-sent events: `samples`, `status` and `event` messages",
                                    "tags": ["read"], "parameters": since,
                                    "responses": {"200": {"description": "an endless text/event-stream",
                                                          "content": {"text/event-stream": {}}},
                                                  "400": _err("malformed query parameter"),
                                                  "429": _err("too many requests, or too many open streams "
                                                              "from this client or in total", retry_after=True)}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["read"], "responses": {
                "200": {"description": "text exposition format", "content": {"text/plain": {}}}, **_LIMITED}}},
        },
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                                          "description": "EMS_HTTP_TOKEN or http.token_file"}}},
    }
