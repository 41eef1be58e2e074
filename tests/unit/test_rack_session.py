"""The rack side of the row protocol without a broker: which commands reach which rack, and
how malformed ones are counted and logged (drivers/rack_session.py)."""

from __future__ import annotations

from structlog.testing import capture_logs

from drivers import rack_protocol as rp
from drivers.rack_session import RackCommands
from ems.model.racks import SmoothingProfile


class Recorder:
    def __init__(self) -> None:
        self.caps: list[tuple[str, float | None]] = []
        self.profiles: list[tuple[str, SmoothingProfile | None]] = []

    async def cap(self, rack: str, cap_w: float | None) -> None:
        self.caps.append((rack, cap_w))

    async def profile(self, rack: str, profile: SmoothingProfile | None) -> None:
        self.profiles.append((rack, profile))


def commands(rec: Recorder) -> RackCommands:
    return RackCommands("ems", "row02", ["row02-rack01", "row02-rack03"], rec.cap, rec.profile)


def test_subscriptions_are_the_row_and_each_served_rack_at_qos_1() -> None:
    assert commands(Recorder()).subscriptions() == [
        ("ems/rows/row02/caps", 1), ("ems/rows/row02/smoothing", 1),
        ("ems/rows/row02/racks/row02-rack01/cap", 1), ("ems/rows/row02/racks/row02-rack03/cap", 1)]


async def test_commands_reach_only_the_racks_served() -> None:
    rec = Recorder()
    c = commands(rec)
    await c.dispatch("ems/rows/row02/caps",
                     rp.encode_row_caps({"row02-rack01": 9000.0, "row02-rack02": 1.0, "row02-rack03": None}, 1))
    await c.dispatch("ems/rows/row02/racks/row02-rack03/cap", rp.encode_cap(7000.0, 2))
    profiles = {"row02-rack01": SmoothingProfile(5000.0, 800.0), "row02-rack02": None}
    await c.dispatch("ems/rows/row02/smoothing", rp.encode_row_smoothing(profiles, 3))
    assert rec.caps == [("row02-rack01", 9000.0), ("row02-rack03", None), ("row02-rack03", 7000.0)]
    assert rec.profiles == [("row02-rack01", SmoothingProfile(5000.0, 800.0))]
    assert c.malformed == 0


async def test_a_malformed_message_changes_nothing_and_is_logged_once_until_a_valid_one() -> None:
    rec = Recorder()
    c = commands(rec)
    with capture_logs() as logs:
        await c.dispatch("ems/rows/row02/caps", b'{"caps_w": {"row02-rack01": 500.0, "row02-rack03": "x"}}')
        await c.dispatch("ems/rows/row02/smoothing",
                         b'{"profiles": {"row02-rack01": {"floor_w": 1, "ramp_w_per_s": 0}}}')
        await c.dispatch("ems/rows/row02/racks/row02-rack01/cap", b"")
        await c.dispatch("ems/rows/row02/caps", rp.encode_row_caps({"row02-rack01": 500.0}, 1))
        await c.dispatch("ems/rows/row02/caps", b"[]")
    assert [e["event"] for e in logs] == ["malformed row command", "row commands valid again", "malformed row command"]
    assert c.malformed == 4
    assert rec.caps == [("row02-rack01", 500.0)] and rec.profiles == []


async def test_a_retained_per_rack_cap_is_ignored_and_logged_once() -> None:
    rec = Recorder()
    c = commands(rec)
    with capture_logs() as logs:
        for _ in range(2):
            await c.dispatch("ems/rows/row02/racks/row02-rack01/cap", rp.encode_cap(100.0, 1), retained=True)
        await c.dispatch("ems/rows/row02/caps", rp.encode_row_caps({"row02-rack01": 500.0}, 1), retained=True)
        await c.dispatch("ems/rows/row02/racks/row02-rack01/cap", rp.encode_cap(600.0, 2))
    assert rec.caps == [("row02-rack01", 500.0), ("row02-rack01", 600.0)]
    assert c.retained_ignored == 2 and c.malformed == 0
    assert [e["event"] for e in logs] == ["retained per-rack cap ignored: the row's caps are in force"]
