"""A careless command line ends in one clear line naming the option, exit 2, no traceback:
values that ran and printed nonsense (a zero load billed, a demo of no time), options that
were silently ignored and output paths that could not be written."""

from __future__ import annotations

from pathlib import Path

import pytest

from ems.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
LOAD = SHARED / "loads" / "sam_sample_load_8760h.csv"
URDB = SHARED / "tariffs" / "sam_urdbv7.json"
SITE = ROOT / "config" / "backtest-site.yaml"

# a real file, so a value is refused for itself and not for a file that cannot be read
BACKTEST = ["backtest", "--config", str(SITE), "--load", "l.csv"]
SIZE = ["size", "--config", str(SITE), "--load", "l.csv", "--energy-kwh", "1", "--power-kw", "1"]
FORECAST = ["forecast-eval", "--load", "l.csv"]


@pytest.mark.parametrize(("command", "option", "value"), [
    (BACKTEST, "--start", "notadate"),  # a ValueError traceback
    (BACKTEST, "--series-start", "bogus"),
    (SIZE, "--start", "bogus"),
    (FORECAST, "--series-start", "bogus"),  # "Invalid isoformat string", no option named
    (BACKTEST, "--load-scale", "0"),  # billed a site of no load
    (BACKTEST, "--load-scale", "-1"),
    (BACKTEST, "--load-scale", "nan"),  # "history contains NaN", exit 1
    (BACKTEST, "--pv-scale", "-1"),
    (SIZE, "--load-scale", "0"),
    (FORECAST, "--load-scale", "0"),  # scored nothing and printed empty figures
    (FORECAST, "--step-s", "0"),  # ZeroDivisionError
    (FORECAST, "--days", "-1"),  # scored the whole year
    (FORECAST, "--days", "nan"),
    (FORECAST, "--horizon-h", "30"),  # cut to 24 without a word
    (FORECAST, "--horizon-h", "0"),  # "n_steps must be >= 1"
    (["demo"], "--duration", "-1"),  # ran nothing and printed an empty summary
    (["demo"], "--speed", "nan"),  # a sqlite traceback
    (["demo"], "--speed", "0"),  # read as "the file's speed"
    (["run", "--config", "c.yaml"], "--speed", "0"),  # ZeroDivisionError in a background task
    (["broker"], "--port", "99999"),  # OverflowError traceback
    (["scan", "127.0.0.1:1"], "--unit", "999"),
    (["scan", "127.0.0.1:1"], "--timeout", "nan"),
])
def test_a_bad_value_names_its_option(command: list[str], option: str, value: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, option, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and option in err and "Traceback" not in err


@pytest.mark.parametrize(("option", "value"), [("--battery-sweep", "0.5,2"), ("--genset-plan", "perfect")])
def test_off_grid_options_on_a_grid_connected_site_are_refused(option: str, value: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """They were ignored: the run read as if the sweep or the genset plan had been made."""
    rc = main(["backtest", "--config", str(SITE), "--load", "l.csv", "--quiet", option, value])
    err = capsys.readouterr().err
    assert rc == 2 and option in err and "grid-connected" in err


def test_an_output_folder_that_cannot_be_made_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not LOAD.exists() or not URDB.exists():
        pytest.skip("shared data not present")
    taken = tmp_path / "a-file"
    taken.write_text("")
    rc = main(["backtest", "--config", str(SITE), "--load", str(LOAD), "--load-scale", "1000", "--tariff", str(URDB),
               "--days", "1", "--no-foresight", "--quiet", "--out", str(taken)])
    assert rc == 2 and f"--out {taken}: cannot write" in capsys.readouterr().err
    offgrid = ROOT / "config" / "offgrid-site.yaml"
    rc = main(["backtest", "--config", str(offgrid), "--load", str(LOAD), "--load-scale", "1000", "--days", "1",
               "--quiet", "--out", str(taken)])
    assert rc == 2 and f"--out {taken}: cannot write" in capsys.readouterr().err


def test_forecast_eval_names_a_json_folder_that_is_not_there_before_it_scores(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["forecast-eval", "--load", str(tmp_path / "absent.csv"), "--json", str(tmp_path / "no" / "s.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "--json" in err and "absent.csv" not in err


def test_scan_of_a_closed_port_says_so_in_one_line(tmp_path: Path) -> None:
    """pymodbus logged its own "Failed to connect ..." line before ours."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a loopback port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "ems.cli", "scan", f"127.0.0.1:{port}", "--timeout", "0.5"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "cannot reach the device" in done.stdout
    assert done.stderr == "", done.stderr
