"""SunSpec model blocks through pysunspec2's definitions: scale factors, not-implemented values
per type, malformed blocks, writes refused before sending, the server's fast image."""

from __future__ import annotations

import math

import pytest

from drivers.errors import MalformedData, NotSupported, RegisterRangeError, RegisterWriteForbidden
from drivers.sunspec_models import build_model_words, decode_model, encode_point, fast_model_words, model_def
from drivers.sunspec_profile import load_sunspec_profile
from sim_devices.sunspec_server import raw_values


def _words(model_id: int, **raw: object) -> list[int]:
    return build_model_words(model_id, raw)  # type: ignore[arg-type]


def test_scale_factors_apply_to_their_points() -> None:
    v = decode_model(701, _words(701, W=-12345, W_SF=2, Hz=50020, Hz_SF=-3, LLV=400, V_SF=0))
    assert v["W"] == pytest.approx(-1_234_500.0)
    assert v["Hz"] == pytest.approx(50.02)
    assert v["LLV"] == 400.0


@pytest.mark.parametrize(("model_id", "point", "sf", "pattern"), [
    (701, "W", ("W_SF", 0), 0x8000),  # int16
    (702, "WMaxRtg", ("W_SF", 0), 0xFFFF),  # uint16
    (701, "InvSt", None, 0xFFFF),  # enum16
    (704, "WSet", ("WSet_SF", 0), (0x8000, 0x0000)),  # int32
    (704, "WSetRvrtTms", None, (0xFFFF, 0xFFFF)),  # uint32
    (701, "Alrm", None, (0xFFFF, 0xFFFF)),  # bitfield32
    (203, "TotWhImp", ("TotWh_SF", 0), (0, 0)),  # acc32: 0 is "not implemented"
])
def test_not_implemented_patterns_are_missing(model_id: int, point: str, sf: tuple[str, int] | None,
                                              pattern: int | tuple[int, ...]) -> None:
    raw: dict[str, object] = {} if sf is None else {sf[0]: sf[1]}
    words = _words(model_id, **raw)
    pd = model_def(model_id).points[point]
    words[pd.offset : pd.offset + pd.size] = list(pattern) if isinstance(pattern, tuple) else [pattern]
    assert decode_model(model_id, words)[point] is None


def test_a_point_whose_scale_factor_is_not_implemented_is_missing() -> None:
    v = decode_model(701, _words(701, W=1000))  # W_SF left at 0x8000
    assert v["W"] is None and v["W_SF"] is None


@pytest.mark.parametrize("words", [
    [], [701], [702, 153] + [0] * 153,  # empty, no length, another model's id
])
def test_malformed_blocks_are_refused(words: list[int]) -> None:
    with pytest.raises(MalformedData):
        decode_model(701, words)


def test_a_short_block_is_refused() -> None:
    words = _words(704)
    with pytest.raises(MalformedData):
        decode_model(704, words[:30])


def test_a_scale_factor_beyond_ten_is_refused() -> None:
    with pytest.raises(MalformedData, match="scale factor"):
        decode_model(701, _words(701, W=5, W_SF=12))


def test_a_model_shorter_than_its_definition_reads_what_it_has() -> None:
    words = _words(713, WHRtg=4000, WH_SF=3, SoC=500, Pct_SF=-1)
    words[1] = 3  # an older revision: only WHRtg, WHAvail and SoC; its scale factors are beyond it
    v = decode_model(713, words[:5])
    assert v["WHRtg"] is None and v["SoH"] is None  # no scale factor, no value: never a number


def test_writes_are_refused_before_sending() -> None:
    assert encode_point(704, "WSet", -250_000.0, 0) == [0xFFFC, 0x2F70]
    assert encode_point(704, "WSet", 250_000.0, 3) == [0, 250]
    with pytest.raises(RegisterWriteForbidden):
        encode_point(701, "W", 1.0, 0)
    with pytest.raises(RegisterRangeError):
        encode_point(704, "WSetEna", 2, None)  # enum code the definition does not name
    with pytest.raises(RegisterRangeError):
        encode_point(704, "WSet", math.nan, 0)
    with pytest.raises(RegisterRangeError):
        encode_point(704, "WSetPct", 40_000.0, 0)  # does not fit an int16
    with pytest.raises(RegisterRangeError):
        encode_point(704, "WSetPct", -32768.0, 0)  # the int16 not-implemented pattern
    with pytest.raises(NotSupported):
        encode_point(704, "WSet", 1.0, None)  # its scale factor is not implemented
    with pytest.raises(NotSupported):
        encode_point(704, "NoSuchPoint", 1.0, 0)


def test_an_unknown_model_is_not_supported() -> None:
    with pytest.raises(NotSupported):
        model_def(64999)


@pytest.mark.parametrize("model_id", [1, 701, 702, 704, 713, 802, 803, 201, 202, 203, 204])
def test_the_servers_fast_image_is_pysunspec2s(model_id: int) -> None:
    md = model_def(model_id)
    values: dict[str, object] = {}
    for i, (name, pd) in enumerate(md.points.items()):
        if name in ("ID", "L") or pd.type in ("pad",) or name.startswith("NStr"):
            continue
        if pd.type == "sunssf":
            values[name] = -1
        elif pd.type == "string":
            values[name] = "x" * min(3, pd.size * 2)
        elif pd.type.startswith("enum"):
            values[name] = next(iter(pd.symbols), None)
        else:
            values[name] = i % 7 + 1
    raw = raw_values(model_id, values)  # type: ignore[arg-type]
    assert fast_model_words(model_id, raw) == build_model_words(model_id, raw)


@pytest.mark.parametrize("name", ["sunspec_pcs", "sunspec_pcs_fc06", "sunspec_pcs_accelerated", "sunspec_bms",
                                  "sunspec_meter", "sunspec_pv"])
def test_every_sunspec_profile_loads(name: str) -> None:
    assert load_sunspec_profile(name).name == name
