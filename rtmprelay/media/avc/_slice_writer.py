"""Slice headers written back (7.3.3): ``write_slice_header`` is the inverse of
``parse_slice_header``; ``replace_slice_header`` puts a new header in front of a
slice's data, kept bit for bit; ``patch_slice_numbers`` overwrites the
fixed-width frame_num and pic_order_cnt_lsb in place. The skip-frame maker uses
them to renumber the frames that follow a picture it inserted.
"""

from __future__ import annotations

from rtmprelay.errors import MediaError
from rtmprelay.media.avc._constants import SLICE_B, SLICE_I, SLICE_P, SLICE_SI, SLICE_SP
from rtmprelay.media.avc._parameter_sets import PPS, SPS
from rtmprelay.media.avc._rbsp import escape_rbsp, unescape_rbsp
from rtmprelay.media.avc._slice_header import (
    Modification,
    PredWeight,
    SliceHeader,
    slice_group_change_cycle_bits,
)
from rtmprelay.media.bits import BitWriter, put_bits


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
        w.u(slice_group_change_cycle_bits(sps, pps), h.slice_group_change_cycle or 0)
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
        put_bits(rbsp, header.frame_num_bit, sps.log2_max_frame_num_minus4 + 4, frame_num)
    if pic_order_cnt_lsb is not None:
        if header.pic_order_cnt_lsb_bit is None:
            raise ValueError("this slice header has no pic_order_cnt_lsb")
        put_bits(
            rbsp,
            header.pic_order_cnt_lsb_bit,
            sps.log2_max_pic_order_cnt_lsb_minus4 + 4,
            pic_order_cnt_lsb,
        )
    return nal[:1] + escape_rbsp(bytes(rbsp))
