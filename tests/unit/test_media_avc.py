"""H.264 bitstream syntax: exp-Golomb and escaping round trips, and SPS, PPS and
slice headers of real x264 output checked field by field against ffmpeg's
trace_headers bitstream filter and ffprobe."""

from __future__ import annotations

import functools
import json
import random
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import attrs
import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtmprelay.errors import MediaError
from rtmprelay.media import avc
from rtmprelay.media.avc import BitReader, BitWriter


# --- x264 clips (shared with test_skipframe) -------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """A short x264 encode: ``params`` is the x264-params string."""

    params: str
    profile: str | None = None
    pix_fmt: str = "yuv420p"
    size: tuple[int, int] = (64, 64)
    frames: int = 20
    flicker: bool = False  # odd frames show another texture: the best reference is 2 back


CLIPS = {
    "cavlc-baseline": Clip(
        "keyint=8:scenecut=0:bframes=0:ref=1:cabac=0:weightp=0", profile="baseline"
    ),
    "cabac-main": Clip("keyint=8:scenecut=0:bframes=0:ref=1", profile="main"),
    "cavlc-high-weightp": Clip("keyint=8:scenecut=0:bframes=0:ref=1:cabac=0:weightp=2"),
    "cabac-high-ref3-weightp": Clip("keyint=8:scenecut=0:bframes=0:ref=3:weightp=2", size=(96, 80)),
    "cabac-320x240": Clip("keyint=8:scenecut=0:bframes=0:ref=1", size=(320, 240), frames=12),
    "cavlc-320x240": Clip(
        "keyint=8:scenecut=0:bframes=0:ref=1:cabac=0", size=(320, 240), frames=12
    ),
    "cabac-high-ref3": Clip("keyint=8:scenecut=0:bframes=0:ref=3:weightp=0", flicker=True),
    "cabac-high-ref4-weightp-flicker": Clip(
        "keyint=10:scenecut=0:bframes=0:ref=4:weightp=2", flicker=True, size=(80, 64)
    ),
    "cavlc-high-ref3-weightp": Clip(
        "keyint=10:scenecut=0:bframes=0:ref=3:cabac=0:weightp=2", flicker=True
    ),
    "cabac-slices": Clip("keyint=8:bframes=0:ref=2:slices=3", size=(64, 96)),
    "cabac-qp8": Clip("keyint=8:scenecut=0:bframes=0:ref=1:qp=8"),
    "cavlc-qp8": Clip("keyint=8:scenecut=0:bframes=0:ref=1:qp=8:cabac=0"),
    "cabac-qp49": Clip("keyint=8:scenecut=0:bframes=0:ref=1:qp=49"),
    "cabac-cropped": Clip("keyint=8:scenecut=0:bframes=0:ref=1", size=(66, 50)),
    "cabac-444-lossless": Clip("keyint=8:scenecut=0:bframes=0:ref=1:qp=0", pix_fmt="yuv444p"),
    "cabac-422-10bit": Clip("keyint=8:scenecut=0:bframes=0:ref=2", pix_fmt="yuv422p10le"),
    "cavlc-gray-weightp": Clip(
        "keyint=8:scenecut=0:bframes=0:ref=1:cabac=0:weightp=2", pix_fmt="gray"
    ),
    "intra-refresh": Clip("keyint=6:scenecut=0:bframes=0:ref=1:intra-refresh=1", frames=24),
    "vui-hrd-cqm": Clip(
        "keyint=8:bframes=0:ref=1:sar=4/3:colorprim=bt709:transfer=bt709:colormatrix=bt709"
        ":nal-hrd=vbr:vbv-bufsize=500:vbv-maxrate=400"
        ":cqm4iy=6,12,16,20,12,16,20,24,16,20,24,28,20,24,28,32"
    ),
    "bframes": Clip("keyint=12:scenecut=0:bframes=2:ref=3"),
    "fake-interlaced": Clip("keyint=8:scenecut=0:bframes=0:ref=1:fake-interlaced=1"),
}


def _textures(clip: Clip) -> list[list[list[bytes]]]:
    """Per texture, per plane, per row: a noisy gradient wider than the picture
    by the distance it travels (2 pixels a frame)."""
    width, height = clip.size
    wide = width + 2 * clip.frames
    rnd = random.Random(7)
    textures = []
    for texture in range(2 if clip.flicker else 1):
        planes = []
        for index in range(3):
            rows = []
            for y in range(height):
                noise = rnd.randbytes(wide)
                base = y * 2 + texture * 97
                row = ((x * (3 + index) + base + (n & 31)) & 0xFF for x, n in enumerate(noise))
                rows.append(bytes(row))
            planes.append(rows)
        textures.append(planes)
    return textures


def _picture(clip: Clip, t: int, textures):
    """Frame t: the texture moved right by 2 pixels a frame (odd frames of a
    flicker clip show the other texture), so every frame differs from the last
    and motion compensation has real work to do."""
    width, height = clip.size
    start = 2 * (clip.frames - t)
    frame = av.VideoFrame(width, height, "yuv444p")
    planes = textures[t % len(textures)]
    for plane, rows in zip(frame.planes, planes):
        pad = b"\x00" * (plane.line_size - width)
        plane.update(b"".join(row[start : start + width] + pad for row in rows))
    return frame if clip.pix_fmt == "yuv444p" else frame.reformat(format=clip.pix_fmt)


@functools.lru_cache(maxsize=None)
def x264_packets(clip: Clip) -> tuple[bytes, ...]:
    """The encoded packets (Annex B, one access unit each) in decoding order."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = clip.size
    codec.pix_fmt = clip.pix_fmt
    codec.time_base = Fraction(1, 30)
    codec.framerate = Fraction(30)
    options = {"x264-params": clip.params, "preset": "veryfast"}
    if clip.profile:
        options["profile"] = clip.profile
    codec.options = options
    textures = _textures(clip)
    packets = []
    for t in range(clip.frames):
        frame = _picture(clip, t, textures)
        frame.pts = t
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return tuple(packets)


def split_annexb(data: bytes) -> list[bytes]:
    """Raw NAL units of an Annex B byte stream."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", data)]
    nals = []
    for index, start in enumerate(starts):
        end = starts[index + 1] - 3 if index + 1 < len(starts) else len(data)
        nals.append(data[start:end].rstrip(b"\x00") if index + 1 < len(starts) else data[start:end])
    return nals


def annexb(access_units) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + nal for au in access_units for nal in au)


def access_units(clip: Clip) -> list[list[bytes]]:
    return [split_annexb(packet) for packet in x264_packets(clip)]


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


# --- ffmpeg as the oracle -------------------------------------------------------------------------

_TRACE_FIELD = re.compile(r"\] (\d+)\s+(\S+)\s+([01]+) = (-?\d+)$")


def trace_headers(path: Path) -> list[list[tuple[int, str, str, int]]]:
    """Per NAL unit, in stream order: (bit position, name, bits, value) as
    ffmpeg's trace_headers bitstream filter reads them."""
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "trace", "-i", str(path),
         "-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    records: list[list[tuple[int, str, str, int]]] = []
    in_packets = False
    for line in result.stderr.splitlines():
        if "trace_headers" not in line:
            continue
        if "] Packet: " in line:
            in_packets = True
            continue
        match = _TRACE_FIELD.search(line)
        if not in_packets or not match:
            continue
        position, name, bits, value = int(match[1]), match[2], match[3], int(match[4])
        if position == 0 and name == "forbidden_zero_bit":
            records.append([])
        records[-1].append((position, name, bits, value))
    return records


def ffprobe_stream(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)["streams"][0]


@dataclass
class Parsed:
    sps: dict
    pps: dict
    units: list  # (nal, parsed value or None, trace record)


def parse_clip(clip: Clip, tmp_path: Path) -> tuple[Parsed, Path]:
    path = tmp_path / "clip.h264"
    aus = access_units(clip)
    path.write_bytes(annexb(aus))
    records = trace_headers(path)
    nals = [nal for au in aus for nal in au]
    assert len(records) == len(nals)
    sps_by_id: dict = {}
    pps_by_id: dict = {}
    units = []
    for nal, record in zip(nals, records):
        kind = nal_type(nal)
        value = None
        if kind == avc.NAL_SPS:
            value = avc.parse_sps(nal)
            sps_by_id[value.seq_parameter_set_id] = value
        elif kind == avc.NAL_PPS:
            value = avc.parse_pps(nal, sps_by_id)
            pps_by_id[value.pic_parameter_set_id] = value
        elif kind in (avc.NAL_SLICE, avc.NAL_IDR_SLICE):
            value = avc.parse_slice_header(nal, sps_by_id, pps_by_id)
        units.append((nal, value, record))
    return Parsed(sps_by_id, pps_by_id, units), path


_RENAMED = {"gaps_in_frame_num_allowed_flag": "gaps_in_frame_num_value_allowed_flag"}
_LIST_FIELDS = {
    "modification_of_pic_nums_idc",
    "abs_diff_pic_num_minus1",
    "long_term_pic_num",
    "memory_management_control_operation",
    "difference_of_pic_nums_minus1",
    "long_term_frame_idx",
    "max_long_term_frame_idx_plus1",
}


def check_scalars(value, record) -> int:
    """Every scalar field ffmpeg traced that our value has by the same name agrees."""
    checked = 0
    for _, name, _, traced in record:
        name = _RENAMED.get(name, name)
        if "[" in name or name in _LIST_FIELDS or not hasattr(value, name):
            continue
        ours = getattr(value, name)
        if isinstance(ours, (bool, int)):
            assert int(ours) == traced, name
            checked += 1
    return checked


def traced(record, name) -> list[int]:
    return [value for _, field, _, value in record if field.split("[")[0] == name]


def header_end(record) -> int:
    """Bit (from the NAL header) where ffmpeg's slice header ends."""
    fields = [(pos, bits) for pos, name, bits, _ in record if name != "cabac_alignment_one_bit"]
    position, bits = fields[-1]
    return position + len(bits)


# --- bits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "bits"),
    [(0, "1"), (1, "010"), (2, "011"), (3, "00100"), (6, "00111"), (7, "0001000")],
)
def test_ue_codes(value, bits):
    w = BitWriter().ue(value)
    assert w.position == len(bits)
    r = BitReader(w.align(0).bytes())
    assert "".join(str(r.u(1)) for _ in bits) == bits


@pytest.mark.parametrize(("value", "code"), [(0, 0), (1, 1), (-1, 2), (2, 3), (-2, 4), (3, 5)])
def test_se_mapping(value, code):
    a = BitWriter().se(value).align(0).bytes()
    b = BitWriter().ue(code).align(0).bytes()
    assert a == b


_FIELD = st.one_of(
    st.tuples(st.just("u"), st.integers(1, 40)).flatmap(
        lambda t: st.tuples(st.just(t[0]), st.just(t[1]), st.integers(0, 2 ** t[1] - 1))
    ),
    st.tuples(st.just("ue"), st.just(0), st.integers(0, 2**32 - 2)),
    st.tuples(st.just("se"), st.just(0), st.integers(-(2**31) + 1, 2**31 - 1)),
)


@given(st.lists(_FIELD, max_size=40))
def test_writer_reader_round_trip(fields):
    w = BitWriter()
    for kind, width, value in fields:
        if kind == "u":
            w.u(width, value)
        else:
            getattr(w, kind)(value)
    end = w.position
    w.rbsp_trailing_bits()
    r = BitReader(w.bytes())
    for kind, width, value in fields:
        assert (r.u(width) if kind == "u" else getattr(r, kind)()) == value
    assert r.position == end
    assert not r.more_rbsp_data()
    r.rbsp_trailing_bits()


@given(st.binary(max_size=300), st.integers(0, 2))
def test_escape_round_trip(data, cabac_zero_words):
    rbsp = data + b"\x80" + b"\x00\x00" * cabac_zero_words  # an RBSP ends with its stop bit
    escaped = avc.escape_rbsp(rbsp)
    assert avc.unescape_rbsp(escaped) == rbsp
    # no start code prefix and no 00 00 0x (x <= 2) left inside the NAL unit
    assert not re.search(b"\x00\x00[\x00-\x02]", escaped)
    assert not escaped.endswith(b"\x00")


@given(st.lists(st.sampled_from([b"\x00", b"\x01", b"\x02", b"\x03", b"\xff"]), max_size=60))
def test_escape_round_trip_zero_heavy(parts):
    rbsp = b"".join(parts) + b"\x80"
    escaped = avc.escape_rbsp(rbsp)
    assert avc.unescape_rbsp(escaped) == rbsp
    assert not re.search(b"\x00\x00[\x00-\x02]", escaped)
    # every 00 00 03 in the escaped data is an emulation prevention byte
    assert len(escaped) - len(rbsp) == escaped.count(b"\x00\x00\x03")


def test_escape_vectors():
    assert avc.escape_rbsp(b"\x00\x00\x00\x00\x80") == b"\x00\x00\x03\x00\x00\x80"
    assert avc.escape_rbsp(b"\x00\x00\x00\x00\x01") == b"\x00\x00\x03\x00\x00\x03\x01"
    assert avc.escape_rbsp(b"\x00\x00\x01") == b"\x00\x00\x03\x01"
    assert avc.escape_rbsp(b"\x00\x00\x04") == b"\x00\x00\x04"
    assert avc.escape_rbsp(b"\x12\x00\x00") == b"\x12\x00\x00\x03"  # cabac_zero_word at the end
    assert avc.unescape_rbsp(b"\x00\x00\x03\x00\x00\x03\x01") == b"\x00\x00\x00\x00\x01"


def test_reader_errors_name_field_and_bit():
    r = BitReader(b"\xff", "SPS")
    r.u(5, "a")
    with pytest.raises(MediaError) as info:
        r.u(8, "level_idc")
    assert info.value.what == "truncated SPS: need 8 bits for level_idc, 3 left"
    assert info.value.where == "SPS bit 5"
    with pytest.raises(MediaError, match="exp-Golomb code longer than 32 bits") as info:
        BitReader(b"\x00" * 8, "slice header").ue("frame_num")
    with pytest.raises(MediaError, match="truncated slice header") as info:
        BitReader(b"\x00\x01", "slice header").ue("first_mb_in_slice")
    assert info.value.where == "slice header bit 0"


def test_more_rbsp_data():
    r = BitReader(b"\xa0\x00")  # 1, 0, then the stop bit at bit 2
    assert r.more_rbsp_data()
    r.u(2)
    assert not r.more_rbsp_data()
    assert not BitReader(b"").more_rbsp_data()


def test_writer_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError):
        BitWriter().u(3, 8)
    with pytest.raises(ValueError):
        BitWriter().ue(-1)
    with pytest.raises(ValueError):
        BitWriter().u(3, 1).bytes()


# --- SPS / PPS / slice headers of x264 output ----------------------------------------------

# (profile_idc, entropy_coding_mode_flag, pic_order_cnt_type, max_num_ref_frames, chroma_format_idc,
#  bit_depth_luma_minus8, width, height)
EXPECTED = {
    "cavlc-baseline": (66, False, 2, 1, 1, 0, 64, 64),
    "cabac-main": (77, True, 2, 1, 1, 0, 64, 64),
    "cavlc-high-weightp": (100, False, 2, 1, 1, 0, 64, 64),
    "cabac-high-ref3-weightp": (100, True, 2, 3, 1, 0, 96, 80),
    "cabac-high-ref3": (100, True, 2, 3, 1, 0, 64, 64),
    "cabac-slices": (100, True, 2, 2, 1, 0, 64, 96),
    "cabac-320x240": (100, True, 2, 1, 1, 0, 320, 240),
    "cabac-cropped": (100, True, 2, 1, 1, 0, 66, 50),
    "cabac-444-lossless": (244, True, 2, 1, 3, 0, 64, 64),
    "cabac-422-10bit": (122, True, 2, 2, 2, 2, 64, 64),
    "cavlc-gray-weightp": (100, False, 2, 1, 0, 0, 64, 64),
    "vui-hrd-cqm": (100, True, 2, 1, 1, 0, 64, 64),
    "bframes": (100, True, 0, 4, 1, 0, 64, 64),
    "fake-interlaced": (100, True, 2, 1, 1, 0, 64, 64),
}

_PROFILE_NAMES = {
    "Baseline": 66, "Constrained Baseline": 66, "Main": 77, "High": 100,
    "High 10": 110, "High 4:2:2": 122, "High 4:4:4 Predictive": 244,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_sets_match_expectations_ffprobe_and_trace(name, tmp_path):
    clip = CLIPS[name]
    parsed, path = parse_clip(clip, tmp_path)
    (sps,) = parsed.sps.values()
    (pps,) = parsed.pps.values()
    profile, cabac, poc_type, refs, chroma, depth, width, height = EXPECTED[name]
    assert (sps.profile_idc, pps.entropy_coding_mode_flag) == (profile, cabac)
    assert (sps.pic_order_cnt_type, sps.max_num_ref_frames) == (poc_type, refs)
    assert (sps.chroma_format_idc, sps.bit_depth_luma_minus8) == (chroma, depth)
    assert (sps.width, sps.height) == (width, height) == clip.size
    assert sps.frame_rate == 30
    assert sps.max_num_reorder_frames == (2 if name == "bframes" else 0)

    probe = ffprobe_stream(path)
    assert (probe["width"], probe["height"]) == (sps.width, sps.height)
    assert _PROFILE_NAMES[probe["profile"]] == sps.profile_idc
    assert probe["level"] == sps.level_idc
    assert probe["has_b_frames"] == sps.max_num_reorder_frames
    # ffmpeg decodes 4:0:0 into yuv420p with grey chroma
    assert probe["pix_fmt"] == clip.pix_fmt.replace("gray", "yuv420p")
    assert Fraction(probe["r_frame_rate"]) == sps.frame_rate

    for nal, value, record in parsed.units:
        if isinstance(value, avc.SPS):
            assert check_scalars(value, record) >= 15
            flags = traced(record, "constraint_set0_flag") + traced(record, "constraint_set1_flag")
            flags += traced(record, "constraint_set2_flag") + traced(record, "constraint_set3_flag")
            flags += traced(record, "constraint_set4_flag") + traced(record, "constraint_set5_flag")
            assert value.constraint_set_flags >> 2 == int("".join(map(str, flags)), 2)
            sides = ("left", "right", "top", "bottom")
            crop = [traced(record, f"frame_crop_{side}_offset") for side in sides]
            assert value.frame_cropping == (tuple(c[0] for c in crop) if crop[0] else None)
        elif isinstance(value, avc.PPS):
            assert check_scalars(value, record) >= 15


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_slice_headers_match_trace_and_round_trip(name, tmp_path):
    parsed, _ = parse_clip(CLIPS[name], tmp_path)
    slices = [unit for unit in parsed.units if isinstance(unit[1], avc.SliceHeader)]
    assert len(slices) >= CLIPS[name].frames
    for nal, header, record in slices:
        assert check_scalars(header, record) >= 6
        # the header ends where ffmpeg's does: every field was read, none skipped
        assert header.slice_data_bit + 8 == header_end(record)
        (frame_num_at,) = [pos for pos, field, _, _ in record if field == "frame_num"]
        assert header.frame_num_bit + 8 == frame_num_at
        lsb_at = [pos for pos, field, _, _ in record if field == "pic_order_cnt_lsb"]
        if lsb_at:
            assert [header.pic_order_cnt_lsb_bit + 8] == lsb_at
        else:
            assert header.pic_order_cnt_lsb_bit is None
        expected = []
        for flag, ops in (
            (header.ref_pic_list_modification_flag_l0, header.ref_pic_list_modification_l0),
            (header.ref_pic_list_modification_flag_l1, header.ref_pic_list_modification_l1),
        ):
            expected += [value for op in ops for value in op] + [3] if flag else []
        names = ("modification_of_pic_nums_idc", "abs_diff_pic_num_minus1", "long_term_pic_num")
        assert [v for _, field, _, v in record if field in names] == expected
        if header.pred_weight_table is not None:
            table = header.pred_weight_table
            assert traced(record, "luma_weight_l0_flag") == [w.luma is not None for w in table.l0]
            assert traced(record, "luma_weight_l0") == [w.luma[0] for w in table.l0 if w.luma]
        operations = [o.memory_management_control_operation for o in header.memory_management_operations]
        end = [0] if header.adaptive_ref_pic_marking_mode_flag else []
        assert traced(record, "memory_management_control_operation") == operations + end
        # written back, the header is bit-identical
        pps = parsed.pps[header.pic_parameter_set_id]
        sps = parsed.sps[pps.seq_parameter_set_id]
        assert avc.replace_slice_header(nal, header, header, sps, pps) == nal


def test_frame_numbers_and_order_counts_of_a_b_frame_stream(tmp_path):
    parsed, _ = parse_clip(CLIPS["bframes"], tmp_path)
    headers = [value for _, value, _ in parsed.units if isinstance(value, avc.SliceHeader)]
    assert any(h.is_b for h in headers) and any(h.is_p for h in headers) and headers[0].is_i
    assert headers[0].idr and headers[0].idr_pic_id is not None
    assert all(h.pic_order_cnt_lsb is not None for h in headers)
    assert any(not h.is_reference for h in headers)


@pytest.mark.parametrize("name", ["cavlc-high-ref3-weightp", "cabac-high-ref3-weightp"])
def test_replace_slice_header_moves_cavlc_data_and_realigns_cabac(name, tmp_path):
    parsed, _ = parse_clip(CLIPS[name], tmp_path)
    for nal, header, _ in parsed.units:
        if not isinstance(header, avc.SliceHeader) or not header.is_p:
            continue
        pps = parsed.pps[header.pic_parameter_set_id]
        sps = parsed.sps[pps.seq_parameter_set_id]
        # a longer header (SliceQPY 0 takes a longer slice_qp_delta code) and back again
        qp0 = -26 - pps.pic_init_qp_minus26
        longer = attrs.evolve(header, slice_qp_delta=qp0)
        moved = avc.replace_slice_header(nal, header, longer, sps, pps)
        reparsed = avc.parse_slice_header(moved, parsed.sps, parsed.pps)
        assert reparsed.slice_qp_delta == qp0
        assert reparsed.slice_data_bit > header.slice_data_bit
        assert avc.replace_slice_header(moved, reparsed, header, sps, pps) == nal


def test_patch_slice_numbers_in_place(tmp_path):
    parsed, _ = parse_clip(CLIPS["cabac-main"], tmp_path)
    for nal, header, _ in parsed.units:
        if isinstance(header, avc.SliceHeader):
            pps = parsed.pps[header.pic_parameter_set_id]
            sps = parsed.sps[pps.seq_parameter_set_id]
            new_num = (header.frame_num + 5) % sps.max_frame_num
            patched = avc.patch_slice_numbers(nal, header, sps, frame_num=new_num)
            again = avc.parse_slice_header(patched, parsed.sps, parsed.pps)
            assert again == attrs.evolve(header, frame_num=new_num)
            assert avc.unescape_rbsp(patched[1:])[4:] == avc.unescape_rbsp(nal[1:])[4:]


# --- hand-made parameter sets ----------------------------------------------------------------


def _sps_with_scaling_lists() -> bytes:
    w = BitWriter()
    w.u(8, 100).u(8, 0).u(8, 30).ue(3)  # High, level 3, id 3
    w.ue(1).ue(0).ue(0).u(1, 0)  # 4:2:0, 8 bit, no bypass
    w.u(1, 1)  # seq_scaling_matrix_present_flag
    for i in range(8):
        w.u(1, i % 3 != 1)
        if i % 3 == 1:
            continue
        size = 16 if i < 6 else 64
        if i == 0:
            w.se(-8)  # nextScale 0 at j == 0: useDefaultScalingMatrixFlag, stop
            continue
        for j in range(size):
            w.se(1 if j % 2 else -1)
    w.ue(2).ue(1).u(1, 0).se(-1).se(2)  # frame_num of 6 bits; POC type 1
    w.ue(2).se(4).se(-3)  # with a cycle of 2
    w.ue(4).u(1, 1).ue(39).ue(21)  # 4 refs, gaps, 640x352
    w.u(1, 1).u(1, 1)  # frame_mbs_only_flag, direct_8x8_inference_flag
    w.u(1, 1).ue(0).ue(0).ue(0).ue(8)  # cropping to 640x336
    w.u(1, 0)  # no VUI
    w.rbsp_trailing_bits()
    return avc.make_nal(3, avc.NAL_SPS, w.bytes())


def test_sps_scaling_lists_and_poc_type_1():
    sps = avc.parse_sps(_sps_with_scaling_lists())
    assert sps.seq_parameter_set_id == 3 and sps.seq_scaling_matrix_present_flag
    assert sps.log2_max_frame_num_minus4 == 2 and sps.max_frame_num == 64
    assert sps.pic_order_cnt_type == 1 and not sps.delta_pic_order_always_zero_flag
    assert (sps.offset_for_non_ref_pic, sps.offset_for_top_to_bottom_field) == (-1, 2)
    assert sps.offset_for_ref_frame == (4, -3)
    assert sps.max_num_ref_frames == 4 and sps.gaps_in_frame_num_value_allowed_flag
    assert (sps.width, sps.height) == (640, 336)
    assert sps.frame_rate is None and sps.max_num_reorder_frames is None


def high_profile_sps(profile_idc: int, chroma_format_idc: int = 3, bit_depth_minus8: int = 2) -> bytes:
    """A 160x96 SPS whose profile carries chroma format and bit depths (avc.HIGH_PROFILES)."""
    w = BitWriter().u(8, profile_idc).u(8, 0).u(8, 30).ue(0)
    w.ue(chroma_format_idc)
    if chroma_format_idc == 3:
        w.u(1, 0)  # separate_colour_plane_flag
    w.ue(bit_depth_minus8).ue(bit_depth_minus8).u(1, 0).u(1, 0)  # no bypass, no scaling matrix
    w.ue(0).ue(2).ue(1).u(1, 0)  # frame_num of 4 bits, POC type 2, 1 ref, no gaps
    w.ue(9).ue(5).u(1, 1).u(1, 1)  # 160x96 progressive, direct_8x8_inference_flag
    w.u(1, 0).u(1, 0)  # no cropping, no VUI
    return avc.make_nal(3, avc.NAL_SPS, w.rbsp_trailing_bits().bytes())


@pytest.mark.parametrize("profile_idc", [144, 244])
def test_high_444_sps_carries_chroma_format_and_bit_depths(profile_idc):
    """244 is High 4:4:4 Predictive; 144 the High 4:4:4 of the 2005 edition, which
    ffmpeg still reads with the same fields (withdrawn in 2007, still in old files)."""
    assert profile_idc in avc.HIGH_PROFILES
    sps = avc.parse_sps(high_profile_sps(profile_idc))
    assert (sps.chroma_format_idc, sps.bit_depth_luma_minus8, sps.bit_depth_chroma_minus8) == (3, 2, 2)
    assert (sps.width, sps.height, sps.pic_order_cnt_type) == (160, 96, 2)


def _truncations(nal: bytes):
    for cut in range(len(nal)):
        yield nal[:cut]


def test_truncated_parameter_sets_raise_media_error():
    aus = access_units(CLIPS["vui-hrd-cqm"])
    sps_nal = next(n for au in aus for n in au if nal_type(n) == avc.NAL_SPS)
    pps_nal = next(n for au in aus for n in au if nal_type(n) == avc.NAL_PPS)
    sps = avc.parse_sps(sps_nal)
    for nal in list(_truncations(sps_nal)) + list(_truncations(_sps_with_scaling_lists())):
        with pytest.raises(MediaError):
            avc.parse_sps(nal)
    for nal in _truncations(pps_nal):
        with pytest.raises(MediaError):
            avc.parse_pps(nal, {0: sps})


@pytest.mark.parametrize(
    "name", ["cavlc-high-ref3-weightp", "cabac-high-ref3-weightp", "cabac-slices"]
)
def test_truncated_slice_headers_raise_media_error(name):
    sps_by_id: dict = {}
    pps_by_id: dict = {}
    for au in access_units(CLIPS[name]):
        for nal in au:
            kind = nal_type(nal)
            if kind == avc.NAL_SPS:
                sps = avc.parse_sps(nal)
                sps_by_id[sps.seq_parameter_set_id] = sps
            elif kind == avc.NAL_PPS:
                pps = avc.parse_pps(nal, sps_by_id)
                pps_by_id[pps.pic_parameter_set_id] = pps
            elif kind in (avc.NAL_SLICE, avc.NAL_IDR_SLICE):
                header = avc.parse_slice_header(nal, sps_by_id, pps_by_id)
                for cut in range(1, -(-header.slice_data_bit // 8) + 1):
                    with pytest.raises(MediaError, match="truncated slice header"):
                        avc.parse_slice_header(nal[:cut], sps_by_id, pps_by_id)


def test_unknown_parameter_sets_and_wrong_nal_types():
    aus = access_units(CLIPS["cabac-main"])
    sps_nal, pps_nal = [n for n in aus[0] if nal_type(n) in (avc.NAL_SPS, avc.NAL_PPS)]
    slice_nal = next(n for n in aus[1] if nal_type(n) == avc.NAL_SLICE)
    sps = avc.parse_sps(sps_nal)
    pps = avc.parse_pps(pps_nal, {})  # the SPS is only needed for 4:4:4 scaling lists
    with pytest.raises(MediaError, match="unknown PPS 0"):
        avc.parse_slice_header(slice_nal, {0: sps}, {})
    with pytest.raises(MediaError, match="unknown SPS 0"):
        avc.parse_slice_header(slice_nal, {}, {0: pps})
    with pytest.raises(MediaError, match="not a SPS"):
        avc.parse_sps(pps_nal)
    with pytest.raises(MediaError, match="empty NAL"):
        avc.parse_pps(b"", {})
    with pytest.raises(MediaError, match="forbidden_zero_bit"):
        avc.parse_sps(b"\xe7" + sps_nal[1:])


def test_out_of_range_fields_raise_media_error():
    w = BitWriter().u(8, 66).u(8, 0).u(8, 30).ue(32)  # seq_parameter_set_id 32
    with pytest.raises(MediaError, match="seq_parameter_set_id 32 out of range") as info:
        avc.parse_sps(avc.make_nal(3, avc.NAL_SPS, w.rbsp_trailing_bits().bytes()))
    assert info.value.where == "SPS bit 24"


@pytest.mark.parametrize(
    "name", ["cavlc-high-ref3-weightp", "cabac-high-ref3-weightp", "vui-hrd-cqm", "cabac-422-10bit"]
)
def test_mutated_nal_units_raise_only_media_error(name):
    rnd = random.Random(name)
    sps_by_id: dict = {}
    pps_by_id: dict = {}
    nals = [nal for au in access_units(CLIPS[name]) for nal in au]
    for nal in nals:
        if nal_type(nal) == avc.NAL_SPS:
            sps = avc.parse_sps(nal)
            sps_by_id[sps.seq_parameter_set_id] = sps
        elif nal_type(nal) == avc.NAL_PPS:
            pps = avc.parse_pps(nal, sps_by_id)
            pps_by_id[pps.pic_parameter_set_id] = pps
    parsers = {
        avc.NAL_SPS: avc.parse_sps,
        avc.NAL_PPS: lambda nal: avc.parse_pps(nal, sps_by_id),
        avc.NAL_SLICE: lambda nal: avc.parse_slice_header(nal, sps_by_id, pps_by_id),
        avc.NAL_IDR_SLICE: lambda nal: avc.parse_slice_header(nal, sps_by_id, pps_by_id),
    }
    for nal in nals:
        parse = parsers.get(nal_type(nal))
        if parse is None:
            continue
        for _ in range(60):
            data = bytearray(nal[: rnd.choice([len(nal), 48, 12])])
            for _ in range(rnd.randint(1, 3)):
                data[rnd.randrange(1, len(data))] ^= 1 << rnd.randrange(8)
            try:
                parse(bytes(data))
            except MediaError:
                pass


def test_sps_with_frame_rate_rewrites_only_the_timing(encoder_tags):
    import attrs

    from rtmprelay.media import avc, avcc, tags

    header = next(t for t in encoder_tags("x264-baseline", 25, seconds=1) if t.tag_type == 9)
    sps = avcc.parse_avc_config(tags.parse_video_tag(header.payload).data).sps[0]
    before = avc.parse_sps(sps)
    after = avc.parse_sps(avc.sps_with_frame_rate(sps, 30.0))
    assert before.frame_rate == 25 and after.frame_rate == 30
    changed = {f for f in attrs.fields_dict(avc.SPS) if getattr(before, f) != getattr(after, f)}
    assert changed <= {"num_units_in_tick", "time_scale"}
    assert avc.sps_with_frame_rate(sps, 25.0) == sps
