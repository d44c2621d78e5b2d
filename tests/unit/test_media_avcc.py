"""AVCDecoderConfigurationRecord and NAL unit framing: real vectors, errors, round trips,
and a decode by PyAV of what we build."""

from __future__ import annotations

from fractions import Fraction

import attrs
import av
import av.logging
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtmprelay.errors import MediaError
from rtmprelay.media.avcc import (
    NAL_AUD,
    NAL_FILLER,
    NAL_IDR,
    NAL_NON_IDR,
    NAL_PPS,
    NAL_SEI,
    NAL_SPS,
    AVCConfig,
    annexb_to_nal_units,
    build_avc_config,
    join_nal_units,
    nal_ref_idc,
    nal_unit_type,
    nal_units_to_annexb,
    parse_avc_config,
    split_nal_units,
)

# --- vectors: the avcC of ffmpeg 5.1's FLV muxer over libx264 (64x48 testsrc2)

HIGH_SPS = bytes.fromhex("6764000aacd9447b011000000300100000030140f1225960")
HIGH_PPS = bytes.fromhex("68ef8fcb")
#: High profile: 0xFF / 0xE1, one SPS, one PPS, then the fd f8 f8 00 trailer
#: (chroma_format 1, 8-bit luma and chroma, no SPS extensions).
HIGH = bytes.fromhex("0164000affe10018") + HIGH_SPS + b"\x01\x00\x04" + HIGH_PPS + bytes.fromhex("fdf8f800")
MAIN_SPS = bytes.fromhex("674d400aeca23d8088000003000800000300a078912cb0")
MAIN = bytes.fromhex("014d400affe10017") + MAIN_SPS + bytes.fromhex("01000468ce0fc8")
BASELINE = bytes.fromhex(
    "0142c00affe100156742c00ada11ec0440000003004000000503c489a801000468ce0fc8"
)
#: A P frame's AVCC data: one 34-byte slice (nal_ref_idc 2, type 1).
INTER_DATA = bytes.fromhex("00000022419e414210fffee83bb53229e4dfc8f8659154a642d2b4a6083781985799dfb1aa57")


def test_parse_high_profile_record() -> None:
    cfg = parse_avc_config(HIGH)
    assert cfg == AVCConfig(
        version=1,
        profile=100,
        profile_compat=0,
        level=10,
        nal_length_size=4,
        sps=(HIGH_SPS,),
        pps=(HIGH_PPS,),
        ext=bytes.fromhex("fdf8f800"),
    )
    assert build_avc_config(cfg) == HIGH


@pytest.mark.parametrize("record", [HIGH, MAIN, BASELINE])
def test_real_records_round_trip_byte_exactly(record: bytes) -> None:
    cfg = parse_avc_config(record)
    assert build_avc_config(cfg) == record
    assert cfg.profile == cfg.sps[0][1] and cfg.level == cfg.sps[0][3]


def test_baseline_has_no_trailer() -> None:
    cfg = parse_avc_config(BASELINE)
    assert (cfg.profile, cfg.profile_compat, cfg.ext) == (66, 0xC0, b"")


def test_reserved_bits_are_accepted_and_written_as_ones() -> None:
    zeroed = bytearray(MAIN)
    zeroed[4] &= 0x03
    zeroed[5] &= 0x1F
    cfg = parse_avc_config(bytes(zeroed))
    assert cfg == parse_avc_config(MAIN)
    assert build_avc_config(cfg) == MAIN


def test_length_sizes_and_several_parameter_sets() -> None:
    cfg = AVCConfig(1, 77, 0x40, 31, 2, [MAIN_SPS, b"\x67\x01"], [b"\x68\x01", b"\x68\x02", b"\x68\x03"])
    data = build_avc_config(cfg)
    assert data[4:6] == b"\xfd\xe2"
    assert parse_avc_config(data) == cfg
    assert parse_avc_config(build_avc_config(attrs.evolve(cfg, nal_length_size=1))).nal_length_size == 1


@pytest.mark.parametrize(
    ("data", "what", "where"),
    [
        (b"", "truncated configuration version", "avc config byte 0"),
        (HIGH[:4], "truncated NAL length size", "avc config byte 4"),
        (HIGH[:5], "truncated SPS count", "avc config byte 5"),
        (HIGH[:7], "truncated SPS", "avc config byte 6"),
        (HIGH[:20], "truncated SPS", "avc config byte 6"),
        (HIGH[:32], "truncated PPS count", "avc config byte 32"),
        (HIGH[:35], "truncated PPS", "avc config byte 33"),
        (b"\x00" + HIGH[1:], "unsupported AVC config version 0", "avc config byte 0"),
        (HIGH[:4] + b"\xfe" + HIGH[5:], "invalid NAL length size 3", "avc config byte 4"),
        (HIGH[:6] + b"\x00\x00" + HIGH[32:], "empty SPS 0", "avc config byte 6"),
        (HIGH[:8] + b"\x68" + HIGH[9:], "SPS 0 has NAL unit type 8", "avc config byte 8"),
        (HIGH[:35] + b"\x67" + HIGH[36:], "PPS 0 has NAL unit type 7", "avc config byte 35"),
    ],
)
def test_errors_name_field_and_byte(data: bytes, what: str, where: str) -> None:
    with pytest.raises(MediaError) as info:
        parse_avc_config(data)
    assert (info.value.what, info.value.where) == (what, where)


@pytest.mark.parametrize("record", [HIGH, MAIN, BASELINE])
def test_every_prefix_raises_media_error_until_the_pps_end(record: bytes) -> None:
    """The trailer after the PPS list is optional and kept raw: prefixes that cut
    only into it parse, with ``ext`` cut short."""
    pps_end = len(record) - len(parse_avc_config(record).ext)
    for n in range(len(record)):
        if n < pps_end:
            with pytest.raises(MediaError):
                parse_avc_config(record[:n])
        else:
            assert parse_avc_config(record[:n]).ext == record[pps_end:n]


def test_build_rejects_what_cannot_be_written() -> None:
    base = parse_avc_config(MAIN)
    for bad in (
        attrs.evolve(base, nal_length_size=3),
        attrs.evolve(base, sps=[MAIN_SPS] * 32),
        attrs.evolve(base, pps=[b"\x68"] * 256),
        attrs.evolve(base, sps=[b"\x67" * 0x10000]),
        attrs.evolve(base, profile=256),
    ):
        with pytest.raises(ValueError):
            build_avc_config(bad)


# --- NAL units


def test_split_real_frame() -> None:
    (nal,) = split_nal_units(INTER_DATA)
    assert len(nal) == 34
    assert (nal_unit_type(nal), nal_ref_idc(nal)) == (NAL_NON_IDR, 2)
    assert join_nal_units([nal]) == INTER_DATA


def test_nal_header_fields() -> None:
    assert (nal_unit_type(HIGH_SPS), nal_ref_idc(HIGH_SPS)) == (NAL_SPS, 3)
    assert (nal_unit_type(HIGH_PPS), nal_ref_idc(HIGH_PPS)) == (NAL_PPS, 3)
    assert (nal_unit_type(b"\x65"), nal_ref_idc(b"\x65")) == (NAL_IDR, 3)
    assert (nal_unit_type(b"\x06\x05"), nal_ref_idc(b"\x06")) == (NAL_SEI, 0)
    assert nal_unit_type(b"\x09\xf0") == NAL_AUD
    assert nal_unit_type(b"\x0c\xff") == NAL_FILLER
    for f in (nal_unit_type, nal_ref_idc):
        with pytest.raises(MediaError):
            f(b"")


def test_split_several_units_all_length_sizes() -> None:
    units = [b"\x09\xf0", b"\x06\x05\x01\x80", b"\x65\x88\x84", b""]
    assert split_nal_units(b"\x00\x00\x00\x02\x09\xf0\x00\x00\x00\x04\x06\x05\x01\x80") == units[:2]
    for size in (1, 2, 4):
        data = join_nal_units(units, size)
        assert len(data) == size * 4 + 9
        assert split_nal_units(data, size) == units
        assert split_nal_units(memoryview(data), size) == units
        assert split_nal_units(bytearray(data), length_size=size) == units
    assert split_nal_units(b"") == []


@pytest.mark.parametrize(
    ("data", "size", "what", "where"),
    [
        (b"\x00\x00\x00\x05\x41\x00", 4, "NAL unit length 5 overruns the data by 3 bytes", "NAL unit length at byte 0"),
        (b"\x00\x00\x00\x01\x41\x00\x00\x09", 4, "truncated NAL unit length (3 of 4 bytes)", "NAL unit length at byte 5"),
        (b"\x00\x01\x41\x00\x03\x41\x00", 2, "NAL unit length 3 overruns the data by 1 bytes", "NAL unit length at byte 3"),
        (b"\x00\x01\x41\x00", 2, "truncated NAL unit length (1 of 2 bytes)", "NAL unit length at byte 3"),
        (b"\x02\x41", 1, "NAL unit length 2 overruns the data by 1 bytes", "NAL unit length at byte 0"),
    ],
)
def test_split_errors_name_the_offset(data: bytes, size: int, what: str, where: str) -> None:
    with pytest.raises(MediaError) as info:
        split_nal_units(data, size)
    assert (info.value.what, info.value.where) == (what, where)


def test_bad_length_size_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        split_nal_units(INTER_DATA, 3)
    with pytest.raises(ValueError):
        join_nal_units([b"\x41"], 8)
    with pytest.raises(ValueError):
        join_nal_units([b"\x41" * 256], 1)


# --- Annex B


def test_annexb_split() -> None:
    stream = b"\x00\x00\x00\x01" + HIGH_SPS + b"\x00\x00\x01" + HIGH_PPS + b"\x00\x00\x00\x01\x65\x88\x00\x00"
    assert annexb_to_nal_units(stream) == [HIGH_SPS, HIGH_PPS, b"\x65\x88"]
    assert annexb_to_nal_units(b"\xff\x00\x00\x01\x09\xf0") == [b"\x09\xf0"]  # junk before
    assert annexb_to_nal_units(b"\x00\x00\x01\x00\x00\x01\x41") == [b"\x41"]  # empty unit
    assert annexb_to_nal_units(b"") == []
    assert nal_units_to_annexb([HIGH_SPS, b"\x41"]) == b"\x00\x00\x00\x01" + HIGH_SPS + b"\x00\x00\x00\x01\x41"
    with pytest.raises(MediaError):
        annexb_to_nal_units(b"\x65\x88\x84")


#: NAL units as an encoder writes them: a header byte, no 00 00 0x inside
#: (emulation prevention), not ending in 00.
_rbsp = st.binary(max_size=24).map(lambda b: b.replace(b"\x00\x00", b"\x00\x00\x03"))
nal_units = st.builds(lambda head, body: bytes((head,)) + body + b"\x80", st.integers(1, 0x7F), _rbsp)


@given(st.lists(nal_units, max_size=6))
def test_annexb_round_trip(units: list[bytes]) -> None:
    assert annexb_to_nal_units(nal_units_to_annexb(units)) == units


@given(st.lists(st.binary(max_size=300), max_size=6), st.sampled_from([1, 2, 4]))
def test_avcc_round_trip(units: list[bytes], size: int) -> None:
    if size == 1:
        units = [u[:255] for u in units]
    data = join_nal_units(units, size)
    assert split_nal_units(data, size) == units


@settings(max_examples=300)
@given(st.binary(max_size=40), st.sampled_from([1, 2, 4]))
def test_split_garbage_raises_only_media_error(data: bytes, size: int) -> None:
    try:
        units = split_nal_units(data, size)
    except MediaError:
        return
    assert join_nal_units(units, size) == data


def _parameter_sets(nal_type: int) -> st.SearchStrategy[bytes]:
    return st.builds(lambda ref, body: bytes((ref << 5 | nal_type,)) + body, st.integers(0, 3), st.binary(max_size=40))


configs = st.builds(
    AVCConfig,
    version=st.just(1),
    profile=st.integers(0, 255),
    profile_compat=st.integers(0, 255),
    level=st.integers(0, 255),
    nal_length_size=st.sampled_from([1, 2, 4]),
    sps=st.lists(_parameter_sets(NAL_SPS), max_size=31),
    pps=st.lists(_parameter_sets(NAL_PPS), max_size=5),
    ext=st.binary(max_size=8),
)


@given(configs)
def test_config_round_trip(cfg: AVCConfig) -> None:
    data = build_avc_config(cfg)
    assert parse_avc_config(data) == cfg
    assert build_avc_config(parse_avc_config(data)) == data


@settings(max_examples=500)
@given(st.binary(max_size=48))
def test_config_garbage_raises_only_media_error(data: bytes) -> None:
    try:
        cfg = parse_avc_config(data)
    except MediaError:
        return
    rebuilt = build_avc_config(cfg)
    assert rebuilt[:4] + rebuilt[6:] == data[:4] + data[6:]  # all but the reserved bits


@given(st.binary(max_size=30).map(lambda b: HIGH[:6] + b))
def test_config_garbage_after_a_real_header_raises_only_media_error(data: bytes) -> None:
    try:
        parse_avc_config(data)
    except MediaError:
        pass


# --- end to end: x264's Annex B output, reframed by us, decoded by ffmpeg


def test_what_we_build_decodes_in_ffmpeg() -> None:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 48, "yuv420p"
    encoder.time_base = Fraction(1, 10)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    packets = []
    for i in range(6):
        frame = av.VideoFrame(64, 48, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(i * 30 + 20) % 256]) * plane.buffer_size)
        frame.pts = i
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    access_units = [annexb_to_nal_units(bytes(p)) for p in packets]
    first = access_units[0]
    sps = [n for n in first if nal_unit_type(n) == NAL_SPS]
    pps = [n for n in first if nal_unit_type(n) == NAL_PPS]
    assert len(sps) == 1 and len(pps) == 1
    assert NAL_IDR in {nal_unit_type(n) for n in first}
    cfg = AVCConfig(1, sps[0][1], sps[0][2], sps[0][3], 4, sps, pps)
    record = build_avc_config(cfg)
    assert parse_avc_config(record) == cfg

    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = record
    frames = []
    with av.logging.Capture() as logs:
        for unit in access_units:
            kept = [n for n in unit if nal_unit_type(n) not in (NAL_SPS, NAL_PPS)]
            frames += decoder.decode(av.Packet(join_nal_units(kept)))
        frames += decoder.decode(None)
    assert [entry for entry in logs if entry[0] <= av.logging.WARNING] == []
    assert len(frames) == 6
    assert (frames[0].width, frames[0].height) == (64, 48)
