"""Job starts and stops: the scheduler's announcements, the job-ramp lever, and a site that
holds its ramp limit through steep job steps only when they are announced."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drivers import scheduler_protocol as sp
from drivers.errors import MalformedData
from ems.config import parse_config
from ems.fast_sim import simulate
from ems.job_ramps import MAX_PENDING, JobBook
from ems.model.racks import SmoothingProfile
from ems.model.reasons import Reason
from plant.config import PlantConfig, SimRackLoadConfig
from plant.racks import RackFleet
from policies import job_ramp
from tests.snapshots import racks

RACKS = racks(4)  # row01-rack01..04 drawing 20 kW of 40 kW
PARAMS = job_ramp.JobRampParams(rate_w_per_s=2_000.0, lead_s=5.0, settle_s=10.0)


def _start(at_s: float = 100.0, step_w: float | None = None, event: str = "start") -> job_ramp.JobStep:
    return job_ramp.JobStep("j1", event, RACKS.rack_ids, at_s, step_w)


def test_JOB_RAMP() -> None:
    """The battery has 50 kW of room to discharge; the job adds 80 kW: its four racks ramp,
    together at the rate allowed, from the lead before the step until it has had time to complete."""
    state = job_ramp.JobRampState()
    profiles, reason, began, state = job_ramp.decide(90.0, [_start()], RACKS, 50_000, 1e6, 0.0, PARAMS, state)
    assert profiles == {} and reason is None and began == []  # not yet within the lead
    profiles, reason, began, state = job_ramp.decide(95.0, [_start()], RACKS, 50_000, 1e6, 0.0, PARAMS, state)
    assert reason is Reason.JOB_RAMP and [r.lever for r in began] == ["gpu"]
    assert profiles == dict.fromkeys(RACKS.rack_ids, SmoothingProfile(0.0, 500.0))  # 2 kW/s over 4 racks
    # 80 kW (nameplate less what they draw) at 2 kW/s: 40 s, then 10 s to settle
    assert began[0].step_w == 80_000 and began[0].until_s == pytest.approx(150.0)
    profiles, _, began, state = job_ramp.decide(149.0, [_start()], RACKS, 1e6, 1e6, 0.0, PARAMS, state)
    assert len(profiles) == 4 and began == []  # decided once: more room later does not end it
    profiles, reason, _, state = job_ramp.decide(151.0, [_start()], RACKS, 1e6, 1e6, 0.0, PARAMS, state)
    assert profiles == {} and reason is None and state.ramps == {}


def test_a_step_the_battery_has_room_for_is_left_to_the_battery() -> None:
    profiles, reason, began, _ = job_ramp.decide(98.0, [_start()], RACKS, 200_000, 0.0, 0.0, PARAMS,
                                                 job_ramp.JobRampState())
    assert profiles == {} and reason is None and [r.lever for r in began] == ["battery"]


def test_the_room_a_job_needs_is_what_the_swing_leaves_and_in_its_direction() -> None:
    # a stop sheds what the racks draw (80 kW): the battery must charge, and half its 100 kW swing is taken
    stop = _start(event="stop")
    _, _, began, _ = job_ramp.decide(98.0, [stop], RACKS, 1e6, 100_000, 100_000, PARAMS, job_ramp.JobRampState())
    assert began[0].lever == "gpu" and began[0].step_w == 80_000
    _, _, began, _ = job_ramp.decide(98.0, [stop], RACKS, 1e6, 140_000, 100_000, PARAMS, job_ramp.JobRampState())
    assert began[0].lever == "battery"
    # an announced step counts where it is larger than the estimate, never smaller
    _, _, began, _ = job_ramp.decide(98.0, [_start(step_w=1.0)], RACKS, 50_000, 0.0, 0.0, PARAMS,
                                     job_ramp.JobRampState())
    assert began[0].lever == "gpu" and began[0].step_w == 80_000
    _, _, began, _ = job_ramp.decide(98.0, [_start(step_w=150_000)], RACKS, 100_000, 0.0, 0.0, PARAMS,
                                     job_ramp.JobRampState())
    assert began[0].lever == "gpu" and began[0].step_w == 150_000


def test_jobs_at_once_share_the_rate_and_the_battery_room() -> None:
    other = job_ramp.JobStep("j2", "start", RACKS.rack_ids[:2], 100.0, None)
    profiles, _, began, _ = job_ramp.decide(98.0, [_start(), other], RACKS, 0.0, 0.0, 0.0, PARAMS,
                                            job_ramp.JobRampState())
    assert [r.lever for r in began] == ["gpu", "gpu"]
    # two jobs: each gets half the rate; a rack in both gets the slower of its two
    assert profiles[RACKS.rack_ids[3]] == SmoothingProfile(0.0, 250.0)  # 2 kW/s / 2 jobs / 4 racks
    assert profiles[RACKS.rack_ids[0]] == SmoothingProfile(0.0, 250.0)  # min(250, 2 kW/s / 2 / 2)
    # the battery has room for one 80 kW step, not for two
    a, b = _start(), job_ramp.JobStep("j3", "start", RACKS.rack_ids, 100.0, None)
    _, _, began, _ = job_ramp.decide(98.0, [a, b], RACKS, 100_000, 0.0, 0.0, PARAMS, job_ramp.JobRampState())
    assert [r.lever for r in began] == ["battery", "gpu"]


def test_a_long_period_does_not_step_over_the_window_and_no_ramp_is_endless() -> None:
    slow = job_ramp.JobRampParams(rate_w_per_s=0.01, lead_s=5.0, settle_s=10.0, period_s=60.0)
    # a period that begins 50 s before the step (the lead is 5 s) still takes it
    profiles, _, began, _ = job_ramp.decide(50.0, [_start()], RACKS, 0.0, 0.0, 0.0, slow, job_ramp.JobRampState())
    assert len(began) == 1
    assert began[0].until_s <= 100.0 + job_ramp.MAX_RAMP_S + 10.0  # not 80 kW / 0.01 W/s
    assert all(p is not None and p.ramp_w_per_s >= job_ramp.MIN_RACK_RATE_W_PER_S for p in profiles.values())


def test_critical_rows_are_never_ramped() -> None:
    ids = ("row01-rack01", "row01-rack02", "row02-rack01", "row02-rack02")
    r = racks(4)
    r = type(r)(ids, ("row01", "row01", "row02", "row02"), r.power_w, r.cap_w, r.nameplate_w, r.age_s,
                r.stale_after_s)
    p = job_ramp.JobRampParams(2_000.0, critical_rows=frozenset({"row01"}))
    step = job_ramp.JobStep("j", "start", ids, 100.0, None)
    profiles, _, began, _ = job_ramp.decide(98.0, [step], r, 0.0, 0.0, 0.0, p, job_ramp.JobRampState())
    assert profiles == dict.fromkeys(ids[2:], SmoothingProfile(0.0, 1_000.0))  # the rate over the others
    only_critical = job_ramp.JobStep("k", "start", ids[:2], 100.0, None)
    profiles, reason, began, _ = job_ramp.decide(98.0, [only_critical], r, 0.0, 0.0, 0.0, p,
                                                 job_ramp.JobRampState())
    assert profiles == {} and reason is None and began[0].lever == "battery"


def test_two_levers_on_one_rack_keep_the_higher_floor_and_the_slower_ramp() -> None:
    a, b = SmoothingProfile(28_000, 4_000), SmoothingProfile(0.0, 500)
    assert job_ramp.combine(a, b) == SmoothingProfile(28_000, 500)
    assert job_ramp.combine(None, b) == b and job_ramp.combine(a, None) == a and job_ramp.combine(None, None) is None


# --- the announcements -----------------------------------------------------------------------------
IDS = tuple(f"row0{r}-rack0{k}" for r in (1, 2) for k in (1, 2))


def _payload(**fields: object) -> bytes:
    body: dict[str, object] = {"job": "llm-7", "event": "start", "racks": list(IDS[:2]), "at": 1_000.0, "seq": 1}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def test_an_announcement_round_trips_and_names_racks_or_whole_rows() -> None:
    a = sp.JobAnnouncement("llm-7", "stop", IDS[:2], 1_000.5, 50_000.0)
    assert sp.decode(sp.encode(a, 3), IDS, 40_000) == a
    rows = sp.decode(_payload(racks=None, rows=["row02"]), IDS, 40_000)
    assert rows.rack_ids == IDS[2:]


@pytest.mark.parametrize("fields, why", [
    ({"job": ""}, "job"), ({"job": "x" * 200}, "job"), ({"event": "pause"}, "event"),
    ({"racks": ["row09-rack01"]}, "unknown rack"), ({"racks": None, "rows": ["row09"]}, "unknown row"),
    ({"rows": ["row01"]}, "exactly one"), ({"racks": None}, "exactly one"), ({"racks": []}, "non-empty"),
    ({"racks": [1, 2]}, "non-empty"), ({"at": "soon"}, "at must"), ({"at": True}, "at must"),
    ({"at": 10**400}, "at must"), ({"step_w": -5}, "step_w"), ({"step_w": 1e9}, "step_w"),
    ({"step_w": 10**400}, "step_w"), ({"event": ["start"]}, "event"), ({"event": {"a": 1}}, "event"),
    ({"job": ["x"]}, "job"), ({"racks": [["row01-rack01"]]}, "non-empty"),
])
def test_a_malformed_announcement_is_refused_saying_why(fields: dict[str, object], why: str) -> None:
    with pytest.raises(MalformedData, match=why):
        sp.decode(_payload(**fields), IDS, 40_000)
    for raw in (b"{not json", b"[]", b"[" * 100_000, b" " * (sp.MAX_PAYLOAD_BYTES + 1)):
        with pytest.raises(MalformedData):
            sp.decode(raw, IDS, 40_000)


def test_the_book_moves_announcements_onto_the_controller_clock_and_counts_what_it_refuses() -> None:
    book = JobBook(IDS, 40_000)
    wall = 1_000.0  # the controller's monotonic clock reads 50 s when the wall reads 1000 s
    assert book.ingest(_payload(at=1_030.0), 50.0, wall)
    assert [s.at_s for s in book.steps(50.0)] == [80.0]
    assert book.ingest(_payload(at=1_040.0), 50.0, wall)  # the same job and event: replaced
    assert [s.at_s for s in book.steps(50.0)] == [90.0]
    assert not book.ingest(_payload(at=wall - 3_600), 50.0, wall)  # long past
    assert not book.ingest(_payload(at=wall + 10 * 86_400), 50.0, wall)  # a calendar, not a schedule
    assert not book.ingest(b"\xff\xfe", 50.0, wall)
    assert (book.received, book.malformed) == (2, 3)
    assert book.steps(90.0 + 3_601.0) == []  # kept an hour after its step


def test_a_flood_of_announcements_cannot_grow_the_book_nor_lock_out_the_next() -> None:
    book = JobBook(IDS, 40_000)
    for i in range(MAX_PENDING + 50):  # a day ahead, the furthest the book takes
        book.ingest(_payload(job=f"far{i}", at=1_000.0 + 86_000.0), 0.0, 1_000.0)
    assert len(book.steps(0.0)) == MAX_PENDING and book.refused_full == 50
    assert book.ingest(_payload(job="soon", at=1_010.0), 0.0, 1_000.0)  # a far one gives way
    assert len(book.steps(0.0)) == MAX_PENDING and "soon" in {s.job for s in book.steps(0.0)}


def test_the_simulated_scheduler_announces_what_the_plant_will_do() -> None:
    cfg = SimRackLoadConfig(model="training", racks_per_job=2, mean_job_s=100.0, mean_idle_s=50.0, ramp_s=1.0)
    ids = list(IDS)
    fleet = RackFleet(ids, [r.split("-")[0] for r in ids], 40_000, cfg, np.random.default_rng(1))
    seen: dict[tuple[str, str], float] = {}
    t = 0.0
    while t < 2_000.0:
        for a in fleet.upcoming(t, 10.0):
            seen.setdefault((a.job, a.event), a.at_s)
            assert a.rack_ids in (IDS[:2], IDS[2:])
        fleet.step(t, 0.5)
        t += 0.5
    starts = [k for k in seen if k[1] == "start"]
    assert len(starts) >= 4 and len({k[0] for k in starts}) == len(starts)  # each run has its own id


# --- the site ----------------------------------------------------------------------------------------
LIMIT_W = 320_000.0


def _site(announce: bool) -> tuple[int, int, int]:
    cfg = parse_config({
        "site": "jobs", "control": {"period_s": 1.0},
        "meter": {"port": 20000, "profile": "meter_v1", "average_s": 1.0},
        "bess_units": [{"id": "bess-1", "bms": {"port": 20001, "profile": "bms_v1"},
                        "pcs": {"port": 20002, "profile": "pcs_v1"}}],
        "racks": {"rows": 1, "racks_per_row": 16, "nameplate_w": 40_000.0},
        "policies": {"smoothing": {"rate_hz": 10}},
        "grid_connection": {"ramp_limit_w": LIMIT_W, "ramp_window_s": 60.0}})
    plant = PlantConfig.model_validate({
        "seed": 3, "pue": 1.0,
        "bess": [{"capacity_wh": 100e3, "rated_power_w": 50e3, "initial_soc": 0.5, "heartbeat_timeout_s": 0.0}],
        "racks": {"model": "training", "racks_per_job": 16, "swing_low_fraction": 0.9, "swing_high_fraction": 0.9,
                  "mean_job_s": 600.0, "mean_idle_s": 300.0, "ramp_s": 1.0, "checkpoint_every_s": 1e6}})
    r = simulate(cfg, plant, 2_400.0, announce_jobs=announce)
    per_s = round(1 / r.tick_s)

    def violations(w: np.ndarray) -> int:
        minutes = w[: w.size // (60 * per_s) * 60 * per_s].reshape(-1, 60 * per_s)
        return int((minutes.max(axis=1) - minutes.min(axis=1) > LIMIT_W).sum())
    return violations(r.grid_w), violations(r.load_w), r.job_ramps_gpu


def test_steep_job_steps_hold_the_ramp_limit_when_announced() -> None:
    """16 racks step by 480 kW within a second when a job starts or stops; the battery has 50 kW.
    Announced, the racks ramp and the grid never moves more than the limit in a minute;
    unannounced, each step goes through."""
    grid, load, ramped = _site(announce=True)
    assert load >= 3 and ramped >= 3
    assert grid == 0
    grid_unannounced, _, ramped = _site(announce=False)
    assert ramped == 0 and grid_unannounced >= 3
