"""OpenADR events (as openleadr parses them) as the site's demand-response events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ems.openadr_events import Malformed, Unsupported, dr_events

START = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
NOW_S = START.timestamp()
LEVELS = {1: 0.1, 2: 0.25, 3: 0.5}


def event(name: str, kind: str, payloads: list[Any], measurement: dict[str, Any] | None = None) -> dict[str, Any]:
    signal: dict[str, Any] = {"signal_name": name, "signal_type": kind, "intervals": [
        {"duration": timedelta(minutes=30), "signal_payload": p, "uid": k} for k, p in enumerate(payloads)]}
    if measurement is not None:
        signal["measurement"] = measurement
    return {"event_descriptor": {"event_id": "e9", "event_status": "far", "modification_number": 0},
            "active_period": {"dtstart": START, "duration": timedelta(minutes=30 * len(payloads))},
            "event_signals": [signal]}


def test_simple_levels_cut_a_share_of_the_baseline_per_interval() -> None:
    out = dr_events(event("SIMPLE", "level", [1, 0, 3]), LEVELS, 1000.0, NOW_S)
    assert [(e.event_id, e.reduction_fraction) for e in out] == [("e9:0", 0.1), ("e9:2", 0.5)]
    assert out[1].start_s == (START + timedelta(minutes=60)).timestamp()
    assert out[1].end_s - out[1].start_s == 1800.0
    assert all(e.source == "openadr" for e in out)


def test_load_dispatch_setpoint_and_delta_with_their_scale() -> None:
    [e] = dr_events(event("LOAD_DISPATCH", "setpoint", [2.5], {"name": "powerReal", "scale": "M"}), LEVELS, 1e3, NOW_S)
    assert e.target_import_w == 2.5e6
    [e] = dr_events(event("LOAD_DISPATCH", "setpoint", [400]), LEVELS, 1e3, NOW_S)  # no unit: the configured kW
    assert e.target_import_w == 400e3
    [e] = dr_events(event("LOAD_DISPATCH", "delta", [-300]), LEVELS, 1e3, NOW_S)
    assert e.reduction_w == 300e3


def test_load_control_capacity_and_percent() -> None:
    [e] = dr_events(event("LOAD_CONTROL", "x-loadControlCapacity", [0.75]), LEVELS, 1e3, NOW_S)
    assert e.reduction_fraction == pytest.approx(0.25)
    [e] = dr_events(event("LOAD_CONTROL", "x-loadControlPercentOffset", [-20]), LEVELS, 1e3, NOW_S)
    assert e.reduction_fraction == pytest.approx(0.2)


def _with_interval(ev: dict[str, Any], **changes: Any) -> dict[str, Any]:
    (signal,) = ev["event_signals"]
    signal["intervals"][0] |= changes
    return ev


@pytest.mark.parametrize(("ev", "error"), [
    (event("LOAD_DISPATCH", "delta", [50]), Unsupported),  # a load increase
    (event("SIMPLE", "level", [7]), Unsupported),
    (event("ELECTRICITY_PRICE", "price", [0.3]), Unsupported),
    (event("LOAD_DISPATCH", "setpoint", [float("nan")]), Malformed),
    (event("LOAD_DISPATCH", "setpoint", [-5]), Malformed),
    (event("LOAD_DISPATCH", "setpoint", ["lots"]), Malformed),
    (event("LOAD_CONTROL", "x-loadControlCapacity", [1.5]), Malformed),
    (event("LOAD_DISPATCH", "setpoint", [1], {"scale": "zz"}), Malformed),
    ({"event_descriptor": {"event_id": "x"}}, Malformed),
    ({**event("SIMPLE", "level", [1]), "active_period": {"dtstart": datetime(2026, 1, 1), "duration": None}},
     Malformed),  # no time zone
    # an interval to the year 9999 (its local times overflowed the planner's calendar east of UTC,
    # OverflowError ended the controller), one starting in the year 1, one a year away, none at all
    (_with_interval(event("SIMPLE", "level", [1]), duration=timedelta(days=2_912_110)), Malformed),
    (_with_interval(event("SIMPLE", "level", [1]), dtstart=datetime(1, 1, 1, tzinfo=UTC),
                    duration=timedelta(days=30)), Malformed),
    (_with_interval(event("SIMPLE", "level", [1]), dtstart=START + timedelta(days=367)), Malformed),
    (_with_interval(event("SIMPLE", "level", [1]), duration=timedelta(0)), Malformed),
    (_with_interval(event("SIMPLE", "level", [1]), duration=timedelta(days=1, seconds=1)), Malformed),
    (event("SIMPLE", "level", [1] * 97), Malformed),  # more intervals than a day of quarter hours
])
def test_what_the_site_cannot_act_on_is_refused_with_its_kind(ev, error) -> None:
    with pytest.raises(error):
        dr_events(ev, LEVELS, 1e3, NOW_S)


def test_a_modified_event_the_site_refuses_leaves_the_book() -> None:
    """The VTN changes a booked event into one the site cannot act on: the VEN opts out, and
    the old version's intervals, booked before, left the book no more (the site acted on an
    event it had said it would not)."""
    from typing import cast

    from ems.config import OpenAdrConfig
    from ems.dr_book import DrBook
    from ems.openadr_ven import OPT_IN, OPT_OUT, OpenAdrVen
    from ems.published import Published

    book = DrBook()
    ven = OpenAdrVen(OpenAdrConfig(vtn_url="http://127.0.0.1:1/OpenADR2/Simple/2.0b", ven_name="s"), book,
                     cast(Published, None), None)  # on_event reads neither the period result nor the DR params
    soon = dict(event("SIMPLE", "level", [1, 2]), active_period={"dtstart": datetime.now(UTC) + timedelta(hours=1),
                                                                  "duration": timedelta(hours=1)})
    assert ven.on_event(soon) == OPT_IN and [e.event_id for e in book.pending()] == ["e9:0", "e9:1"]
    changed = dict(event("LOAD_DISPATCH", "delta", [50]), active_period=soon["active_period"])  # a load increase
    assert ven.on_event(changed) == OPT_OUT
    assert book.pending() == [] and ven.opted_out == 1 and ven.opted_in == 1


def test_a_booking_the_control_loop_takes_too_late_never_lands() -> None:
    """openleadr's handler waits for the control loop to change the book; past its wait it fails
    (openleadr tells the VTN the site opted out), so the change must not land later, when the
    loop gets to it."""
    import asyncio
    import threading
    import time
    from typing import cast

    from ems.config import OpenAdrConfig
    from ems.dr_book import DrBook
    from ems.openadr_ven import OpenAdrVen
    from ems.published import Published

    ven = OpenAdrVen(OpenAdrConfig(vtn_url="http://127.0.0.1:1/OpenADR2/Simple/2.0b", ven_name="s"), DrBook(),
                     cast(Published, None), None)
    ven.on_main_timeout_s = 0.1
    main = asyncio.new_event_loop()
    thread = threading.Thread(target=main.run_forever, daemon=True)
    thread.start()
    ran: list[str] = []
    try:
        ven._main = main
        assert ven._on_main(lambda: ran.append("on time") or "done") == "done"
        main.call_soon_threadsafe(time.sleep, 0.5)  # the control loop busy past the wait
        with pytest.raises(TimeoutError):
            ven._on_main(lambda: ran.append("late") or "done")
        time.sleep(0.6)
        assert asyncio.run_coroutine_threadsafe(asyncio.sleep(0), main).result(timeout=2) is None
        assert ran == ["on time"]  # the late change was dropped, not made after the VTN heard "no"
    finally:
        main.call_soon_threadsafe(main.stop)
        thread.join(2)
        main.close()
