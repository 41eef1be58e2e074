"""OpenADR 3.0.1 events (the VTN's JSON) as the site's demand-response events, the VEN's
settings and its report's shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ems.config import OpenAdr3Config, parse_config
from ems.dr_book import DrBook
from ems.model.errors import ConfigError
from ems.openadr3_events import MAX_INTERVALS, Malformed, Unsupported, dr_events3, for_this_site
from ems.openadr3_ven import OpenAdr3Ven
from tests.conftest import site_dict
from tests.vtn3_payloads import event

START = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
NOW_S = (START - timedelta(hours=1)).timestamp()
LEVELS = {1: 0.1, 2: 0.25, 3: 0.5}
MIN = timedelta(minutes=1)
REPORT = Path(__file__).parents[1] / "data" / "openadr3" / "report.json"
VEN = REPORT.with_name("ven.json")


def _events(e: Any, now_s: float = NOW_S) -> list[Any]:
    return dr_events3(json.loads(json.dumps(e)), LEVELS, 1000.0, now_s)


def test_import_capacity_limit_is_a_target_in_the_descriptor_units() -> None:
    out = _events(event("e", "p", START, [(30 * MIN, "IMPORT_CAPACITY_LIMIT", 2.5),
                                          (15 * MIN, "IMPORT_CAPACITY_LIMIT", 2.0)], units="MW"))
    assert [(x.event_id, x.start_s, x.end_s, x.target_import_w) for x in out] == [
        ("e:0", START.timestamp(), START.timestamp() + 1800, 2.5e6),
        ("e:1", START.timestamp() + 1800, START.timestamp() + 2700, 2.0e6)]
    [x] = _events(event("e", "p", START, [(MIN, "IMPORT_CAPACITY_LIMIT", 400.0)], units=None))
    assert x.target_import_w == 400e3  # no units: power_scale_w per unit
    assert x.source == "openadr3"


def test_simple_levels_and_a_relative_dispatch() -> None:
    out = _events(event("e", "p", START, [(MIN, "SIMPLE", 1), (MIN, "SIMPLE", 0), (MIN, "SIMPLE", 3)], units=None))
    assert [(x.event_id, x.reduction_fraction) for x in out] == [("e:0", 0.1), ("e:2", 0.5)]
    [x] = _events(event("e", "p", START, [(MIN, "DISPATCH_SETPOINT_RELATIVE", -300.0)]))
    assert x.reduction_w == 300e3


def test_intervals_without_their_own_period_follow_the_event_period() -> None:
    e = event("e", "p", START, [(10 * MIN, "IMPORT_CAPACITY_LIMIT", 1.0)] * 3)
    for interval in e["intervals"]:
        del interval["intervalPeriod"]
    assert [(x.start_s - START.timestamp(), x.end_s - START.timestamp()) for x in _events(e)] == [
        (0, 600), (600, 1200), (1200, 1800)]


def test_priority_zero_is_the_highest() -> None:
    [hi] = _events(event("a", "p", START, [(MIN, "IMPORT_CAPACITY_LIMIT", 1.0)], priority=0))
    [lo] = _events(event("b", "p", START, [(MIN, "IMPORT_CAPACITY_LIMIT", 1.0)], priority=5))
    assert hi.priority > lo.priority


@pytest.mark.parametrize("kind,value", [("PRICE", 0.3), ("EXPORT_CAPACITY_LIMIT", 100.0), ("ALERT_FLEX_ALERT", 1)])
def test_payloads_the_site_cannot_act_on_are_unsupported(kind: str, value: float) -> None:
    with pytest.raises(Unsupported):
        _events(event("e", "p", START, [(MIN, kind, value)]))


def test_a_load_increase_and_a_level_without_a_cut_are_unsupported() -> None:
    with pytest.raises(Unsupported):
        _events(event("e", "p", START, [(MIN, "DISPATCH_SETPOINT_RELATIVE", 50.0)]))
    with pytest.raises(Unsupported):
        _events(event("e", "p", START, [(MIN, "SIMPLE", 4)]))
    with pytest.raises(Unsupported):
        _events(event("e", "p", START, [(MIN, "IMPORT_CAPACITY_LIMIT", 1.0)], units="KVAR"))


def _bad(mutate: Any) -> dict[str, Any]:
    e = event("e", "p", START, [(MIN, "IMPORT_CAPACITY_LIMIT", 1.0)])
    mutate(e)
    return e


@pytest.mark.parametrize("e", [
    "not an event", {"id": "e", "intervals": []}, {"intervals": [{"id": 0}]},
    _bad(lambda e: e["intervals"][0]["payloads"][0].update(values=[float("nan")])),
    _bad(lambda e: e["intervals"][0]["payloads"][0].update(values=["400"])),
    _bad(lambda e: e["intervals"][0]["payloads"][0].update(values=[-1.0])),
    _bad(lambda e: e["intervals"][0]["payloads"][0].update(values=[1e300])),
    _bad(lambda e: e["intervals"][0].update(payloads=[])),
    _bad(lambda e: e["intervals"][0]["intervalPeriod"].update(duration="PT0S")),  # open-ended
    _bad(lambda e: e["intervals"][0]["intervalPeriod"].update(duration="P40D")),
    _bad(lambda e: e["intervals"][0]["intervalPeriod"].update(duration="soon")),
    _bad(lambda e: e["intervals"][0]["intervalPeriod"].update(start="2026-07-01T16:00:00")),  # no zone
    _bad(lambda e: e["intervals"][0]["intervalPeriod"].update(start="2031-07-01T16:00:00Z")),  # far ahead
    _bad(lambda e: e["intervals"][0]["intervalPeriod"].update(start="1999-07-01T16:00:00Z")),  # long past
    _bad(lambda e: e.update(id="x" * 500)),
    _bad(lambda e: e.update(intervals=e["intervals"] * (MAX_INTERVALS + 1))),
])
def test_malformed_events_are_refused_with_a_typed_error(e: Any) -> None:
    with pytest.raises(Malformed):
        _events(e)


def _cfg(**kw: Any) -> dict[str, Any]:
    return {"vtn_url": "https://vtn.example/openadr3/3.0.1", "token_url": "https://vtn.example/auth/token",
            "client_id": "site-7", "client_secret_env": "EMS_TEST_OADR3_SECRET", "programs": ["flex"],
            "ven_name": "site-7", **kw}


def test_the_client_secret_comes_from_the_environment_or_a_file(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMS_TEST_OADR3_SECRET", raising=False)
    with pytest.raises(ConfigError, match="client_secret_env: EMS_TEST_OADR3_SECRET is not set"):
        OpenAdr3Config.model_validate(_cfg()).client_secret()
    monkeypatch.setenv("EMS_TEST_OADR3_SECRET", "s3cret")
    assert OpenAdr3Config.model_validate(_cfg()).client_secret() == "s3cret"
    f = tmp_path / "secret"
    f.write_text("from-file\n")
    assert OpenAdr3Config.model_validate(_cfg(client_secret_env=None, client_secret_file=f)).client_secret() \
        == "from-file"
    with pytest.raises(ValueError, match="exactly one of"):
        OpenAdr3Config.model_validate(_cfg(client_secret_file=f))
    with pytest.raises(ValueError, match="client_secret"):
        OpenAdr3Config.model_validate(_cfg(client_secret=["in clear"]))  # no such field: the site file holds none


def test_a_site_with_both_openadr_versions_is_refused() -> None:
    dr = {"openadr3": _cfg(), "openadr": {"vtn_url": "https://vtn.example/OpenADR2/Simple/2.0b", "ven_name": "s"}}
    with pytest.raises(ConfigError, match="configure one"):
        parse_config(site_dict("mqtt://127.0.0.1:1883", policies={"demand_response": dr}), "test")
    parse_config(site_dict("mqtt://127.0.0.1:1883", policies={"demand_response": {"openadr3": _cfg()}}), "test")


def test_the_report_is_the_shape_checked_against_openadr3_client() -> None:
    """tests/data/openadr3/report.json is what scripts/check_openadr3_shapes.py validates with the
    library's NewReport: the VEN must keep posting exactly that shape."""
    ven = OpenAdr3Ven(OpenAdr3Config.model_validate(_cfg()), "s", DrBook(), lambda: 0.0, lambda: 480e3,
                      lambda: 120e3)
    ven.program_ids = {"e-1": "p-1"}
    assert ven.report_body("e-1", 1_800_000_000.0) == json.loads(REPORT.read_text())


def test_the_ven_request_is_the_shape_checked_against_openadr3_client() -> None:
    """tests/data/openadr3/ven.json is what scripts/check_openadr3_shapes.py validates with the
    library's NewVen (the VTN's answer, with its id, with ExistingVen)."""
    ven = OpenAdr3Ven(OpenAdr3Config.model_validate(_cfg(targets={"GROUP": ["north", "dc-east"]})), "s", DrBook(),
                      lambda: 0.0, lambda: 480e3, lambda: 120e3)
    assert ven.ven_request() == json.loads(VEN.read_text())


def test_the_resource_request_is_the_shape_checked_against_openadr3_client() -> None:
    """tests/data/openadr3/resource.json is what scripts/check_openadr3_shapes.py validates with
    the library's NewResource."""
    from ems.openadr3_ven import resource_request

    assert resource_request("site", "v-1") == json.loads(REPORT.with_name("resource.json").read_text())


def test_a_changed_openadr3_section_needs_a_restart() -> None:
    from ems.config_reload import needs_restart
    base = site_dict("mqtt://127.0.0.1:1883")
    running = parse_config({**base, "policies": {"demand_response": {"openadr3": _cfg()}}}, "test")
    changed = parse_config({**base, "policies": {"demand_response": {"openadr3": _cfg(programs=["other"])}}}, "test")
    assert needs_restart(running, changed) == ["policies.demand_response.openadr3"]


def test_an_event_targeted_at_other_sites_is_not_this_ones() -> None:
    me = {"VEN_NAME": frozenset({"site-7"}), "GROUP": frozenset({"north", "dc-east"})}

    def ours(targets: dict[str, list[str]] | None) -> bool:
        return for_this_site(json.loads(json.dumps(event("e", "p", START, [(MIN, "SIMPLE", 1)],
                                                         targets=targets))).get("targets"), me)

    assert ours(None) and ours({})  # no targets: every VEN of the program
    assert ours({"VEN_NAME": ["site-3", "site-7"]}) and not ours({"VEN_NAME": ["site-3", "site-9"]})
    assert ours({"GROUP": ["north"]}) and not ours({"GROUP": ["south"]})
    # the targets are the recipients, any of them: named by one of its types, the site is one
    assert ours({"VEN_NAME": ["site-7"], "GROUP": ["south"]}) and ours({"VEN_NAME": ["site-9"], "GROUP": ["north"]})
    # recipients the site can judge all name others: not the site's, whatever else the event names
    assert not ours({"VEN_NAME": ["site-9"], "RESOURCE_NAME": ["feeder-12"]})
    # only types the site does not know: the VTN's to judge
    assert ours({"VEN_NAME": ["site-7"], "RESOURCE_NAME": ["feeder-12"]}) and ours({"SERVICE_AREA": ["x"]})
    # entries of one type are one list of values (OR), whatever the VTN split them into
    assert for_this_site([{"type": "VEN_NAME", "values": ["a"]}, {"type": "VEN_NAME", "values": ["site-7"]}], me)
    # 3.1: targets are plain strings, matched against all the site's values
    assert for_this_site(["site-7"], me) and for_this_site(["x", "north"], me) and for_this_site([], me)
    assert not for_this_site(["south", "site-9"], me)
    for bad in ({"type": "VEN_NAME"}, [{"type": "VEN_NAME", "values": "site-7"}], [{"values": ["site-7"]}], [5],
                [{"type": "GROUP", "values": ["g"] * 1001}], [{"type": "GROUP", "values": ["g"]}] * 33):
        with pytest.raises(Malformed):
            for_this_site(bad, me)


def test_the_sites_own_target_values_are_checked() -> None:
    base = {"vtn_url": "https://vtn.example/openadr3/3.0.1", "token_url": "https://vtn.example/token",
            "client_id": "c", "client_secret_env": "X", "programs": ["p"], "ven_name": "site-7"}
    assert OpenAdr3Config.model_validate({**base, "targets": {"GROUP": ["north"]}}).targets == {"GROUP": ["north"]}
    for bad in ({"group": ["north"]}, {"VEN_NAME": ["site-7"]}, {"GROUP": []}, {"GROUP": [""]}, {"GROUP": "north"}):
        with pytest.raises(ValueError, match="targets"):
            OpenAdr3Config.model_validate({**base, "targets": bad})


def test_a_vtn_url_with_credentials_is_refused_without_echoing_them() -> None:
    """The status and the metrics (unauthenticated) show the VTN's URL: a password in it would be
    published; the site file refuses it, naming the field, and the message does not repeat it."""
    cases = [{"openadr3": _cfg(vtn_url="https://site-7:hunter2@vtn.example/openadr3/3.0.1")},
             {"openadr3": _cfg(token_url="https://site-7:hunter2@auth.example/token")},
             {"openadr": {"vtn_url": "https://site-7:hunter2@vtn.example/OpenADR2/Simple/2.0b", "ven_name": "s"}}]
    for dr in cases:
        with pytest.raises(ConfigError, match="must not carry a user or password") as exc:
            parse_config(site_dict("mqtt://127.0.0.1:1883", policies={"demand_response": dr}), "test")
        assert "url" in str(exc.value) and "hunter2" not in str(exc.value)


def test_ids_and_versions_from_the_vtn_are_taken_as_text_only_from_strings_and_integers() -> None:
    """str() of a deeply nested list raises RecursionError on the event loop's stack, which no
    except clause of the VEN expected: one program's modificationDateTime ended the controller."""
    from ems.openadr3_events import id_text as _text

    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(RecursionError):
        str(nested)
    assert _text(nested) is None and _text({"a": 1}) is None and _text(True) is None and _text(None) is None
    assert _text("p-1") == "p-1" and _text(42) == "42" and _text("") is None
    assert _text("x" * 129) is None and _text("x" * 128) == "x" * 128  # an id cut short would name another
    assert _text("2026-01-01T00:00:00Z" * 4, 64) is None
