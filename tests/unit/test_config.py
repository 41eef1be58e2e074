"""The site file: the example validates; a bad file names the field and exits 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ems.config import load_config, parse_config
from ems.model.errors import ConfigError
from sim_devices.config import parse_sim_config

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo-site.yaml"


def _demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def test_demo_site_validates() -> None:
    cfg = load_config(DEMO)
    assert len(cfg.bess_units) >= 2 and cfg.racks.count >= 32
    assert cfg.policies.peak_shaving is not None


@pytest.mark.parametrize(("path", "value", "field"), [
    (("control", "period_s"), -1, "control.period_s"),
    (("meter", "port"), 70000, "meter.port"),
    (("racks", "rows"), "four", "racks.rows"),
    (("policies", "peak_shaving", "recharge_below_w"), 2e6, "policies.peak_shaving"),
    (("policies", "battery", "soc_min"), 0.99, "policies.battery"),
    (("racks", "critical_rows"), ["row99"], "racks"),
    (("mqtt", "url"), "http://x", "mqtt.url"),
])
def test_bad_field_is_named(path, value, field) -> None:
    data = _demo()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as exc:
        parse_config(data, "site.yaml")
    assert field in str(exc.value)


def test_the_simulation_section_is_the_simulators_to_check() -> None:
    data = _demo()
    data["simulation"]["racks"]["model"] = "chaotic"
    parse_config(data, "site.yaml")  # the controller keeps it unparsed
    with pytest.raises(ConfigError, match=r"simulation\.racks\.model"):
        parse_sim_config(data, "site.yaml")
    data = _demo()
    data["simulation"]["bess"] = [{}, {}, {}]
    with pytest.raises(ConfigError, match="one per bess unit"):
        parse_sim_config(data, "site.yaml")


def test_non_finite_values_and_non_utf8_files_are_refused(tmp_path) -> None:
    for value in (float("inf"), float("nan")):
        data = _demo()
        data["policies"]["peak_shaving"]["grid_import_cap_w"] = value
        with pytest.raises(ConfigError, match=r"grid_import_cap_w: Input should be a finite number"):
            parse_config(data, "site.yaml")
    data = _demo()
    data["policies"]["peak_shaving"]["grid_import_cap_w"] = 1e308  # finite, but no site
    with pytest.raises(ConfigError, match=r"grid_import_cap_w: Input should be less than or equal to 1"):
        parse_config(data, "site.yaml")
    bad = tmp_path / "site.yaml"
    bad.write_bytes(b"site: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_unknown_field_rejected() -> None:
    data = _demo()
    data["control"]["perod_s"] = 1.0
    with pytest.raises(ConfigError, match=r"control\.perod_s"):
        parse_config(data, "site.yaml")


def test_duplicate_unit_ids_and_ports_rejected() -> None:
    data = _demo()
    data["bess_units"][1]["id"] = data["bess_units"][0]["id"]
    with pytest.raises(ConfigError, match=r"unique: \['bess-1'\]"):
        parse_config(data, "x")
    data = _demo()
    data["bess_units"][1]["pcs"]["port"] = data["meter"]["port"]
    # it said "two devices share ...": which two, in a file of a dozen?
    with pytest.raises(ConfigError, match=rf"meter and bess_units\.1\.pcs share host .*port {data['meter']['port']}"):
        parse_config(data, "x")


def test_more_genset_devices_are_checked_like_the_others() -> None:
    data = yaml.safe_load((ROOT / "config" / "offgrid-sim-site.yaml").read_text())
    data["gensets"] = [{"id": "gen-2", "port": 15130, "profile": "genset_v1"}]
    data["microgrid"]["gensets"].append({"id": "gen-2", "rated_power_w": 2_000_000})
    data["simulation"]["gensets"] = [{"rated_power_w": 2_000_000}]
    cfg = parse_config(data, "x")
    assert [g.id for g in cfg.gensets] == ["gen-2"] and len(parse_sim_config(data, "x").simulation.gensets) == 1
    clash = {**data, "gensets": [{"id": "gen-2", "port": data["genset"]["port"], "profile": "genset_v1"}]}
    with pytest.raises(ConfigError, match="share"):
        parse_config(clash, "x")
    twice = {**data, "gensets": data["gensets"] * 2}
    with pytest.raises(ConfigError, match="gensets ids must be unique"):
        parse_config(twice, "x")
    with pytest.raises(ConfigError, match=r"simulation\.gensets"):
        parse_sim_config({**data, "simulation": {**data["simulation"], "gensets": []}}, "x")
    with pytest.raises(ConfigError, match="shed_order"):
        parse_config({**data, "microgrid": {**data["microgrid"], "shed_order": ["row09"]}}, "x")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ems.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_check_config_ok() -> None:
    r = _cli("check-config", str(DEMO))
    assert r.returncode == 0 and "OK" in r.stdout


def test_check_config_bad_file_exits_2_without_traceback(tmp_path) -> None:
    data = _demo()
    data["racks"]["nameplate_w"] = -5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    r = _cli("check-config", str(bad))
    assert r.returncode == 2
    assert "racks.nameplate_w" in r.stderr and "greater than 0" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("content", ["site: [unclosed", "- just\n- a list\n", ""])
def test_not_a_site_file_exits_2(tmp_path, content) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    r = _cli("check-config", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(bad) in r.stderr


def test_missing_file_and_bad_profile(tmp_path) -> None:
    r = _cli("check-config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    data = _demo()
    data["meter"]["profile"] = "meter_v9"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    r = _cli("check-config", str(bad))
    assert r.returncode == 2 and "meter_v9" in r.stderr and "Traceback" not in r.stderr


def test_check_config_takes_a_backtest_file_and_an_agent_file(tmp_path: Path) -> None:
    """Each was refused as a site file that lacks meter, bess_units and racks, while `ems
    backtest`, `ems size` and `ems agent` take it."""
    if not (ROOT.parent / "shared" / "data" / "tariffs" / "sam_urdbv7.json").exists():
        pytest.skip("shared data not present (the backtest file's tariff)")
    for name, says in (("backtest-site.yaml", "OK (backtest file backtest-gpu-site: 2 battery units, "
                                              "4,000 kWh / 2,000 kW)"),
                       ("offgrid-site.yaml", "off_grid)"), ("agent-example.yaml", "OK (agent file of rack ")):
        r = _cli("check-config", str(ROOT / "config" / name))
        assert r.returncode == 0 and says in r.stdout, (name, r.stdout, r.stderr)
    data = yaml.safe_load((ROOT / "config" / "backtest-site.yaml").read_text())
    bad = tmp_path / "bt.yaml"
    bad.write_text(yaml.safe_dump({**data, "policies": {**data["policies"], "battery": {"soc_max": 1.5}}}))
    r = _cli("check-config", str(bad))
    assert r.returncode == 2 and "policies.battery.soc_max" in r.stderr and "bess_units" not in r.stderr
    arbitrage = {**data["policies"]["arbitrage"], "tariff": str(tmp_path / "none.json")}
    bad.write_text(yaml.safe_dump({**data, "policies": {**data["policies"], "arbitrage": arbitrage}}))
    r = _cli("check-config", str(bad))  # the tariff `ems backtest` would read
    assert r.returncode == 2 and str(bad) in r.stderr and "none.json" in r.stderr and "Traceback" not in r.stderr


def test_a_backtest_file_given_to_run_says_what_it_is() -> None:
    """It listed 'meter: Field required', 'bess_units: Field required', 'racks: Field required' and
    'battery_units: Extra inputs are not permitted' for a file that is fine where it belongs."""
    with pytest.raises(ConfigError, match=r"backtest-site\.yaml: a backtest file .*`ems backtest` and `ems size`"):
        load_config(ROOT / "config" / "backtest-site.yaml")
    r = _cli("run", "--config", str(ROOT / "config" / "offgrid-site.yaml"))
    assert r.returncode == 2 and "a backtest file" in r.stderr and "Field required" not in r.stderr


def test_run_with_bad_config_exits_2(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: x\n")
    r = _cli("run", "--config", str(bad))
    assert r.returncode == 2 and "meter" in r.stderr and "Traceback" not in r.stderr


def test_check_config_finds_a_missing_secret(tmp_path) -> None:
    """What `ems run` would fail on at start-up, check-config reports first (exit 2, the field)."""
    data = _demo()
    data["mqtt"].update({"username": "ems-controller", "password_env": "EMS_TEST_NO_SUCH_SECRET"})
    bad = tmp_path / "site.yaml"
    bad.write_text(yaml.safe_dump(data))
    r = _cli("check-config", str(bad))
    assert r.returncode == 2 and "mqtt.password_env" in r.stderr and "Traceback" not in r.stderr
    data["mqtt"].pop("password_env")
    data["mqtt"]["password_file"] = str(tmp_path / "missing-password")
    bad.write_text(yaml.safe_dump(data))
    r = _cli("check-config", str(bad))
    assert r.returncode == 2 and "missing-password" in r.stderr
    (tmp_path / "missing-password").write_text("s3cret\n")
    assert _cli("check-config", str(bad)).returncode == 0


def test_check_config_finds_an_unreadable_token_file(tmp_path) -> None:
    data = _demo()
    data["http"] = {"enabled": True, "token_file": str(tmp_path / "no-tokens")}
    bad = tmp_path / "site.yaml"
    bad.write_text(yaml.safe_dump(data))
    r = _cli("check-config", str(bad))
    assert r.returncode == 2 and "no-tokens" in r.stderr and "Traceback" not in r.stderr


def test_mqtt_url_override_cannot_silently_drop_tls(tmp_path) -> None:
    data = _demo()
    data["mqtt"].update({"url": "mqtts://127.0.0.1:8883", "tls": {"ca_file": str(tmp_path / "ca.pem")}})
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data))
    r = _cli("run", "--config", str(site), "--mqtt-url", "mqtt://127.0.0.1:1883")
    assert r.returncode == 2 and "--mqtt-url" in r.stderr and "mqtts" in r.stderr and "Traceback" not in r.stderr


def _profile_without(tmp_path: Path, stem: str, register: str) -> Path:
    data = yaml.safe_load((ROOT / "config" / "profiles" / f"{stem}.yaml").read_text())
    data["registers"] = [r for r in data["registers"] if r["name"] != register]
    path = tmp_path / f"{stem}_without_{register}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


COMMANDS = {"check-config": lambda f: ("check-config", f), "run": lambda f: ("run", "--config", f),
            "sim": lambda f: ("sim", "--config", f)}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_profile_in_the_wrong_slot_exits_2(tmp_path, command) -> None:
    """Found before anything connects, by every command that reads the site's devices alike."""
    data = _demo()
    data["bess_units"][0]["bms"]["profile"] = "pcs_v1"
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data))
    r = _cli(*COMMANDS[command](str(site)))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0  # one line
    assert "bess_units.0.bms" in r.stderr and "'pcs_v1' (ems-pcs-v1) is a pcs profile" in r.stderr
    assert "needs a bms profile" in r.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_a_profile_missing_a_required_register_exits_2(tmp_path, command) -> None:
    data = _demo()
    profile = _profile_without(tmp_path, "pcs_v1", "grid_status")
    data["bess_units"][1]["pcs"]["profile"] = str(profile)
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data))
    r = _cli(*COMMANDS[command](str(site)))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert "bess_units.1.pcs" in r.stderr and str(profile) in r.stderr and "(ems-pcs-v1)" in r.stderr
    assert "requires register 'grid_status'" in r.stderr


def test_check_site_profiles_names_each_slot(tmp_path) -> None:
    from ems.devices import check_site_profiles, device_slots

    cfg = load_config(DEMO)
    profiles = check_site_profiles(cfg, "site.yaml")
    assert [slot for slot, _, _ in device_slots(cfg)] == list(profiles)
    assert {p.kind for p in profiles.values()} == {"meter", "bms", "pcs"} | ({"genset"} if cfg.genset else set())
    data = _demo()
    data["meter"]["profile"] = "bms_v1"
    with pytest.raises(ConfigError, match=r"^site\.yaml: meter: profile 'bms_v1' \(ems-bms-v1\) is a bms profile"):
        check_site_profiles(parse_config(data, "site.yaml"), "site.yaml")


def test_a_predictor_fitted_on_too_little_history_is_refused() -> None:
    data = _demo()
    data["policies"]["smoothing"] = {"predict_s": 2.0, "predict_fit_s": 5.0}
    with pytest.raises(ConfigError, match=r"policies\.smoothing.*predict_fit_s"):
        parse_config(data, "site.yaml")
