"""MQTT credentials and TLS: secrets only by reference, clear errors, one set of client kwargs."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drivers import rack_protocol as rp
from drivers.errors import MalformedData
from ems import mqtt_auth
from ems.config import MqttConfig, parse_config
from ems.model.errors import ConfigError
from sim_devices.config import SimulationConfig, simulator_passwords
from tests.conftest import site_dict

ROOT = Path(__file__).resolve().parents[2]


def _demo() -> dict:
    return yaml.safe_load((ROOT / "config" / "demo-site.yaml").read_text())


def test_literal_password_in_the_site_file_is_refused_naming_the_field() -> None:
    data = _demo()
    data["mqtt"].update(username="ems-controller", password="hunter2")
    with pytest.raises(ConfigError) as exc:
        parse_config(data, "site.yaml")
    msg = str(exc.value)
    assert "mqtt.password" in msg and "password_env" in msg and "password_file" in msg
    assert "hunter2" not in msg  # the secret is not echoed back


@pytest.mark.parametrize(("mqtt", "needle"), [
    ({"username": "u", "password_env": "A", "password_file": "/x"}, "not both"),
    ({"password_env": "A"}, "needs a username"),
    ({"password_env": "not a name"}, "password_env"),
    ({"url": "mqtt://h:1883", "tls": {"ca_file": "/ca.pem"}}, "mqtts://"),
    ({"url": "mqtts://h:8883", "tls": {"cert_file": "/c.pem"}}, "key_file"),
])
def test_inconsistent_mqtt_security_is_refused(mqtt: dict, needle: str) -> None:
    data = _demo()
    data["mqtt"].update(mqtt)
    with pytest.raises(ConfigError, match=needle):
        parse_config(data, "site.yaml")


def test_password_from_env_and_from_file(tmp_path: Path) -> None:
    cfg = MqttConfig(url="mqtt://127.0.0.1:1883", username="ems-controller", password_env="EMS_MQTT_PASSWORD")
    kw = mqtt_auth.client_kwargs(cfg, identifier="x", environ={"EMS_MQTT_PASSWORD": "s3cret"})
    assert (kw["username"], kw["password"], kw["tls_context"], kw["port"]) == ("ems-controller", "s3cret", None, 1883)
    with pytest.raises(mqtt_auth.MqttAuthError, match="EMS_MQTT_PASSWORD"):
        mqtt_auth.client_kwargs(cfg, identifier="x", environ={})

    secret = tmp_path / "mqtt-password"
    secret.write_text("from-file\n")
    cfg = MqttConfig(username="ems-controller", password_file=secret)
    assert mqtt_auth.client_kwargs(cfg, identifier="x")["password"] == "from-file"
    secret.write_text("\n")
    with pytest.raises(mqtt_auth.MqttAuthError, match="empty"):
        mqtt_auth.client_kwargs(cfg, identifier="x")
    with pytest.raises(mqtt_auth.MqttAuthError, match="cannot read"):
        mqtt_auth.client_kwargs(MqttConfig(username="u", password_file=tmp_path / "missing"), identifier="x")


def test_no_credentials_means_anonymous() -> None:
    kw = mqtt_auth.client_kwargs(MqttConfig(), identifier="ems-controller")
    assert kw["username"] is None and kw["password"] is None and kw["tls_context"] is None


def test_mqtts_url_builds_a_verifying_tls_context(tmp_path: Path) -> None:
    kw = mqtt_auth.client_kwargs(MqttConfig(url="mqtts://broker.example"), identifier="x")
    ctx = kw["tls_context"]
    assert isinstance(ctx, ssl.SSLContext) and kw["port"] == 8883
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(mqtt_auth.MqttAuthError, match=r"mqtt\.tls"):
        mqtt_auth.tls_context(MqttConfig(url="mqtts://h", tls={"ca_file": tmp_path / "no-ca.pem"}).tls)


def test_simulator_passwords_from_file_or_env(tmp_path: Path) -> None:
    f = tmp_path / "sim-passwords"
    f.write_text("# simulator\nrow01:a\nrow02:b\nsim-plant:c\n")
    sim = SimulationConfig(mqtt_passwords_file=f)
    assert simulator_passwords(sim, ["row01", "sim-plant"]) == {"row01": "a", "sim-plant": "c"}
    with pytest.raises(mqtt_auth.MqttAuthError, match="row03"):
        simulator_passwords(sim, ["row03"])
    sim = SimulationConfig(mqtt_password_env="SIM_PW")
    assert simulator_passwords(sim, ["row01"], {"SIM_PW": "z"}) == {"row01": "z"}
    assert simulator_passwords(SimulationConfig(), ["row01"]) is None


def test_rack_topics_sit_under_their_row() -> None:
    assert rp.telemetry_topic("ems/a", "row02-rack03") == "ems/a/rows/row02/racks/row02-rack03/telemetry"
    assert rp.cap_topic("ems/a", "row02-rack03") == "ems/a/rows/row02/racks/row02-rack03/cap"
    with pytest.raises(MalformedData, match="under row"):  # row02's agent speaking for a row03 rack
        rp.rack_id_from_topic("ems/a/rows/row02/racks/row03-rack01/telemetry")
    with pytest.raises(MalformedData):
        rp.rack_id_from_topic("ems/a/racks/row02-rack03/telemetry")  # the old layout


def test_run_with_a_missing_secret_exits_2_naming_the_field(tmp_path: Path) -> None:
    d = site_dict("mqtt://127.0.0.1:1")
    d["mqtt"].update(username="ems-controller", password_env="EMS_TEST_UNSET_MQTT_PASSWORD")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(d))
    env = {k: v for k, v in os.environ.items() if k != "EMS_TEST_UNSET_MQTT_PASSWORD"}
    r = subprocess.run([sys.executable, "-m", "ems.cli", "run", "--config", str(path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "mqtt.password_env" in r.stderr and "EMS_TEST_UNSET_MQTT_PASSWORD" in r.stderr
    assert "Traceback" not in r.stderr
