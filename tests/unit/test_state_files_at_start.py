"""`ems run` on a state directory whose files it cannot use: it exits non-zero with one line
naming the file and what is wrong (no traceback), and leaves the file as it found it."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
import yaml

from ems.cli import main
from ems.operator.overrides import OverrideError, read_file
from ems.state_store import StateStore
from tests.conftest import site_dict


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """`ems run` points structlog at this test's captured stderr; later tests must not write there."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _locked(state: Path) -> Callable[[], None]:
    StateStore(state / "state.db").close()
    holder = sqlite3.connect(state / "state.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # another process's lock (sqlite locks per connection)
    return holder.close


def _state_table_of_another_shape(state: Path) -> None:
    db = sqlite3.connect(state / "state.db")
    db.execute("CREATE TABLE state (name TEXT, blob BLOB)")
    db.commit()
    db.close()


def _events_table_of_another_shape(state: Path) -> None:
    db = sqlite3.connect(state / "events.db")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT)")
    db.commit()
    db.close()


@pytest.mark.parametrize(("name", "make", "says"), [
    ("state.db", _locked, "database is locked"),
    ("state.db", _state_table_of_another_shape, "no such column"),
    ("events.db", _events_table_of_another_shape, "no such column"),
    ("overrides.json", lambda s: (s / "overrides.json").write_bytes(b"\xff\xfe\x00\x01garbage"), "cannot be read"),
    ("overrides.json", lambda s: (s / "overrides.json").write_text("[" * 100_000), "nested"),
    ("overrides.json", lambda s: (s / "overrides.json").mkdir(), "not a regular file"),
    ("overrides.json", lambda s: os.mkfifo(s / "overrides.json"), "not a regular file"),  # hung the start
    ("overrides.json", lambda s: (s / "overrides.json").symlink_to("/dev/zero"), "not a regular file"),
    ("overrides.json", lambda s: (s / "overrides.json").write_bytes(b" " * (2 << 20)), "larger than"),
])
def test_ems_run_on_a_state_file_it_cannot_use_says_which_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, make: Callable[[Path], object],
        says: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    release = make(state)
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(site_dict("mqtt://127.0.0.1:1", state={"dir": str(state)},
                                             http={"enabled": False})))
    try:
        assert main(["run", "--config", str(site)]) == 1
    finally:
        if callable(release):
            release()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith(f"ems run: {state / name}: ") and says in err[0]
    assert not any(p.name.endswith((".corrupt-1", ".tmp")) for p in state.iterdir())  # left as it was


def test_a_state_dir_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "state").write_text("not a directory")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(site_dict("mqtt://127.0.0.1:1", state={"dir": str(tmp_path / "state")},
                                             http={"enabled": False})))
    assert main(["run", "--config", str(site)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "state") in err[0]


def test_an_override_file_nested_just_under_the_parser_limit_is_refused(tmp_path: Path) -> None:
    """Bounded as every other JSON ems reads from outside (ems/model/bounded_json.py): json.loads
    takes a list ~900 deep, a few frames from breaking whatever renders it next."""
    path = tmp_path / "overrides.json"
    path.write_text('{"version": 1, "params": ' + "[" * 900 + "]" * 900 + "}")
    with pytest.raises(OverrideError, match="nested deeper"):
        read_file(path)


def test_an_outbox_of_another_shape_is_named_not_a_traceback(tmp_path: Path) -> None:
    from ems.fleet.outbox import Outbox
    from ems.sqlite_db import StateFileUnavailable

    db = sqlite3.connect(tmp_path / "outbox.db")
    db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, payload BLOB)")
    db.commit()
    db.close()
    with pytest.raises(StateFileUnavailable, match=f"{tmp_path / 'outbox.db'}: no such column"):
        Outbox(tmp_path / "outbox.db", 10)
    assert Outbox(tmp_path / "fresh.db", 10).source  # a new one is made as before


def test_an_outbox_message_changed_on_disk_is_dropped_not_raised_at_every_send(tmp_path: Path) -> None:
    """`head` raised on a stored body that is not a JSON object: the fleet link's task ended, and
    with it the controller, at each start once the link was up."""
    from ems.fleet.outbox import Outbox

    box = Outbox(tmp_path / "outbox.db", 100)
    for n in range(4):
        box.append("events", float(n), {"n": n})
    box.close()
    db = sqlite3.connect(tmp_path / "outbox.db")
    with db:
        db.execute("UPDATE outbox SET body = '{\"n\": 1' WHERE seq = 2")
        db.execute("UPDATE outbox SET body = '[3]' WHERE seq = 4")
    db.close()
    box = Outbox(tmp_path / "outbox.db", 100)
    assert [p.body["n"] for p in box.head(10)] == [0, 2]
    assert box.unreadable == 2 and len(box) == 2 and [p.seq for p in box.head(10)] == [1, 3]
    box.close()


def test_a_link_planted_as_the_override_files_temporary_is_not_written_through(tmp_path: Path) -> None:
    """Whoever could write the state dir planted overrides.json.tmp -> any file: the controller
    (often root) overwrote that file with the override JSON and renamed the link over overrides.json."""
    from ems.operator.overrides import write_file

    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "overrides.json.tmp").symlink_to(victim)
    write_file(state / "overrides.json", {"params": {}})
    assert victim.read_text() == "precious\n"
    assert not (state / "overrides.json").is_symlink() and read_file(state / "overrides.json")["params"] == {}


def test_a_link_planted_as_a_feed_caches_temporary_is_not_written_through(tmp_path: Path) -> None:
    import numpy as np

    from ems.feeds.cache import FeedCache
    from ems.feeds.series import FeedSeries

    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    (tmp_path / "feeds").mkdir()
    from ems.state_file import temporary

    temporary(tmp_path / "feeds" / "entsoe.json").symlink_to(victim)  # where the cache writes before renaming
    cache = FeedCache(tmp_path / "feeds")
    cache.save("entsoe", FeedSeries(1.7e9, 3600.0, {"price": np.array([1.0, 2.0])}), 1.7e9)
    assert victim.read_text() == "precious\n" and cache.write_errors == 0
    assert not (tmp_path / "feeds" / "entsoe.json").is_symlink() and cache.load("entsoe") is not None


@pytest.mark.parametrize("make", [os.mkfifo, lambda p: p.symlink_to("/dev/zero")])
def test_a_feed_cache_that_is_no_regular_file_is_ignored_not_read_forever(tmp_path: Path,
                                                                          make: Callable[[Path], None]) -> None:
    """A FIFO hung the start in its read; /dev/zero (size 0 passes the size bound) never ended it."""
    from ems.feeds.cache import FeedCache

    make(tmp_path / "entsoe.json")
    assert FeedCache(tmp_path).load("entsoe") is None
