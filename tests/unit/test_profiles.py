"""Every device profile loads, and the codec round-trips and refuses what it must; a profile
short of what its kind requires (config/device-kinds.yaml) is refused, naming what it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import MalformedData, ProfileError, RegisterRangeError, RegisterWriteForbidden
from drivers.profile import PROFILE_DIR, DeviceProfile, RegisterSpec, device_kinds, load_profile
from ems.model.readings import GensetState, PcsMode

ALL_PROFILES = sorted(PROFILE_DIR.glob("*.yaml"))


def test_there_are_profiles() -> None:
    assert {p.stem for p in ALL_PROFILES} >= {"bms_v1", "pcs_v1", "meter_v1"}


@pytest.mark.parametrize("path", ALL_PROFILES, ids=lambda p: p.stem)
def test_every_profile_loads_and_fits_one_read(path) -> None:
    profile = load_profile(path)
    assert profile.span <= 125
    assert len(profile.decode_block([0] * profile.span)) == len(profile.registers)


def test_profile_by_name_and_path_agree() -> None:
    assert load_profile("pcs_v1") == load_profile(PROFILE_DIR / "pcs_v1.yaml")


def _reg(**kw) -> RegisterSpec:
    base = {"name": "x", "address": 10, "type": "int32", "scale": 0.1, "unit": "kW", "access": "rw"}
    return RegisterSpec.model_validate({**base, **kw})


@given(st.integers(min_value=-2**31, max_value=2**31 - 1))
def test_int32_round_trip(raw: int) -> None:
    reg = _reg()
    assert reg.decode(reg.encode(raw * 0.1)) == pytest.approx(raw * 0.1)


@pytest.mark.parametrize(("typ", "value"), [("uint16", 65535), ("int16", -32768), ("uint32", 4e9),
                                            ("float32", 1.5)])
def test_other_types_round_trip(typ: str, value: float) -> None:
    reg = _reg(type=typ, scale=1.0)
    assert reg.decode(reg.encode(value)) == pytest.approx(value)


def test_value_that_does_not_fit_is_refused() -> None:
    with pytest.raises(RegisterRangeError):
        _reg(type="uint16", scale=1.0).encode(70000)
    with pytest.raises(RegisterRangeError):
        _reg(type="uint16", scale=1.0).encode(-1)


def test_write_checks() -> None:
    with pytest.raises(RegisterWriteForbidden):
        _reg(access="r").check_writable(1.0)
    with pytest.raises(RegisterRangeError):
        _reg(min=0.0, max=10.0).check_writable(11.0)
    with pytest.raises(RegisterRangeError):
        _reg().check_writable(float("nan"))
    _reg(min=0.0, max=10.0).check_writable(10.0)


def test_si_factor_converts_profile_units() -> None:
    assert _reg(unit="kW").si_factor == 1000.0
    assert _reg(unit="%").si_factor == 0.01
    assert _reg(unit="V").si_factor == 1.0


def test_overlapping_registers_rejected() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        DeviceProfile.model_validate({"name": "p", "kind": "pcs", "registers": [
            {"name": "a", "address": 10, "type": "int32", "unit": "W", "access": "r"},
            {"name": "b", "address": 11, "type": "int16", "unit": "W", "access": "r"}]})


def test_unknown_unit_rejected() -> None:
    with pytest.raises(ValueError, match="unit"):
        _reg(unit="furlongs")


def test_missing_profile_is_a_profile_error(tmp_path) -> None:
    with pytest.raises(ProfileError):
        load_profile(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: pcs\nregisters: []\n")
    with pytest.raises(ProfileError, match="registers"):
        load_profile(bad)


def test_register_map_docs_are_generated_from_the_profiles() -> None:
    from drivers.profile_docs import render_all

    doc = PROFILE_DIR.parent.parent / "docs" / "register-maps.md"
    assert doc.read_text() == render_all(), "run: python -m drivers.profile_docs > docs/register-maps.md"


# --- what a kind requires (config/device-kinds.yaml) ---------------------------------------

def _variant(tmp_path, stem: str, change) -> Path:
    """A copy of config/profiles/{stem}.yaml with `change(data)` applied, as a file."""
    data = yaml.safe_load((PROFILE_DIR / f"{stem}.yaml").read_text())
    change(data)
    path = tmp_path / f"{stem}_variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _register(data: dict, name: str) -> dict:
    return next(r for r in data["registers"] if r["name"] == name)


def _drop(name: str):
    return lambda data: data.update(registers=[r for r in data["registers"] if r["name"] != name])


def _set(name: str, **fields):
    return lambda data: _register(data, name).update(fields)


def test_the_kinds_name_the_models_enums() -> None:
    kinds = device_kinds().kinds
    for kind, register, model in (("pcs", "mode", PcsMode), ("pcs", "mode_command", PcsMode),
                                  ("genset", "state", GensetState)):
        assert kinds[kind].registers[register].enum == [m.value for m in model], (kind, register)


@pytest.mark.parametrize(("stem", "change", "named"), [
    ("pcs_v1", _drop("grid_status"), "kind pcs requires register 'grid_status'"),
    ("bms_v1", _drop("alarms"), "kind bms requires register 'alarms'"),
    ("meter_v1", _drop("frequency"), "kind meter requires register 'frequency'"),
    ("genset_v1", _drop("run_command"), "kind genset requires register 'run_command'"),
    ("bms_v1", _set("soc", unit="V"), "register 'soc' must be a fraction in '%', not 'V'"),
    ("pcs_v1", _set("active_power", unit="kWh"), "register 'active_power' must be a power"),
    ("pcs_v1", _set("active_power_setpoint", access="r"), "register 'active_power_setpoint' must be writable"),
    ("pcs_v1", _set("grid_status", enum={0: "down", 1: "up"}), "register 'grid_status' has no enum code named 'ok'"),
    ("pcs_v1", _set("mode", enum={0: "standby", 1: "grid_following", 2: "grid_forming", 3: "off"}),
     "register 'mode': enum name 'off' is unknown to kind pcs"),
    ("genset_v1", _set("state", unit="count", enum=None), "register 'state' must be an enum"),
    ("bms_v1", _set("alarms", bits={0: "over_temperature"}), "register 'alarms' has no bit named 'fault'"),
    ("pcs_v1", _set("fault", unit="count", bits=None), "register 'fault' must be a bitfield"),
    ("pcs_v1", lambda data: data.update(kind="inverter"), "kind 'inverter' is not one of"),
], ids=lambda x: x.split("'")[1] if isinstance(x, str) and "'" in x else None)  # the register named
def test_a_profile_short_of_its_kind_is_refused_naming_it(tmp_path, stem, change, named) -> None:
    path = _variant(tmp_path, stem, change)
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    message = str(exc.value)
    assert named in message and str(path) in message
    assert f"({load_profile(stem).name})" in message  # the profile's own name too


@pytest.mark.parametrize(("fields", "why"), [
    ({"unit": "kW", "bits": {0: "a"}}, "only a bitfield register"),
    ({"unit": "kW", "enum": {0: "a"}}, "names its codes in `enum`"),
    ({"unit": "enum"}, "names its codes in `enum`"),
    ({"unit": "bitfield", "type": "uint16", "bits": {16: "a"}}, "bit 16 does not fit a uint16"),
    ({"unit": "bitfield", "type": "uint16", "bits": {0: "a", 1: "a"}}, "bits name 'a' appears twice"),
    ({"unit": "enum", "type": "uint16", "enum": {0: "on", 1: "On"}}, "not lower_snake_case"),
    ({"unit": "bitfield", "type": "uint16", "scale": 0.1}, "integer type with scale 1"),
])
def test_enum_and_bit_names_are_checked(fields, why) -> None:
    with pytest.raises(ValueError, match=why):
        _reg(**{"scale": 1.0, **fields})


def test_enum_and_bit_names_both_ways() -> None:
    mode = load_profile("pcs_v1").register("mode_command")
    assert mode.enum_name(2.0) == "grid_forming" and mode.enum_code("grid_forming") == 2
    with pytest.raises(MalformedData, match="unknown code 7"):
        mode.enum_name(7.0)
    with pytest.raises(ProfileError, match="no enum code named 'islanded'"):
        mode.enum_code("islanded")
    with pytest.raises(RegisterRangeError, match="not one of the codes"):
        _reg(type="uint16", scale=1.0, unit="enum", enum={0: "stop", 5: "start"}, min=0, max=5).check_writable(3.0)
    alarms = load_profile("bms_v1").register("alarms")
    assert alarms.bits_value(["fault", "soc_low"]) == 0b10010
    assert alarms.bit_names(0b1000_0001_0010) == ("soc_low", "fault", "bit11")  # an unnamed bit is kept
    with pytest.raises(ProfileError, match="no bit named 'smoke'"):
        alarms.bits_value(["smoke"])


def test_the_simulator_refuses_a_profile_that_cannot_carry_the_plants_alarms(tmp_path) -> None:
    from sim_devices.registers import check_servable

    check_servable(load_profile("bms_v1"))
    profile = load_profile(_variant(tmp_path, "bms_v1", _set("alarms", bits={4: "fault"})))  # fine for a driver
    with pytest.raises(ProfileError, match="cannot serve the simulated bms: register 'alarms' has no bit named"):
        check_servable(profile)
