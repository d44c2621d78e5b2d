"""Sequence and picture parameter sets: ``parse_sps`` (7.3.2.1.1, with the VUI of
E.1.1) and ``parse_pps`` (7.3.2.2), into frozen values whose field names are the
standard's. Everything an SPS or PPS may carry is read (scaling lists, HRD,
slice groups) so that the fields after it are right; what the relay does not use
is not kept.
"""

from __future__ import annotations

from fractions import Fraction

import attrs

from rtmprelay.errors import MediaError
from rtmprelay.media.avc._constants import HIGH_PROFILES, MAX_PIC_SIZE_IN_MBS, NAL_PPS, NAL_SPS
from rtmprelay.media.avc._rbsp import escape_rbsp, rbsp_reader, unescape_rbsp
from rtmprelay.media.bits import BitReader, put_bits

_EXTENDED_SAR = 255


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
    #: Where num_units_in_tick starts, in bits from the first bit of the RBSP (None: no timing info).
    timing_info_bit: int | None = None

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
        out["timing_info_bit"] = r.position
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


def parse_sps(nal: bytes) -> SPS:
    """seq_parameter_set_rbsp() of a raw SPS NAL unit (type 7)."""
    _, _, r = rbsp_reader(nal, "SPS", (NAL_SPS,))
    profile_idc = r.u(8, "profile_idc")
    constraint_set_flags = r.u(8, "constraint_set_flags")
    level_idc = r.u(8, "level_idc")
    seq_parameter_set_id = r.ue_max(31, "seq_parameter_set_id")
    chroma_format_idc = 1
    separate_colour_plane_flag = False
    bit_depth_luma_minus8 = bit_depth_chroma_minus8 = 0
    qpprime_y_zero_transform_bypass_flag = seq_scaling_matrix_present_flag = False
    if profile_idc in HIGH_PROFILES:
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
    pic_width_in_mbs_minus1 = r.ue_max(MAX_PIC_SIZE_IN_MBS - 1, "pic_width_in_mbs_minus1")
    pic_height_in_map_units_minus1 = r.ue_max(
        MAX_PIC_SIZE_IN_MBS - 1, "pic_height_in_map_units_minus1"
    )
    frame_mbs_only_flag = r.flag("frame_mbs_only_flag")
    mb_adaptive_frame_field_flag = (
        False if frame_mbs_only_flag else r.flag("mb_adaptive_frame_field_flag")
    )
    mbs = (pic_width_in_mbs_minus1 + 1) * (pic_height_in_map_units_minus1 + 1)
    mbs *= 2 - frame_mbs_only_flag
    if mbs > MAX_PIC_SIZE_IN_MBS:
        raise r.error(f"picture of {mbs} macroblocks is larger than any level allows", width_at)
    direct_8x8_inference_flag = r.flag("direct_8x8_inference_flag")
    frame_cropping = None
    if r.flag("frame_cropping_flag"):
        frame_cropping = (
            r.ue_max(8 * MAX_PIC_SIZE_IN_MBS, "frame_crop_left_offset"),
            r.ue_max(8 * MAX_PIC_SIZE_IN_MBS, "frame_crop_right_offset"),
            r.ue_max(8 * MAX_PIC_SIZE_IN_MBS, "frame_crop_top_offset"),
            r.ue_max(8 * MAX_PIC_SIZE_IN_MBS, "frame_crop_bottom_offset"),
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
    _, _, r = rbsp_reader(nal, "PPS", (NAL_PPS,))
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
                r.ue_max(MAX_PIC_SIZE_IN_MBS, f"run_length_minus1[{group}]")
        elif slice_group_map_type == 2:
            for group in range(num_slice_groups_minus1):
                r.ue_max(MAX_PIC_SIZE_IN_MBS, f"top_left[{group}]")
                r.ue_max(MAX_PIC_SIZE_IN_MBS, f"bottom_right[{group}]")
        elif slice_group_map_type in (3, 4, 5):
            r.u(1, "slice_group_change_direction_flag")
            slice_group_change_rate_minus1 = r.ue_max(
                MAX_PIC_SIZE_IN_MBS, "slice_group_change_rate_minus1"
            )
        elif slice_group_map_type == 6:
            units = r.ue_max(MAX_PIC_SIZE_IN_MBS - 1, "pic_size_in_map_units_minus1") + 1
            width = num_slice_groups_minus1.bit_length()  # Ceil(Log2(num_slice_groups_minus1 + 1))
            if r.bits_left < units * width:
                raise r.truncated(units * width, "slice_group_id")
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


def sps_with_frame_rate(nal: bytes, fps: float) -> bytes:
    """The SPS NAL unit with its VUI timing saying ``fps`` (num_units_in_tick and time_scale,
    E.2.1, patched in place: both are 32-bit fields), or the NAL unit as it was when it has
    no timing info or already says that rate. For a stream whose frame rate a relay changed,
    so that what its SPS says is what its timestamps do (ffmpeg takes the stream's frame rate
    from it)."""
    sps = parse_sps(nal)
    if sps.timing_info_bit is None:
        return nal
    rate = Fraction(fps).limit_denominator(1001)
    if sps.frame_rate == rate:
        return nal
    rbsp = bytearray(unescape_rbsp(nal[1:]))
    put_bits(rbsp, sps.timing_info_bit, 32, rate.denominator)  # a tick is a field: two per frame
    put_bits(rbsp, sps.timing_info_bit + 32, 32, 2 * rate.numerator)
    return nal[:1] + escape_rbsp(bytes(rbsp))
