"""Every device profile loads, and the codec round-trips and refuses what it must."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import ProfileError, RegisterRangeError, RegisterWriteForbidden
from drivers.profile import PROFILE_DIR, DeviceProfile, RegisterSpec, load_profile

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
