"""Slice headers read (7.3.3): ``parse_slice_header`` gives a frozen ``SliceHeader``
with every field, and where in the RBSP frame_num, pic_order_cnt_lsb and the
slice data start, for the skip-frame maker that renumbers and rewrites them
(``_slice_writer``). This runs once per slice when a stream is cleaned.
"""

from __future__ import annotations

from fractions import Fraction

import attrs

from rtmprelay.media.avc._constants import (
    CODED_SLICES,
    MAX_PIC_SIZE_IN_MBS,
    NAL_IDR_SLICE,
    SLICE_B,
    SLICE_I,
    SLICE_P,
    SLICE_SI,
    SLICE_SP,
)
from rtmprelay.media.avc._parameter_sets import PPS, SPS
from rtmprelay.media.avc._rbsp import rbsp_reader
from rtmprelay.media.bits import BitReader


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


def slice_group_change_cycle_bits(sps: SPS, pps: PPS) -> int:
    """The width of slice_group_change_cycle, which the parameter sets decide."""
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
    nal_ref_idc, nal_unit_type, r = rbsp_reader(nal, "slice header", CODED_SLICES)
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
    f["first_mb_in_slice"] = first_mb = r.ue_max(MAX_PIC_SIZE_IN_MBS, "first_mb_in_slice")
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
            slice_group_change_cycle_bits(sps, pps), "slice_group_change_cycle"
        )
    f["slice_data_bit"] = r.position
    return SliceHeader(**f)
