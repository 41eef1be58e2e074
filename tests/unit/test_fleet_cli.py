"""`ems fleet` and the `ha:`/`fleet:` sections: a bad file names the field and exits 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ems.cli import main
from tests.conftest import site_dict


def test_ems_fleet_with_a_bad_field_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"nats_url": "nats://127.0.0.1:4222", "batch": 0, "http": {"port": "x"}}))
    assert main(["fleet", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "batch" in err and "http.port" in err and "Traceback" not in err


def test_ems_fleet_with_an_unknown_field_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"nats": "nats://127.0.0.1:4222"}))
    assert main(["fleet", "--config", str(path)]) == 2
    assert "nats" in capsys.readouterr().err


def test_check_config_names_a_bad_ha_or_fleet_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site_dict("mqtt://127.0.0.1:1883", ha={"guard_s": -1},
                                             fleet={"status_every_s": 0})))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "ha.guard_s" in err and "fleet.status_every_s" in err and "Traceback" not in err
