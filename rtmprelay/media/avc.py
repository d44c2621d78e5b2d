"""H.264 bitstream syntax: RBSP escaping, exp-Golomb bits, SPS, PPS, slice headers.

Everything here works on one raw NAL unit (no start code, no length prefix:
the first byte is the NAL header) and follows the field names of ITU-T H.264
(clause numbers in the docstrings). Parsers raise ``MediaError`` naming the
field and the bit where they stopped, never ``IndexError`` and the like.

Bit offsets kept in parsed values (``SliceHeader.frame_num_bit`` and friends)
count from the first bit of the RBSP, that is ``unescape_rbsp(nal[1:])``:
the bytes after the one-byte NAL header, emulation prevention removed.

The slice header can be written back (``write_slice_header``) and put in front
of the original slice data (``replace_slice_header``); fixed-width fields can be
patched in place (``patch_slice_numbers``). Both are what the skip-frame maker
needs to renumber the frames that follow an inserted picture.
"""

from __future__ import annotations

import re
from fractions import Fraction

import attrs

from rtmprelay.errors import MediaError

__all__ = [
    "NAL_SLICE",
    "NAL_IDR_SLICE",
    "NAL_SEI",
    "NAL_SPS",
    "NAL_PPS",
    "NAL_AUD",
    "SLICE_P",
    "SLICE_B",
    "SLICE_I",
    "SLICE_SP",
    "SLICE_SI",
    "BitReader",
    "BitWriter",
    "SPS",
    "PPS",
    "SliceHeader",
    "PredWeight",
    "PredWeightTable",
    "MemoryManagementOperation",
    "unescape_rbsp",
    "escape_rbsp",
    "nal_header",
    "parse_sps",
    "parse_pps",
    "parse_slice_header",
    "write_slice_header",
    "replace_slice_header",
    "patch_slice_numbers",
    "make_nal",
]

NAL_SLICE = 1
NAL_IDR_SLICE = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

# slice_type % 5 (Table 7-6)
SLICE_P = 0
SLICE_B = 1
SLICE_I = 2
SLICE_SP = 3
SLICE_SI = 4

# Profiles whose SPS carries chroma_format_idc, bit depths and scaling lists (7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
_EXTENDED_SAR = 255
# MaxFS of level 6.2 (Table A-1): more macroblocks than this is not a real stream.
_MAX_PIC_SIZE_IN_MBS = 139264
_MAX_EXP_GOLOMB_ZEROS = 31


# --- emulation prevention (7.4.1) ------------------------------------------------------

_EPB = b"\x00\x00\x03"
_NEEDS_EPB = re.compile(b"\x00\x00(?=[\x00-\x03])")


def unescape_rbsp(nal_payload: bytes) -> bytes:
    """Remove emulation_prevention_three_byte: every 0x03 after two zero bytes."""
    data = bytes(nal_payload)
    if _EPB not in data:
        return data
    return data.replace(_EPB, b"\x00\x00")


def escape_rbsp(rbsp: bytes) -> bytes:
    """Insert 0x03 wherever two zero bytes are followed by a byte <= 3, and after a
    final zero byte (an RBSP ending in cabac_zero_words), as 7.4.1 requires."""
    data = _NEEDS_EPB.sub(b"\x00\x00\x03", bytes(rbsp))
    if data.endswith(b"\x00"):
        data += b"\x03"
    return data


def nal_header(nal: bytes) -> tuple[int, int]:
    """``(nal_ref_idc, nal_unit_type)`` of a raw NAL unit."""
    if not nal:
        raise MediaError("empty NAL unit", where="NAL header")
    first = nal[0]
    if first & 0x80:
        raise MediaError("forbidden_zero_bit is set", where="NAL header")
    return (first >> 5) & 3, first & 0x1F


def make_nal(nal_ref_idc: int, nal_unit_type: int, rbsp: bytes) -> bytes:
    """A raw NAL unit: header byte then the escaped RBSP."""
    return bytes([(nal_ref_idc << 5) | nal_unit_type]) + escape_rbsp(rbsp)


# --- bits (7.2, 9.1) ---------------------------------------------------------------------


class BitReader:
    """Reads u(n), ue(v), se(v) from an RBSP (emulation prevention already removed).

    ``what`` names the structure in error messages: ``MediaError("truncated SPS:
    need 8 bits for level_idc, 3 left", where="SPS bit 16")``.
    """

    __slots__ = ("_data", "_pos", "_end", "what")

    def __init__(self, data: bytes, what: str = "RBSP", position: int = 0) -> None:
        self._data = bytes(data)
        self._pos = position
        self._end = len(self._data) * 8
        self.what = what

    @property
    def position(self) -> int:
        """Bit offset of the next bit to read."""
        return self._pos

    @property
    def bits_left(self) -> int:
        return self._end - self._pos

    def where(self, position: int | None = None) -> str:
        return f"{self.what} bit {self._pos if position is None else position}"

    def error(self, what: str, position: int | None = None) -> MediaError:
        return MediaError(what, where=self.where(position))

    def _truncated(self, n: int, field: str) -> MediaError:
        for_field = f" for {field}" if field else ""
        return self.error(
            f"truncated {self.what}: need {n} bits{for_field}, {max(self.bits_left, 0)} left"
        )

    def u(self, n: int, field: str = "") -> int:
        """n-bit unsigned integer, most significant bit first."""
        if n == 0:
            return 0
        pos = self._pos
        if pos + n > self._end:
            raise self._truncated(n, field)
        first = pos >> 3
        last = (pos + n + 7) >> 3
        value = int.from_bytes(self._data[first:last], "big")
        value >>= last * 8 - pos - n
        self._pos = pos + n
        return value & ((1 << n) - 1)

    def flag(self, field: str = "") -> bool:
        return bool(self.u(1, field))

    def ue(self, field: str = "") -> int:
        """Unsigned exp-Golomb (9.1)."""
        start = self._pos
        zeros = 0
        while True:
            if self._pos >= self._end:
                self._pos = start
                raise self._truncated(zeros + 1, field)
            if self.u(1):
                break
            zeros += 1
            if zeros > _MAX_EXP_GOLOMB_ZEROS:
                raise self.error(
                    f"exp-Golomb code longer than 32 bits for {field or 'a field'}", start
                )
        if self._pos + zeros > self._end:
            self._pos = start
            raise self._truncated(2 * zeros + 1, field)
        return (1 << zeros) - 1 + self.u(zeros, field)

    def se(self, field: str = "") -> int:
        """Signed exp-Golomb (9.1.1): 1, -1, 2, -2, ..."""
        code = self.ue(field)
        return (code + 1) >> 1 if code & 1 else -(code >> 1)

    def more_rbsp_data(self) -> bool:
        """True while there is data before the rbsp_stop_one_bit (the last 1 bit)."""
        data = self._data
        end = len(data)
        while end and data[end - 1] == 0:
            end -= 1
        if not end:
            return False
        last = data[end - 1]
        stop_bit = (end - 1) * 8 + 7 - ((last & -last).bit_length() - 1)
        return self._pos < stop_bit

    def rbsp_trailing_bits(self) -> None:
        """rbsp_stop_one_bit must follow the last field; what follows it is ignored."""
        at = self._pos
        if not self.u(1, "rbsp_stop_one_bit"):
            raise self.error("rbsp_stop_one_bit is 0: extra or misread fields", at)

    def ranged(self, value: int, low: int, high: int, field: str, position: int) -> int:
        if not low <= value <= high:
            raise self.error(f"{field} {value} out of range {low}..{high}", position)
        return value

    def ue_max(self, high: int, field: str) -> int:
        start = self._pos
        return self.ranged(self.ue(field), 0, high, field, start)

    def se_range(self, low: int, high: int, field: str) -> int:
        start = self._pos
        return self.ranged(self.se(field), low, high, field, start)


class BitWriter:
    """Writes u(n), ue(v), se(v) and RBSP trailing bits into an int, MSB first."""

    __slots__ = ("_value", "_bits")

    def __init__(self) -> None:
        self._value = 0
        self._bits = 0

    @property
    def position(self) -> int:
        """Number of bits written so far."""
        return self._bits

    @property
    def byte_aligned(self) -> bool:
        return self._bits % 8 == 0

    def u(self, n: int, value: int) -> BitWriter:
        if value < 0 or value >> n:
            raise ValueError(f"{value} does not fit in {n} bits")
        self._value = (self._value << n) | value
        self._bits += n
        return self

    def flag(self, value: bool) -> BitWriter:
        return self.u(1, 1 if value else 0)

    def ue(self, value: int) -> BitWriter:
        if value < 0:
            raise ValueError(f"ue(v) cannot hold {value}")
        code = value + 1
        length = code.bit_length()
        return self.u(2 * length - 1, code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def bits(self, value: int, n: int) -> BitWriter:
        """Append the low ``n`` bits of ``value`` (n may be large)."""
        return self.u(n, value & ((1 << n) - 1))

    def align(self, bit: int) -> BitWriter:
        """Pad with ``bit`` (0 or 1) to the next byte boundary."""
        pad = -self._bits % 8
        return self.u(pad, (1 << pad) - 1 if bit else 0)

    def rbsp_trailing_bits(self) -> BitWriter:
        self.u(1, 1)
        return self.align(0)

    def bytes(self) -> bytes:
        if self._bits % 8:
            raise ValueError(f"{self._bits} bits are not a whole number of bytes")
        return self._value.to_bytes(self._bits // 8, "big")


# --- SPS (7.3.2.1.1, E.1.1) -------------------------------------------------------------------


@attrs.frozen
class SPS:
    """A sequence parameter set; field names are those of 7.3.2.1.1."""

    profile_idc: int
    constraint_set_flags: int  # the 8 bits after profile_idc: constraint_set0_flag is 0x80
    level_idc: int
    seq_parameter_set_id: int
    chroma_format_idc: int
    separate_colour_plane_flag: bool
    bit_depth_luma_minus8: int
    bit_depth_chroma_minus8: int
    qpprime_y_zero_transform_bypass_flag: bool
    seq_scaling_matrix_present_flag: bool
    log2_max_frame_num_minus4: int
    pic_order_cnt_type: int
    log2_max_pic_order_cnt_lsb_minus4: int | None
    delta_pic_order_always_zero_flag: bool
    offset_for_non_ref_pic: int
    offset_for_top_to_bottom_field: int
    offset_for_ref_frame: tuple[int, ...]
    max_num_ref_frames: int
    gaps_in_frame_num_value_allowed_flag: bool
    pic_width_in_mbs_minus1: int
    pic_height_in_map_units_minus1: int
    frame_mbs_only_flag: bool
    mb_adaptive_frame_field_flag: bool
    direct_8x8_inference_flag: bool
    frame_cropping: tuple[int, int, int, int] | None  # left, right, top, bottom offsets
    vui_parameters_present_flag: bool
    num_units_in_tick: int | None = None
    time_scale: int | None = None
    fixed_frame_rate_flag: bool | None = None
    max_num_reorder_frames: int | None = None
    max_dec_frame_buffering: int | None = None

    @property
    def chroma_array_type(self) -> int:
        return 0 if self.separate_colour_plane_flag else self.chroma_format_idc

    @property
    def max_frame_num(self) -> int:
        return 1 << (self.log2_max_frame_num_minus4 + 4)

    @property
    def max_pic_order_cnt_lsb(self) -> int | None:
        if self.log2_max_pic_order_cnt_lsb_minus4 is None:
            return None
        return 1 << (self.log2_max_pic_order_cnt_lsb_minus4 + 4)

    @property
    def pic_width_in_mbs(self) -> int:
        return self.pic_width_in_mbs_minus1 + 1

    @property
    def frame_height_in_mbs(self) -> int:
        return (2 - self.frame_mbs_only_flag) * (self.pic_height_in_map_units_minus1 + 1)

    @property
    def pic_size_in_map_units(self) -> int:
        return self.pic_width_in_mbs * (self.pic_height_in_map_units_minus1 + 1)

    def _crop_units(self) -> tuple[int, int]:
        if self.chroma_array_type == 0:
            return 1, 2 - self.frame_mbs_only_flag
        sub_width, sub_height = {1: (2, 2), 2: (2, 1), 3: (1, 1)}[self.chroma_format_idc]
        return sub_width, sub_height * (2 - self.frame_mbs_only_flag)

    @property
    def width(self) -> int:
        width = self.pic_width_in_mbs * 16
        if self.frame_cropping:
            left, right, _, _ = self.frame_cropping
            width -= self._crop_units()[0] * (left + right)
        return width

    @property
    def height(self) -> int:
        height = self.frame_height_in_mbs * 16
        if self.frame_cropping:
            _, _, top, bottom = self.frame_cropping
            height -= self._crop_units()[1] * (top + bottom)
        return height

    @property
    def frame_rate(self) -> Fraction | None:
        """time_scale / (2 * num_units_in_tick): a tick is a field period (E.2.1)."""
        if not self.num_units_in_tick or not self.time_scale:
            return None
        return Fraction(self.time_scale, 2 * self.num_units_in_tick)


def _skip_scaling_list(r: BitReader, size: int, field: str) -> None:
    """scaling_list() (7.3.2.1.1.1): read the deltas, keep nothing."""
    last_scale = next_scale = 8
    for _ in range(size):
        if next_scale:
            delta = r.se_range(-128, 127, f"delta_scale of {field}")
            next_scale = (last_scale + delta + 256) % 256
        last_scale = next_scale or last_scale


def _skip_hrd_parameters(r: BitReader) -> None:
    cpb_cnt_minus1 = r.ue_max(31, "cpb_cnt_minus1")
    r.u(4, "bit_rate_scale")
    r.u(4, "cpb_size_scale")
    for _ in range(cpb_cnt_minus1 + 1):
        r.ue("bit_rate_value_minus1")
        r.ue("cpb_size_value_minus1")
        r.u(1, "cbr_flag")
    r.u(5, "initial_cpb_removal_delay_length_minus1")
    r.u(5, "cpb_removal_delay_length_minus1")
    r.u(5, "dpb_output_delay_length_minus1")
    r.u(5, "time_offset_length")


def _parse_vui(r: BitReader) -> dict:
    """vui_parameters() (E.1.1): keep timing and bitstream restriction."""
    out: dict = {}
    if r.flag("aspect_ratio_info_present_flag"):
        if r.u(8, "aspect_ratio_idc") == _EXTENDED_SAR:
            r.u(16, "sar_width")
            r.u(16, "sar_height")
    if r.flag("overscan_info_present_flag"):
        r.u(1, "overscan_appropriate_flag")
    if r.flag("video_signal_type_present_flag"):
        r.u(3, "video_format")
        r.u(1, "video_full_range_flag")
        if r.flag("colour_description_present_flag"):
            r.u(8, "colour_primaries")
            r.u(8, "transfer_characteristics")
            r.u(8, "matrix_coefficients")
    if r.flag("chroma_loc_info_present_flag"):
        r.ue_max(5, "chroma_sample_loc_type_top_field")
        r.ue_max(5, "chroma_sample_loc_type_bottom_field")
    if r.flag("timing_info_present_flag"):
        out["num_units_in_tick"] = r.u(32, "num_units_in_tick")
        out["time_scale"] = r.u(32, "time_scale")
        out["fixed_frame_rate_flag"] = r.flag("fixed_frame_rate_flag")
    nal_hrd = r.flag("nal_hrd_parameters_present_flag")
    if nal_hrd:
        _skip_hrd_parameters(r)
    vcl_hrd = r.flag("vcl_hrd_parameters_present_flag")
    if vcl_hrd:
        _skip_hrd_parameters(r)
    if nal_hrd or vcl_hrd:
        r.u(1, "low_delay_hrd_flag")
    r.u(1, "pic_struct_present_flag")
    if r.flag("bitstream_restriction_flag"):
        r.u(1, "motion_vectors_over_pic_boundaries_flag")
        r.ue_max(16, "max_bytes_per_pic_denom")
        r.ue_max(16, "max_bits_per_mb_denom")
        r.ue_max(16, "log2_max_mv_length_horizontal")
        r.ue_max(16, "log2_max_mv_length_vertical")
        out["max_num_reorder_frames"] = r.ue_max(16, "max_num_reorder_frames")
        out["max_dec_frame_buffering"] = r.ue_max(16, "max_dec_frame_buffering")
    return out


def _rbsp_reader(
    nal: bytes, what: str, nal_unit_types: tuple[int, ...]
) -> tuple[int, int, BitReader]:
    nal_ref_idc, nal_unit_type = nal_header(nal)
    if nal_unit_type not in nal_unit_types:
        raise MediaError(
            f"NAL unit type {nal_unit_type} is not a {what}", where=f"{what} NAL header"
        )
    return nal_ref_idc, nal_unit_type, BitReader(unescape_rbsp(nal[1:]), what)


def parse_sps(nal: bytes) -> SPS:
    """seq_parameter_set_rbsp() of a raw SPS NAL unit (type 7)."""
    _, _, r = _rbsp_reader(nal, "SPS", (NAL_SPS,))
    profile_idc = r.u(8, "profile_idc")
    constraint_set_flags = r.u(8, "constraint_set_flags")
    level_idc = r.u(8, "level_idc")
    seq_parameter_set_id = r.ue_max(31, "seq_parameter_set_id")
    chroma_format_idc = 1
    separate_colour_plane_flag = False
    bit_depth_luma_minus8 = bit_depth_chroma_minus8 = 0
    qpprime_y_zero_transform_bypass_flag = seq_scaling_matrix_present_flag = False
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue_max(3, "chroma_format_idc")
        if chroma_format_idc == 3:
            separate_colour_plane_flag = r.flag("separate_colour_plane_flag")
        bit_depth_luma_minus8 = r.ue_max(6, "bit_depth_luma_minus8")
        bit_depth_chroma_minus8 = r.ue_max(6, "bit_depth_chroma_minus8")
        qpprime_y_zero_transform_bypass_flag = r.flag("qpprime_y_zero_transform_bypass_flag")
        seq_scaling_matrix_present_flag = r.flag("seq_scaling_matrix_present_flag")
        if seq_scaling_matrix_present_flag:
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag(f"seq_scaling_list_present_flag[{i}]"):
                    _skip_scaling_list(r, 16 if i < 6 else 64, f"seq_scaling_list[{i}]")
    log2_max_frame_num_minus4 = r.ue_max(12, "log2_max_frame_num_minus4")
    pic_order_cnt_type = r.ue_max(2, "pic_order_cnt_type")
    log2_max_pic_order_cnt_lsb_minus4 = None
    delta_pic_order_always_zero_flag = False
    offset_for_non_ref_pic = offset_for_top_to_bottom_field = 0
    offset_for_ref_frame: tuple[int, ...] = ()
    if pic_order_cnt_type == 0:
        log2_max_pic_order_cnt_lsb_minus4 = r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")
    elif pic_order_cnt_type == 1:
        delta_pic_order_always_zero_flag = r.flag("delta_pic_order_always_zero_flag")
        offset_for_non_ref_pic = r.se_range(-(2**31) + 1, 2**31 - 1, "offset_for_non_ref_pic")
        offset_for_top_to_bottom_field = r.se_range(
            -(2**31) + 1, 2**31 - 1, "offset_for_top_to_bottom_field"
        )
        cycle = r.ue_max(255, "num_ref_frames_in_pic_order_cnt_cycle")
        offset_for_ref_frame = tuple(
            r.se_range(-(2**31) + 1, 2**31 - 1, f"offset_for_ref_frame[{i}]") for i in range(cycle)
        )
    max_num_ref_frames = r.ue_max(16, "max_num_ref_frames")
    gaps = r.flag("gaps_in_frame_num_value_allowed_flag")
    width_at = r.position
    pic_width_in_mbs_minus1 = r.ue_max(_MAX_PIC_SIZE_IN_MBS - 1, "pic_width_in_mbs_minus1")
    pic_height_in_map_units_minus1 = r.ue_max(
        _MAX_PIC_SIZE_IN_MBS - 1, "pic_height_in_map_units_minus1"
    )
    frame_mbs_only_flag = r.flag("frame_mbs_only_flag")
    mb_adaptive_frame_field_flag = (
        False if frame_mbs_only_flag else r.flag("mb_adaptive_frame_field_flag")
    )
    mbs = (pic_width_in_mbs_minus1 + 1) * (pic_height_in_map_units_minus1 + 1)
    mbs *= 2 - frame_mbs_only_flag
    if mbs > _MAX_PIC_SIZE_IN_MBS:
        raise r.error(f"picture of {mbs} macroblocks is larger than any level allows", width_at)
    direct_8x8_inference_flag = r.flag("direct_8x8_inference_flag")
    frame_cropping = None
    if r.flag("frame_cropping_flag"):
        frame_cropping = (
            r.ue_max(8 * 139264, "frame_crop_left_offset"),
            r.ue_max(8 * 139264, "frame_crop_right_offset"),
            r.ue_max(8 * 139264, "frame_crop_top_offset"),
            r.ue_max(8 * 139264, "frame_crop_bottom_offset"),
        )
    vui_parameters_present_flag = r.flag("vui_parameters_present_flag")
    vui = _parse_vui(r) if vui_parameters_present_flag else {}
    r.rbsp_trailing_bits()
    sps = SPS(
        profile_idc=profile_idc,
        constraint_set_flags=constraint_set_flags,
        level_idc=level_idc,
        seq_parameter_set_id=seq_parameter_set_id,
        chroma_format_idc=chroma_format_idc,
        separate_colour_plane_flag=separate_colour_plane_flag,
        bit_depth_luma_minus8=bit_depth_luma_minus8,
        bit_depth_chroma_minus8=bit_depth_chroma_minus8,
        qpprime_y_zero_transform_bypass_flag=qpprime_y_zero_transform_bypass_flag,
        seq_scaling_matrix_present_flag=seq_scaling_matrix_present_flag,
        log2_max_frame_num_minus4=log2_max_frame_num_minus4,
        pic_order_cnt_type=pic_order_cnt_type,
        log2_max_pic_order_cnt_lsb_minus4=log2_max_pic_order_cnt_lsb_minus4,
        delta_pic_order_always_zero_flag=delta_pic_order_always_zero_flag,
        offset_for_non_ref_pic=offset_for_non_ref_pic,
        offset_for_top_to_bottom_field=offset_for_top_to_bottom_field,
        offset_for_ref_frame=offset_for_ref_frame,
        max_num_ref_frames=max_num_ref_frames,
        gaps_in_frame_num_value_allowed_flag=gaps,
        pic_width_in_mbs_minus1=pic_width_in_mbs_minus1,
        pic_height_in_map_units_minus1=pic_height_in_map_units_minus1,
        frame_mbs_only_flag=frame_mbs_only_flag,
        mb_adaptive_frame_field_flag=mb_adaptive_frame_field_flag,
        direct_8x8_inference_flag=direct_8x8_inference_flag,
        frame_cropping=frame_cropping,
        vui_parameters_present_flag=vui_parameters_present_flag,
        **vui,
    )
    if sps.width <= 0 or sps.height <= 0:
        raise MediaError("frame cropping leaves no picture", where="SPS frame_cropping")
    return sps


# --- PPS (7.3.2.2) -----------------------------------------------------------------------------


@attrs.frozen
class PPS:
    """A picture parameter set; field names are those of 7.3.2.2."""

    pic_parameter_set_id: int
    seq_parameter_set_id: int
    entropy_coding_mode_flag: bool
    bottom_field_pic_order_in_frame_present_flag: bool
    num_slice_groups_minus1: int
    slice_group_map_type: int | None
    slice_group_change_rate_minus1: int | None
    num_ref_idx_l0_default_active_minus1: int
    num_ref_idx_l1_default_active_minus1: int
    weighted_pred_flag: bool
    weighted_bipred_idc: int
    pic_init_qp_minus26: int
    pic_init_qs_minus26: int
    chroma_qp_index_offset: int
    deblocking_filter_control_present_flag: bool
    constrained_intra_pred_flag: bool
    redundant_pic_cnt_present_flag: bool
    transform_8x8_mode_flag: bool = False
    pic_scaling_matrix_present_flag: bool = False
    second_chroma_qp_index_offset: int | None = None  # None: equal to chroma_qp_index_offset


def parse_pps(nal: bytes, sps_by_id: dict[int, SPS]) -> PPS:
    """pic_parameter_set_rbsp() of a raw PPS NAL unit (type 8).

    The SPS is only needed to size the 8x8 scaling lists of a High 4:4:4 PPS;
    a PPS that does not need it parses without it. Slice groups (FMO) are
    parsed in full.
    """
    _, _, r = _rbsp_reader(nal, "PPS", (NAL_PPS,))
    pic_parameter_set_id = r.ue_max(255, "pic_parameter_set_id")
    seq_parameter_set_id = r.ue_max(31, "seq_parameter_set_id")
    entropy_coding_mode_flag = r.flag("entropy_coding_mode_flag")
    bottom_field_pic_order_in_frame_present_flag = r.flag(
        "bottom_field_pic_order_in_frame_present_flag"
    )
    num_slice_groups_minus1 = r.ue_max(7, "num_slice_groups_minus1")
    slice_group_map_type = slice_group_change_rate_minus1 = None
    if num_slice_groups_minus1 > 0:
        slice_group_map_type = r.ue_max(6, "slice_group_map_type")
        if slice_group_map_type == 0:
            for group in range(num_slice_groups_minus1 + 1):
                r.ue_max(_MAX_PIC_SIZE_IN_MBS, f"run_length_minus1[{group}]")
        elif slice_group_map_type == 2:
            for group in range(num_slice_groups_minus1):
                r.ue_max(_MAX_PIC_SIZE_IN_MBS, f"top_left[{group}]")
                r.ue_max(_MAX_PIC_SIZE_IN_MBS, f"bottom_right[{group}]")
        elif slice_group_map_type in (3, 4, 5):
            r.u(1, "slice_group_change_direction_flag")
            slice_group_change_rate_minus1 = r.ue_max(
                _MAX_PIC_SIZE_IN_MBS, "slice_group_change_rate_minus1"
            )
        elif slice_group_map_type == 6:
            units = r.ue_max(_MAX_PIC_SIZE_IN_MBS - 1, "pic_size_in_map_units_minus1") + 1
            width = num_slice_groups_minus1.bit_length()  # Ceil(Log2(num_slice_groups_minus1 + 1))
            if r.bits_left < units * width:
                raise r._truncated(units * width, "slice_group_id")
            r.u(units * width, "slice_group_id")
    num_ref_idx_l0_default_active_minus1 = r.ue_max(31, "num_ref_idx_l0_default_active_minus1")
    num_ref_idx_l1_default_active_minus1 = r.ue_max(31, "num_ref_idx_l1_default_active_minus1")
    weighted_pred_flag = r.flag("weighted_pred_flag")
    at = r.position
    weighted_bipred_idc = r.ranged(r.u(2, "weighted_bipred_idc"), 0, 2, "weighted_bipred_idc", at)
    pic_init_qp_minus26 = r.se_range(-26 - 36, 25, "pic_init_qp_minus26")
    pic_init_qs_minus26 = r.se_range(-26, 25, "pic_init_qs_minus26")
    chroma_qp_index_offset = r.se_range(-12, 12, "chroma_qp_index_offset")
    deblocking_filter_control_present_flag = r.flag("deblocking_filter_control_present_flag")
    constrained_intra_pred_flag = r.flag("constrained_intra_pred_flag")
    redundant_pic_cnt_present_flag = r.flag("redundant_pic_cnt_present_flag")
    extra: dict = {}
    if r.more_rbsp_data():
        transform_8x8_mode_flag = r.flag("transform_8x8_mode_flag")
        pic_scaling_matrix_present_flag = r.flag("pic_scaling_matrix_present_flag")
        if pic_scaling_matrix_present_flag:
            lists = 6
            if transform_8x8_mode_flag:
                sps = sps_by_id.get(seq_parameter_set_id)
                if sps is None:
                    raise r.error(f"PPS scaling lists need the unknown SPS {seq_parameter_set_id}")
                lists += 2 if sps.chroma_format_idc != 3 else 6
            for i in range(lists):
                if r.flag(f"pic_scaling_list_present_flag[{i}]"):
                    _skip_scaling_list(r, 16 if i < 6 else 64, f"pic_scaling_list[{i}]")
        extra = {
            "transform_8x8_mode_flag": transform_8x8_mode_flag,
            "pic_scaling_matrix_present_flag": pic_scaling_matrix_present_flag,
            "second_chroma_qp_index_offset": r.se_range(-12, 12, "second_chroma_qp_index_offset"),
        }
    r.rbsp_trailing_bits()
    return PPS(
        pic_parameter_set_id=pic_parameter_set_id,
        seq_parameter_set_id=seq_parameter_set_id,
        entropy_coding_mode_flag=entropy_coding_mode_flag,
        bottom_field_pic_order_in_frame_present_flag=bottom_field_pic_order_in_frame_present_flag,
        num_slice_groups_minus1=num_slice_groups_minus1,
        slice_group_map_type=slice_group_map_type,
        slice_group_change_rate_minus1=slice_group_change_rate_minus1,
        num_ref_idx_l0_default_active_minus1=num_ref_idx_l0_default_active_minus1,
        num_ref_idx_l1_default_active_minus1=num_ref_idx_l1_default_active_minus1,
        weighted_pred_flag=weighted_pred_flag,
        weighted_bipred_idc=weighted_bipred_idc,
        pic_init_qp_minus26=pic_init_qp_minus26,
        pic_init_qs_minus26=pic_init_qs_minus26,
        chroma_qp_index_offset=chroma_qp_index_offset,
        deblocking_filter_control_present_flag=deblocking_filter_control_present_flag,
        constrained_intra_pred_flag=constrained_intra_pred_flag,
        redundant_pic_cnt_present_flag=redundant_pic_cnt_present_flag,
        **extra,
    )


# --- slice header (7.3.3) ------------------------------------------------------------------------


@attrs.frozen
class PredWeight:
    """One reference's explicit weights (7.3.3.2); None where the flag is 0."""

    luma: tuple[int, int] | None = None  # (luma_weight, luma_offset)
    chroma: tuple[tuple[int, int], tuple[int, int]] | None = None  # (weight, offset) for Cb, Cr


@attrs.frozen
class PredWeightTable:
    """pred_weight_table() (7.3.3.2)."""

    luma_log2_weight_denom: int
    chroma_log2_weight_denom: int | None  # None when ChromaArrayType is 0
    l0: tuple[PredWeight, ...]
    l1: tuple[PredWeight, ...] = ()


@attrs.frozen
class MemoryManagementOperation:
    """One memory_management_control_operation of dec_ref_pic_marking() (7.3.3.3)."""

    memory_management_control_operation: int
    difference_of_pic_nums_minus1: int | None = None
    long_term_pic_num: int | None = None
    long_term_frame_idx: int | None = None
    max_long_term_frame_idx_plus1: int | None = None


# (modification_of_pic_nums_idc, abs_diff_pic_num_minus1 or long_term_pic_num)
Modification = tuple[int, int]


@attrs.frozen
class SliceHeader:
    """slice_header() (7.3.3), parsed in full.

    Absent fields are None (or empty/False where the spec infers a value).
    ``num_ref_idx_l0_active_minus1`` is the value in force (the PPS default
    unless overridden). The ``*_bit`` fields are bit offsets in the RBSP
    (``unescape_rbsp(nal[1:])``); ``slice_data_bit`` is where slice_data()
    starts (before any cabac_alignment_one_bit).
    """

    nal_unit_type: int
    nal_ref_idc: int
    first_mb_in_slice: int
    slice_type: int
    pic_parameter_set_id: int
    frame_num: int
    colour_plane_id: int | None = None
    field_pic_flag: bool = False
    bottom_field_flag: bool = False
    idr_pic_id: int | None = None
    pic_order_cnt_lsb: int | None = None
    delta_pic_order_cnt_bottom: int | None = None
    delta_pic_order_cnt: tuple[int, ...] = ()
    redundant_pic_cnt: int | None = None
    direct_spatial_mv_pred_flag: bool | None = None
    num_ref_idx_active_override_flag: bool = False
    num_ref_idx_l0_active_minus1: int = 0
    num_ref_idx_l1_active_minus1: int = 0
    ref_pic_list_modification_flag_l0: bool = False
    ref_pic_list_modification_l0: tuple[Modification, ...] = ()
    ref_pic_list_modification_flag_l1: bool = False
    ref_pic_list_modification_l1: tuple[Modification, ...] = ()
    pred_weight_table: PredWeightTable | None = None
    no_output_of_prior_pics_flag: bool = False
    long_term_reference_flag: bool = False
    adaptive_ref_pic_marking_mode_flag: bool = False
    memory_management_operations: tuple[MemoryManagementOperation, ...] = ()
    cabac_init_idc: int | None = None
    slice_qp_delta: int = 0
    sp_for_switch_flag: bool | None = None
    slice_qs_delta: int | None = None
    disable_deblocking_filter_idc: int = 0
    slice_alpha_c0_offset_div2: int = 0
    slice_beta_offset_div2: int = 0
    slice_group_change_cycle: int | None = None
    frame_num_bit: int = 0
    pic_order_cnt_lsb_bit: int | None = None
    slice_data_bit: int = 0

    @property
    def idr(self) -> bool:
        return self.nal_unit_type == NAL_IDR_SLICE

    @property
    def is_reference(self) -> bool:
        return self.nal_ref_idc != 0

    @property
    def kind(self) -> int:
        """slice_type % 5: SLICE_P, SLICE_B, SLICE_I, SLICE_SP or SLICE_SI."""
        return self.slice_type % 5

    @property
    def is_p(self) -> bool:
        return self.kind == SLICE_P

    @property
    def is_b(self) -> bool:
        return self.kind == SLICE_B

    @property
    def is_i(self) -> bool:
        return self.kind == SLICE_I

    @property
    def mmco5(self) -> bool:
        operations = self.memory_management_operations
        return any(op.memory_management_control_operation == 5 for op in operations)


_MAX_MODIFICATIONS = 33  # num_ref_idx_active (at most 32) + the terminating 3
_MAX_MMCO = 66


def _lookup_parameter_sets(
    r: BitReader, pps_id: int, sps_by_id: dict[int, SPS], pps_by_id: dict[int, PPS], at: int
) -> tuple[SPS, PPS]:
    pps = pps_by_id.get(pps_id)
    if pps is None:
        raise r.error(f"slice refers to unknown PPS {pps_id}", at)
    sps = sps_by_id.get(pps.seq_parameter_set_id)
    if sps is None:
        raise r.error(f"PPS {pps_id} refers to unknown SPS {pps.seq_parameter_set_id}", at)
    return sps, pps


def _parse_modifications(r: BitReader, list_name: str) -> tuple[Modification, ...]:
    ops = []
    for _ in range(_MAX_MODIFICATIONS):
        at = r.position
        idc = r.ue_max(5, f"modification_of_pic_nums_idc ({list_name})")
        if idc == 3:
            return tuple(ops)
        if idc > 3:
            raise r.error(f"modification_of_pic_nums_idc {idc} (MVC) in a non-MVC slice", at)
        field = "abs_diff_pic_num_minus1" if idc < 2 else "long_term_pic_num"
        ops.append((idc, r.ue_max(2**17, field)))
    raise r.error(f"more than {_MAX_MODIFICATIONS - 1} ref_pic_list_modification operations")


def _parse_weights(
    r: BitReader, count: int, chroma: bool, list_name: str
) -> tuple[PredWeight, ...]:
    weights = []
    for i in range(count):
        luma = None
        if r.flag(f"luma_weight_{list_name}_flag[{i}]"):
            luma = (
                r.se_range(-128, 127, f"luma_weight_{list_name}[{i}]"),
                r.se_range(-128, 127, f"luma_offset_{list_name}[{i}]"),
            )
        chroma_weights = None
        if chroma and r.flag(f"chroma_weight_{list_name}_flag[{i}]"):
            cb = (
                r.se_range(-128, 127, f"chroma_weight_{list_name}[{i}][0]"),
                r.se_range(-128, 127, f"chroma_offset_{list_name}[{i}][0]"),
            )
            cr = (
                r.se_range(-128, 127, f"chroma_weight_{list_name}[{i}][1]"),
                r.se_range(-128, 127, f"chroma_offset_{list_name}[{i}][1]"),
            )
            chroma_weights = (cb, cr)
        weights.append(PredWeight(luma, chroma_weights))
    return tuple(weights)


def _parse_mmco(r: BitReader) -> tuple[MemoryManagementOperation, ...]:
    ops = []
    for _ in range(_MAX_MMCO):
        op = r.ue_max(6, "memory_management_control_operation")
        if op == 0:
            return tuple(ops)
        fields: dict = {}
        if op in (1, 3):
            fields["difference_of_pic_nums_minus1"] = r.ue_max(
                2**17, "difference_of_pic_nums_minus1"
            )
        if op == 2:
            fields["long_term_pic_num"] = r.ue_max(2**17, "long_term_pic_num")
        if op in (3, 6):
            fields["long_term_frame_idx"] = r.ue_max(32, "long_term_frame_idx")
        if op == 4:
            fields["max_long_term_frame_idx_plus1"] = r.ue_max(33, "max_long_term_frame_idx_plus1")
        ops.append(MemoryManagementOperation(op, **fields))
    raise r.error(f"more than {_MAX_MMCO - 1} memory_management_control_operations")


def _slice_group_change_cycle_bits(sps: SPS, pps: PPS) -> int:
    rate = pps.slice_group_change_rate_minus1 + 1
    # Ceil(Log2(PicSizeInMapUnits / SliceGroupChangeRate + 1)), the division exact
    value = Fraction(sps.pic_size_in_map_units, rate) + 1
    bits = 0
    while (1 << bits) < value:
        bits += 1
    return bits


def parse_slice_header(
    nal: bytes, sps_by_id: dict[int, SPS], pps_by_id: dict[int, PPS]
) -> SliceHeader:
    """slice_header() of a raw coded-slice NAL unit (type 1 or 5), in full."""
    nal_ref_idc, nal_unit_type, r = _rbsp_reader(
        nal, "slice header", (NAL_SLICE, NAL_IDR_SLICE)
    )
    return _parse_slice_header(r, nal_ref_idc, nal_unit_type, sps_by_id, pps_by_id)


def _parse_slice_header(
    r: BitReader,
    nal_ref_idc: int,
    nal_unit_type: int,
    sps_by_id: dict[int, SPS],
    pps_by_id: dict[int, PPS],
) -> SliceHeader:
    idr = nal_unit_type == NAL_IDR_SLICE
    f: dict = {"nal_unit_type": nal_unit_type, "nal_ref_idc": nal_ref_idc}
    first_mb_at = r.position
    f["first_mb_in_slice"] = first_mb = r.ue_max(_MAX_PIC_SIZE_IN_MBS, "first_mb_in_slice")
    slice_type_at = r.position
    f["slice_type"] = slice_type = r.ue_max(9, "slice_type")
    kind = slice_type % 5
    if idr and kind not in (SLICE_I, SLICE_SI):
        raise r.error(f"IDR picture with slice_type {slice_type}", slice_type_at)
    pps_at = r.position
    f["pic_parameter_set_id"] = pps_id = r.ue_max(255, "pic_parameter_set_id")
    sps, pps = _lookup_parameter_sets(r, pps_id, sps_by_id, pps_by_id, pps_at)
    pic_size_in_mbs = sps.pic_width_in_mbs * sps.frame_height_in_mbs
    if first_mb >= pic_size_in_mbs:
        raise r.error(
            f"first_mb_in_slice {first_mb} beyond {pic_size_in_mbs} macroblocks", first_mb_at
        )
    if sps.separate_colour_plane_flag:
        f["colour_plane_id"] = r.u(2, "colour_plane_id")
    f["frame_num_bit"] = r.position
    f["frame_num"] = r.u(sps.log2_max_frame_num_minus4 + 4, "frame_num")
    field_pic_flag = False
    if not sps.frame_mbs_only_flag:
        f["field_pic_flag"] = field_pic_flag = r.flag("field_pic_flag")
        if field_pic_flag:
            f["bottom_field_flag"] = r.flag("bottom_field_flag")
    if idr:
        f["idr_pic_id"] = r.ue_max(65535, "idr_pic_id")
    if sps.pic_order_cnt_type == 0:
        f["pic_order_cnt_lsb_bit"] = r.position
        f["pic_order_cnt_lsb"] = r.u(sps.log2_max_pic_order_cnt_lsb_minus4 + 4, "pic_order_cnt_lsb")
        if pps.bottom_field_pic_order_in_frame_present_flag and not field_pic_flag:
            f["delta_pic_order_cnt_bottom"] = r.se_range(
                -(2**31) + 1, 2**31 - 1, "delta_pic_order_cnt_bottom"
            )
    if sps.pic_order_cnt_type == 1 and not sps.delta_pic_order_always_zero_flag:
        deltas = [r.se_range(-(2**31) + 1, 2**31 - 1, "delta_pic_order_cnt[0]")]
        if pps.bottom_field_pic_order_in_frame_present_flag and not field_pic_flag:
            deltas.append(r.se_range(-(2**31) + 1, 2**31 - 1, "delta_pic_order_cnt[1]"))
        f["delta_pic_order_cnt"] = tuple(deltas)
    if pps.redundant_pic_cnt_present_flag:
        f["redundant_pic_cnt"] = r.ue_max(127, "redundant_pic_cnt")
    if kind == SLICE_B:
        f["direct_spatial_mv_pred_flag"] = r.flag("direct_spatial_mv_pred_flag")
    l0 = pps.num_ref_idx_l0_default_active_minus1
    l1 = pps.num_ref_idx_l1_default_active_minus1
    if kind in (SLICE_P, SLICE_SP, SLICE_B):
        override = r.flag("num_ref_idx_active_override_flag")
        f["num_ref_idx_active_override_flag"] = override
        if override:
            limit = 31 if field_pic_flag else 15
            l0 = r.ue_max(limit, "num_ref_idx_l0_active_minus1")
            if kind == SLICE_B:
                l1 = r.ue_max(limit, "num_ref_idx_l1_active_minus1")
    f["num_ref_idx_l0_active_minus1"] = l0
    f["num_ref_idx_l1_active_minus1"] = l1
    if kind not in (SLICE_I, SLICE_SI):
        f["ref_pic_list_modification_flag_l0"] = flag = r.flag("ref_pic_list_modification_flag_l0")
        if flag:
            f["ref_pic_list_modification_l0"] = _parse_modifications(r, "l0")
    if kind == SLICE_B:
        f["ref_pic_list_modification_flag_l1"] = flag = r.flag("ref_pic_list_modification_flag_l1")
        if flag:
            f["ref_pic_list_modification_l1"] = _parse_modifications(r, "l1")
    if (pps.weighted_pred_flag and kind in (SLICE_P, SLICE_SP)) or (
        pps.weighted_bipred_idc == 1 and kind == SLICE_B
    ):
        chroma = sps.chroma_array_type != 0
        luma_denom = r.ue_max(7, "luma_log2_weight_denom")
        chroma_denom = r.ue_max(7, "chroma_log2_weight_denom") if chroma else None
        weights_l0 = _parse_weights(r, l0 + 1, chroma, "l0")
        weights_l1 = _parse_weights(r, l1 + 1, chroma, "l1") if kind == SLICE_B else ()
        f["pred_weight_table"] = PredWeightTable(luma_denom, chroma_denom, weights_l0, weights_l1)
    if nal_ref_idc:
        if idr:
            f["no_output_of_prior_pics_flag"] = r.flag("no_output_of_prior_pics_flag")
            f["long_term_reference_flag"] = r.flag("long_term_reference_flag")
        else:
            f["adaptive_ref_pic_marking_mode_flag"] = adaptive = r.flag(
                "adaptive_ref_pic_marking_mode_flag"
            )
            if adaptive:
                f["memory_management_operations"] = _parse_mmco(r)
    if pps.entropy_coding_mode_flag and kind not in (SLICE_I, SLICE_SI):
        f["cabac_init_idc"] = r.ue_max(2, "cabac_init_idc")
    qp_bd_offset = 6 * sps.bit_depth_luma_minus8
    # SliceQPY = 26 + pic_init_qp_minus26 + slice_qp_delta lies in -QpBdOffsetY..51
    f["slice_qp_delta"] = r.se_range(
        -qp_bd_offset - 26 - pps.pic_init_qp_minus26, 25 - pps.pic_init_qp_minus26, "slice_qp_delta"
    )
    if kind in (SLICE_SP, SLICE_SI):
        if kind == SLICE_SP:
            f["sp_for_switch_flag"] = r.flag("sp_for_switch_flag")
        f["slice_qs_delta"] = r.se_range(-51, 51, "slice_qs_delta")
    if pps.deblocking_filter_control_present_flag:
        f["disable_deblocking_filter_idc"] = idc = r.ue_max(2, "disable_deblocking_filter_idc")
        if idc != 1:
            f["slice_alpha_c0_offset_div2"] = r.se_range(-6, 6, "slice_alpha_c0_offset_div2")
            f["slice_beta_offset_div2"] = r.se_range(-6, 6, "slice_beta_offset_div2")
    if pps.num_slice_groups_minus1 > 0 and pps.slice_group_map_type in (3, 4, 5):
        f["slice_group_change_cycle"] = r.u(
            _slice_group_change_cycle_bits(sps, pps), "slice_group_change_cycle"
        )
    f["slice_data_bit"] = r.position
    return SliceHeader(**f)


# --- writing slice headers ---------------------------------------------------------------------


def _write_modifications(w: BitWriter, ops: tuple[Modification, ...]) -> None:
    for idc, value in ops:
        w.ue(idc).ue(value)
    w.ue(3)


def _write_weights(w: BitWriter, weights: tuple[PredWeight, ...], chroma: bool) -> None:
    for weight in weights:
        w.flag(weight.luma is not None)
        if weight.luma is not None:
            w.se(weight.luma[0]).se(weight.luma[1])
        if chroma:
            w.flag(weight.chroma is not None)
            if weight.chroma is not None:
                for value, offset in weight.chroma:
                    w.se(value).se(offset)


def write_slice_header(
    header: SliceHeader, sps: SPS, pps: PPS, w: BitWriter | None = None
) -> BitWriter:
    """Write slice_header() as 7.3.3 lays it out: the inverse of parse_slice_header.

    Offsets (``*_bit``) in ``header`` are ignored; fields the SPS/PPS say are
    absent are not written.
    """
    w = w or BitWriter()
    h = header
    kind = h.kind
    w.ue(h.first_mb_in_slice).ue(h.slice_type).ue(h.pic_parameter_set_id)
    if sps.separate_colour_plane_flag:
        w.u(2, h.colour_plane_id or 0)
    w.u(sps.log2_max_frame_num_minus4 + 4, h.frame_num)
    if not sps.frame_mbs_only_flag:
        w.flag(h.field_pic_flag)
        if h.field_pic_flag:
            w.flag(h.bottom_field_flag)
    if h.idr:
        w.ue(h.idr_pic_id or 0)
    if sps.pic_order_cnt_type == 0:
        w.u(sps.log2_max_pic_order_cnt_lsb_minus4 + 4, h.pic_order_cnt_lsb or 0)
        if pps.bottom_field_pic_order_in_frame_present_flag and not h.field_pic_flag:
            w.se(h.delta_pic_order_cnt_bottom or 0)
    if sps.pic_order_cnt_type == 1 and not sps.delta_pic_order_always_zero_flag:
        deltas = tuple(h.delta_pic_order_cnt) + (0, 0)
        w.se(deltas[0])
        if pps.bottom_field_pic_order_in_frame_present_flag and not h.field_pic_flag:
            w.se(deltas[1])
    if pps.redundant_pic_cnt_present_flag:
        w.ue(h.redundant_pic_cnt or 0)
    if kind == SLICE_B:
        w.flag(bool(h.direct_spatial_mv_pred_flag))
    if kind in (SLICE_P, SLICE_SP, SLICE_B):
        w.flag(h.num_ref_idx_active_override_flag)
        if h.num_ref_idx_active_override_flag:
            w.ue(h.num_ref_idx_l0_active_minus1)
            if kind == SLICE_B:
                w.ue(h.num_ref_idx_l1_active_minus1)
    if kind not in (SLICE_I, SLICE_SI):
        w.flag(h.ref_pic_list_modification_flag_l0)
        if h.ref_pic_list_modification_flag_l0:
            _write_modifications(w, h.ref_pic_list_modification_l0)
    if kind == SLICE_B:
        w.flag(h.ref_pic_list_modification_flag_l1)
        if h.ref_pic_list_modification_flag_l1:
            _write_modifications(w, h.ref_pic_list_modification_l1)
    if (pps.weighted_pred_flag and kind in (SLICE_P, SLICE_SP)) or (
        pps.weighted_bipred_idc == 1 and kind == SLICE_B
    ):
        table = h.pred_weight_table
        if table is None:
            raise ValueError("the PPS asks for a pred_weight_table and the header has none")
        chroma = sps.chroma_array_type != 0
        w.ue(table.luma_log2_weight_denom)
        if chroma:
            w.ue(table.chroma_log2_weight_denom or 0)
        _write_weights(w, table.l0, chroma)
        if kind == SLICE_B:
            _write_weights(w, table.l1, chroma)
    if h.nal_ref_idc:
        if h.idr:
            w.flag(h.no_output_of_prior_pics_flag).flag(h.long_term_reference_flag)
        else:
            w.flag(h.adaptive_ref_pic_marking_mode_flag)
            if h.adaptive_ref_pic_marking_mode_flag:
                for op in h.memory_management_operations:
                    code = op.memory_management_control_operation
                    w.ue(code)
                    if code in (1, 3):
                        w.ue(op.difference_of_pic_nums_minus1)
                    if code == 2:
                        w.ue(op.long_term_pic_num)
                    if code in (3, 6):
                        w.ue(op.long_term_frame_idx)
                    if code == 4:
                        w.ue(op.max_long_term_frame_idx_plus1)
                w.ue(0)
    if pps.entropy_coding_mode_flag and kind not in (SLICE_I, SLICE_SI):
        w.ue(h.cabac_init_idc or 0)
    w.se(h.slice_qp_delta)
    if kind in (SLICE_SP, SLICE_SI):
        if kind == SLICE_SP:
            w.flag(bool(h.sp_for_switch_flag))
        w.se(h.slice_qs_delta or 0)
    if pps.deblocking_filter_control_present_flag:
        w.ue(h.disable_deblocking_filter_idc)
        if h.disable_deblocking_filter_idc != 1:
            w.se(h.slice_alpha_c0_offset_div2).se(h.slice_beta_offset_div2)
    if pps.num_slice_groups_minus1 > 0 and pps.slice_group_map_type in (3, 4, 5):
        w.u(_slice_group_change_cycle_bits(sps, pps), h.slice_group_change_cycle or 0)
    return w


def replace_slice_header(
    nal: bytes, old: SliceHeader, new: SliceHeader, sps: SPS, pps: PPS
) -> bytes:
    """The slice NAL ``nal`` (whose header parsed as ``old``) with its header
    written anew from ``new``; the slice data is kept bit for bit.

    CAVLC slice data follows the header at any bit, so it moves with it and the
    rbsp_slice_trailing_bits are redone. CABAC slice data starts on a byte
    boundary after cabac_alignment_one_bits, so only the alignment changes.
    """
    rbsp = unescape_rbsp(nal[1:])
    w = write_slice_header(new, sps, pps)
    if pps.entropy_coding_mode_flag:
        aligned = (old.slice_data_bit + 7) // 8
        w.align(1)
        body = w.bytes() + rbsp[aligned:]
    else:
        stripped = rbsp.rstrip(b"\x00")
        if not stripped:
            raise MediaError("slice without rbsp_stop_one_bit", where="slice data")
        last = stripped[-1]
        stop_bit = len(stripped) * 8 - (last & -last).bit_length()
        data_bits = stop_bit - old.slice_data_bit
        if data_bits < 0:
            raise MediaError("slice data ends inside the slice header", where="slice data")
        value = int.from_bytes(stripped, "big") >> (len(stripped) * 8 - stop_bit)
        w.bits(value, data_bits)
        w.rbsp_trailing_bits()
        body = w.bytes()
    return bytes([(new.nal_ref_idc << 5) | new.nal_unit_type]) + escape_rbsp(body)


def patch_slice_numbers(
    nal: bytes,
    header: SliceHeader,
    sps: SPS,
    *,
    frame_num: int | None = None,
    pic_order_cnt_lsb: int | None = None,
) -> bytes:
    """The slice NAL with frame_num and/or pic_order_cnt_lsb overwritten in place.

    Both are u(v) fields of fixed width, so nothing else moves; the RBSP is
    escaped again since the new bits may create or remove 0x000003 patterns.
    """
    rbsp = bytearray(unescape_rbsp(nal[1:]))
    if frame_num is not None:
        _put_bits(rbsp, header.frame_num_bit, sps.log2_max_frame_num_minus4 + 4, frame_num)
    if pic_order_cnt_lsb is not None:
        if header.pic_order_cnt_lsb_bit is None:
            raise ValueError("this slice header has no pic_order_cnt_lsb")
        _put_bits(
            rbsp,
            header.pic_order_cnt_lsb_bit,
            sps.log2_max_pic_order_cnt_lsb_minus4 + 4,
            pic_order_cnt_lsb,
        )
    return nal[:1] + escape_rbsp(bytes(rbsp))


def _put_bits(buffer: bytearray, offset: int, width: int, value: int) -> None:
    if value < 0 or value >> width:
        raise ValueError(f"{value} does not fit in {width} bits")
    first = offset >> 3
    last = (offset + width + 7) >> 3
    span = (last - first) * 8
    shift = span - (offset - first * 8) - width
    current = int.from_bytes(buffer[first:last], "big")
    mask = ((1 << width) - 1) << shift
    current = (current & ~mask) | (value << shift)
    buffer[first:last] = current.to_bytes(last - first, "big")
