"""Skip P-frames: pictures that repeat the previous one, made without decoding.

``SkipFrameMaker`` follows one H.264 stream access unit by access unit and can
insert, after the picture last sent, a P picture in which every macroblock is
P_Skip. Its motion vectors are all zero (the first macroblock has no
neighbours, the others only skipped ones with zero vectors and ref_idx 0, see
8.4.1.1), it has no residual, and its deblocking is off, so it decodes to the
pixels of RefPicList0[0]: the most recent short-term reference picture. That is
the last picture shown as long as the stream has no reordering and its last
picture is a short-term reference frame, which is what ``can_repeat`` checks.

Numbering. A skip frame is a *reference* picture with
``frame_num = PrevRefFrameNum + 1``; for pic_order_cnt_type 0 its
pic_order_cnt_lsb is the previous one plus the stream's step (1 or 2); for type 2
its order count follows from frame_num by itself. Every real slice after it, up
to the next IDR or memory_management_control_operation 5, then has its
frame_num (and pic_order_cnt_lsb) moved on by the number of skip frames (and
the order-count steps) inserted so far, modulo MaxFrameNum (MaxPicOrderCntLsb).
Both are fixed-width fields, patched in place. Non-reference skip frames would
not need the renumbering but cannot work in general: with pic_order_cnt_type 2
two non-reference pictures may not follow each other, and with type 0 a gap of
2 between order counts fits one picture, not k.

Decoded picture buffer. Being a reference, a skip frame takes a place among the
reference frames; it must take the place of the picture it copies and of
nothing else, so that every later picture still finds the same pixels at the
same ref_idx:

* ``max_num_ref_frames == 1``: the sliding window drops the copied picture
  itself; nothing else to do.
* ``max_num_ref_frames > 1``: the skip frame carries
  memory_management_control_operation 1 with difference_of_pic_nums_minus1 0,
  which marks the copied picture (its predecessor in frame_num) unused. The
  reference set keeps its size and order, with the skip frame standing in for
  its twin, so default reference lists of later slices hold the same pictures.
  What moves are the PicNum distances from later pictures to the references
  older than the skip frames, which grow by the number of skip frames; the maker
  keeps a model of the short-term references in both numberings and rewrites
  the syntax that counts in those distances (ref_pic_list_modification
  abs_diff_pic_num_minus1, and difference_of_pic_nums_minus1 of
  memory_management_control_operation 1 and 3), re-serialising the slice header
  when it has to. Distances must stay below MaxFrameNum: in a sliding-window
  stream a reference lives for at most max_num_ref_frames later reference
  frames, so a skip frame is refused once the skip frames inserted since the
  oldest short-term reference plus max_num_ref_frames would reach MaxFrameNum
  (x264 ``ref=3`` with MaxFrameNum 16: 12 in a row, then one real frame per
  further skip frame until the old references are gone). A multi-reference
  stream that manages its references with memory management operations (other
  than 5) is refused: a reference could then stay for up to MaxFrameNum frames.

``can_repeat`` is False (``why_not`` says why) before the first IDR; when the
SPS changed and no IDR followed yet; for streams with B slices, a
max_num_reorder_frames above 0 or order counts that do not increase in decoding
order (reordering: the last decoded picture is not the last shown);
pic_order_cnt_type 1; interlaced coding (frame_mbs_only_flag 0); separate
colour planes; slice groups; SP/SI slices; data partitioning; when the last
picture is not a reference or is a long-term one; and when a slice header could
not be parsed (until the next IDR).

The skip frame is one slice: slice_type 5, one active reference (overriding a
larger PPS default), default weights when weighted_pred_flag is set (weight
2^0, offset 0: pixels unchanged), cabac_init_idc 0, slice_qp_delta 0,
disable_deblocking_filter_idc 1 when the PPS lets it be sent; then
mb_skip_run = PicSizeInMbs (CAVLC), or per macroblock mb_skip_flag 1 and
end_of_slice_flag coded with the arithmetic encoder of 9.3.4 (CABAC). It
carries no SEI: streams with HRD or pic_struct timing lose one pic_timing SEI
per skip frame, which decoders do not need.

The maker never raises on stream content: what it cannot follow ends up in
``why_not`` (until the next IDR, or for good when the stream itself is out of
reach) and slices it cannot parse are passed on unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from rtmprelay.errors import MediaError
from rtmprelay.media.avc import (
    CODED_SLICES,
    DATA_PARTITIONS,
    NAL_PPS,
    NAL_SLICE,
    NAL_SPS,
    PPS,
    SLICE_B,
    SLICE_SI,
    SLICE_SP,
    SPS,
    BitWriter,
    MemoryManagementOperation,
    PredWeight,
    PredWeightTable,
    SliceHeader,
    make_nal,
    parse_pps,
    parse_slice_header,
    parse_sps,
    patch_slice_numbers,
    replace_slice_header,
    write_slice_header,
)

__all__ = ["SkipFrameMaker"]

_SLICE_TYPE_P_ONLY = 5  # slice_type 5: P, and all slices of the picture are P
_DEFAULT_NAL_REF_IDC = 2
_FORGET_PREDECESSOR = (MemoryManagementOperation(1, difference_of_pic_nums_minus1=0),)


# --- CABAC (9.3.4) ----------------------------------------------------------------------------

# Table 9-44: rangeTabLPS[pStateIdx][qCodIRangeIdx]
_RANGE_TAB_LPS = (
    (128, 176, 208, 240), (128, 167, 197, 227), (128, 158, 187, 216), (123, 150, 178, 205),
    (116, 142, 169, 195), (111, 135, 160, 185), (105, 128, 152, 175), (100, 122, 144, 166),
    (95, 116, 137, 158), (90, 110, 130, 150), (85, 104, 123, 142), (81, 99, 117, 135),
    (77, 94, 111, 128), (73, 89, 105, 122), (69, 85, 100, 116), (66, 80, 95, 110),
    (62, 76, 90, 104), (59, 72, 86, 99), (56, 69, 81, 94), (53, 65, 77, 89),
    (51, 62, 73, 85), (48, 59, 69, 80), (46, 56, 66, 76), (43, 53, 63, 72),
    (41, 50, 59, 69), (39, 48, 56, 65), (37, 45, 54, 62), (35, 43, 51, 59),
    (33, 41, 48, 56), (32, 39, 46, 53), (30, 37, 43, 50), (29, 35, 41, 48),
    (27, 33, 39, 45), (26, 31, 37, 43), (24, 30, 35, 41), (23, 28, 33, 39),
    (22, 27, 32, 37), (21, 26, 30, 35), (20, 24, 29, 33), (19, 23, 27, 31),
    (18, 22, 26, 30), (17, 21, 25, 28), (16, 20, 23, 27), (15, 19, 22, 25),
    (14, 18, 21, 24), (14, 17, 20, 23), (13, 16, 19, 22), (12, 15, 18, 21),
    (12, 14, 17, 20), (11, 14, 16, 19), (11, 13, 15, 18), (10, 12, 15, 17),
    (10, 12, 14, 16), (9, 11, 13, 15), (9, 11, 12, 14), (8, 10, 12, 14),
    (8, 9, 11, 13), (7, 9, 11, 12), (7, 9, 10, 12), (7, 8, 10, 11),
    (6, 8, 9, 11), (6, 7, 9, 10), (6, 7, 8, 9), (2, 2, 2, 2),
)  # fmt: skip

# Table 9-45: transIdxLPS (transIdxMPS is min(pStateIdx + 1, 62), 63 stays 63)
_TRANS_IDX_LPS = (
    0, 0, 1, 2, 2, 4, 4, 5, 6, 7, 8, 9, 9, 11, 11, 12,
    13, 13, 15, 15, 16, 16, 18, 18, 19, 19, 21, 21, 22, 22, 23, 24,
    24, 25, 26, 26, 27, 27, 28, 29, 29, 30, 30, 30, 31, 32, 32, 33,
    33, 33, 34, 34, 35, 35, 35, 36, 36, 36, 37, 37, 37, 38, 38, 63,
)  # fmt: skip

# Table 9-13, cabac_init_idc 0: (m, n) of ctxIdx 11, the mb_skip_flag of P slices
# with ctxIdxInc 0. ctxIdxInc (9.3.3.1.1.1) counts the neighbours A and B that
# are available and not skipped; in an all-skip slice there are none.
_MB_SKIP_FLAG_MN = (23, 33)


class _CabacEncoder:
    """The arithmetic encoder of 9.3.4.2 (initialisation, EncodeDecision,
    RenormE, PutBit, EncodeFlush) writing into a BitWriter."""

    def __init__(self, out: BitWriter) -> None:
        self._out = out
        self._low = 0
        self._range = 510
        self._first_bit = True
        self._outstanding = 0

    def _put_bit(self, bit: int) -> None:
        if self._first_bit:
            self._first_bit = False
        else:
            self._out.u(1, bit)
        while self._outstanding:
            self._out.u(1, 1 - bit)
            self._outstanding -= 1

    def _renormalise(self) -> None:
        while self._range < 256:
            if self._low < 256:
                self._put_bit(0)
            elif self._low >= 512:
                self._low -= 512
                self._put_bit(1)
            else:
                self._low -= 256
                self._outstanding += 1
            self._range <<= 1
            self._low <<= 1

    def decision(self, context: list[int], bin_value: int) -> None:
        """EncodeDecision; ``context`` is ``[pStateIdx, valMPS]``, updated."""
        state, mps = context
        lps = _RANGE_TAB_LPS[state][(self._range >> 6) & 3]
        self._range -= lps
        if bin_value != mps:
            self._low += self._range
            self._range = lps
            if state == 0:
                context[1] = 1 - mps
            context[0] = _TRANS_IDX_LPS[state]
        elif state < 62:
            context[0] = state + 1
        self._renormalise()

    def terminate(self, bin_value: int) -> None:
        """EncodeTerminate; a 1 flushes, and its last bit is the rbsp_stop_one_bit."""
        self._range -= 2
        if not bin_value:
            self._renormalise()
            return
        self._low += self._range
        self._range = 2
        self._renormalise()
        self._put_bit((self._low >> 9) & 1)
        self._out.u(2, ((self._low >> 7) & 3) | 1)


def _context(m: int, n: int, slice_qp: int) -> list[int]:
    """Context variable initialisation (9.3.1.1)."""
    pre = max(1, min(126, ((m * max(0, min(51, slice_qp))) >> 4) + n))
    return [63 - pre, 0] if pre <= 63 else [pre - 64, 1]


def cabac_skip_slice_data(pic_size_in_mbs: int, slice_qp: int) -> bytes:
    """slice_data() of a CABAC P slice whose macroblocks are all skipped, from
    its byte-aligned start (after cabac_alignment_one_bits) through the
    rbsp_slice_trailing_bits: per macroblock mb_skip_flag 1 and end_of_slice_flag."""
    out = BitWriter()
    encoder = _CabacEncoder(out)
    skip_flag = _context(*_MB_SKIP_FLAG_MN, slice_qp)
    for _ in range(pic_size_in_mbs - 1):
        encoder.decision(skip_flag, 1)
        encoder.terminate(0)
    encoder.decision(skip_flag, 1)
    encoder.terminate(1)
    out.align(0)
    return out.bytes()


# --- the stream model ---------------------------------------------------------------------------


@attrs.frozen
class _Ref:
    """A short-term reference frame as the maker models the decoder's DPB."""

    orig_frame_num: int  # frame_num in the stream as received (the numbering of its syntax)
    frame_num: int  # frame_num in the stream as sent
    shift_at: int  # skip frames inserted before it entered the DPB (for stand-ins: through them)


@attrs.frozen
class _Picture:
    """The last picture sent, as the decoder saw it."""

    frame_num: int  # as sent; 0 after memory_management_control_operation 5
    pic_order_cnt_lsb: int | None  # as sent, POC type 0; after MMCO 5 the reset TopFieldOrderCnt
    reference: bool
    long_term: bool
    pic_parameter_set_id: int


class SkipFrameMaker:
    """Makes all-skip P pictures for one H.264 stream and renumbers what follows.

    Feed it the parameter sets (``observe_config``) and every access unit in
    decoding order (``observe_frame``, which returns the NAL units to send in its
    place); ``make_repeat`` then returns the NAL units of one picture repeating
    the last one, whenever ``can_repeat`` is true. NAL units are raw: no start
    code, no length prefix.
    """

    def __init__(self, *, from_idr_only: bool = False) -> None:
        """``from_idr_only``: the maker will only ever see an IDR picture and then make
        skip frames after it (a bridge repeating a stream's last keyframe). The last
        picture decoded is then the last one shown even where the SPS allows
        reordering (B-frames), so such a stream is not refused for it; a picture whose
        order count goes back still is."""
        self._from_idr_only = from_idr_only
        self._sps: dict[int, SPS] = {}
        self._pps: dict[int, PPS] = {}
        self._stream_problem = ""  # for the life of the stream
        self._sequence_problem = ""  # until the next IDR
        self._in_sequence = False
        self._seq_sps: SPS | None = None
        self._fn_shift = 0
        self._poc_shift = 0
        self._short: list[_Ref] = []
        self._long: set[int] = set()  # LongTermFrameIdx of the long-term references
        self._prev_ref_orig_frame_num = 0
        self._adaptive_marking_seen = False
        self._last: _Picture | None = None
        self._nal_ref_idc = _DEFAULT_NAL_REF_IDC
        # pic_order_cnt_type 0 of the stream as received (8.2.1.1), to check the order
        self._prev_poc_msb = 0
        self._prev_poc_lsb = 0
        self._last_poc: int | None = None
        self._poc_step = 2
        self._cabac_cache: dict[tuple[int, int], bytes] = {}
        self.inserted = 0  # skip frames made so far

    # --- input ---------------------------------------------------------------------------------

    def observe_config(self, sps_nals: Iterable[bytes], pps_nals: Iterable[bytes]) -> None:
        """Parameter sets from an AVC sequence header (or in-band)."""
        for nal in sps_nals:
            self._observe_sps(bytes(nal))
        for nal in pps_nals:
            self._observe_pps(bytes(nal))

    def _observe_sps(self, nal: bytes) -> None:
        try:
            sps = parse_sps(nal)
        except MediaError as e:
            self._problem_until_idr(f"unusable SPS: {e}")
            return
        sps_id = sps.seq_parameter_set_id
        if self._in_sequence and self._sps.get(sps_id, sps) != sps:
            # a new SPS only takes effect at an IDR (7.4.1.2.1)
            self._problem_until_idr("the SPS changed; waiting for an IDR")
        self._sps[sps_id] = sps

    def _observe_pps(self, nal: bytes) -> None:
        """A PPS may change between any two pictures; the next slices and skip
        frames simply use the new one, as the decoder does."""
        try:
            pps = parse_pps(nal, self._sps)
        except MediaError as e:
            self._problem_until_idr(f"unusable PPS: {e}")
            return
        self._pps[pps.pic_parameter_set_id] = pps

    def observe_frame(self, nals: list[bytes]) -> list[bytes]:
        """Follow one access unit (decoding order); returns the NAL units to send,
        with frame_num / order counts renumbered after inserted skip frames: ``nals``
        itself when not one changed (callers test ``is`` to pass the bytes through)."""
        if self._stream_problem and not (self._fn_shift or self._poc_shift):
            return nals  # nothing was inserted and nothing ever will be
        slices: list[tuple[int, SliceHeader]] = []
        failed = False
        for index, nal in enumerate(nals):
            if not nal:
                continue
            nal_unit_type = nal[0] & 0x1F
            if nal_unit_type == NAL_SPS:
                self._observe_sps(bytes(nal))
            elif nal_unit_type == NAL_PPS:
                self._observe_pps(bytes(nal))
            elif nal_unit_type in CODED_SLICES:
                if slices and not (self._fn_shift or self._poc_shift) or slices and slices[0][1].idr:
                    # A picture's numbers and marking are its first slice's; the others are
                    # read only when they must be renumbered (half the cost with 2 slices).
                    continue
                try:
                    slices.append((index, parse_slice_header(bytes(nal), self._sps, self._pps)))
                except MediaError as e:
                    self._problem_until_idr(f"cannot follow the stream: {e}")
                    failed = True
            elif nal_unit_type in DATA_PARTITIONS:
                self._stream_problem = "data partitioning is not supported"
        if not slices:
            return nals
        primary = next((h for _, h in slices if not h.redundant_pic_cnt), slices[0][1])
        if primary.idr:
            self._start_sequence(primary)
        elif not self._in_sequence:
            return nals
        elif self._sps.get(self._pps[primary.pic_parameter_set_id].seq_parameter_set_id) != self._seq_sps:
            # slices parsed with an SPS that is not the active one (it changed without an
            # IDR): their numbers cannot be read against the sequence; pass them as they are
            self._problem_until_idr("the SPS changed without an IDR")
            return nals
        self._check(slices)
        sps = self._seq_sps
        pps = self._pps[primary.pic_parameter_set_id]
        if not primary.idr:
            self._fill_frame_num_gap(primary, sps)
        frame_num, lsb = self._sent_numbers(primary, sps)
        out = nals
        if self._fn_shift or self._poc_shift:
            out = list(nals)
            for index, header in slices:
                try:
                    out[index] = self._renumber(bytes(nals[index]), header, sps)
                except MediaError as e:
                    self._problem_until_idr(f"cannot renumber a slice: {e}")
        if failed:
            return out
        self._track_order(primary, sps, pps)
        self._mark(primary, sps, frame_num)
        if primary.mmco5:
            self._end_with_mmco5(primary, lsb)
        else:
            self._last = _Picture(
                frame_num=frame_num,
                pic_order_cnt_lsb=lsb,
                reference=primary.is_reference,
                long_term=primary.is_reference and self._is_long_term_now(primary),
                pic_parameter_set_id=primary.pic_parameter_set_id,
            )
        if primary.is_reference and not primary.idr:
            self._nal_ref_idc = primary.nal_ref_idc
        return out

    # --- output --------------------------------------------------------------------------------

    @property
    def why_not(self) -> str:
        """Why ``make_repeat`` cannot be called now; empty when it can."""
        if self._stream_problem:
            return self._stream_problem
        if not self._in_sequence or self._last is None:
            return "no IDR picture yet"
        if self._sequence_problem:
            return self._sequence_problem
        sps = self._seq_sps
        pps = self._pps.get(self._last.pic_parameter_set_id)
        if pps is None:
            return f"the PPS {self._last.pic_parameter_set_id} of the last picture is gone"
        problem = _unsupported(sps, pps, reordering=not self._from_idr_only)
        if problem:
            return problem
        last = self._last
        if not last.reference:
            return (
                "the last picture is not a reference picture: "
                "a skip frame would repeat an older one"
            )
        if last.long_term:
            return "the last picture is a long-term reference"
        if sps.max_num_ref_frames > 1:
            if self._adaptive_marking_seen:
                return (
                    "max_num_ref_frames > 1 and the stream marks references itself "
                    "(memory management operations): distances to old references cannot be bounded"
                )
            if not self._short or self._short[-1].frame_num != last.frame_num:
                return "lost track of the reference pictures"
            shift = self._fn_shift + 1
            oldest = min((ref.shift_at for ref in self._short[:-1]), default=shift)
            if shift - oldest + sps.max_num_ref_frames >= sps.max_frame_num:
                return (
                    f"{shift - oldest} skip frames since the oldest reference that later "
                    f"frames may still use; MaxFrameNum {sps.max_frame_num} allows no more"
                )
        return ""

    @property
    def can_repeat(self) -> bool:
        return not self.why_not

    def make_repeat(self) -> list[bytes]:
        """The NAL units of one all-skip P picture repeating the last picture."""
        problem = self.why_not
        if problem:
            raise MediaError(f"cannot make a skip frame: {problem}", where="skip frame")
        sps = self._seq_sps
        last = self._last
        pps = self._pps[last.pic_parameter_set_id]
        multi_ref = sps.max_num_ref_frames > 1
        frame_num = (last.frame_num + 1) % sps.max_frame_num
        lsb = None
        if sps.pic_order_cnt_type == 0:
            lsb = (last.pic_order_cnt_lsb + self._poc_step) % sps.max_pic_order_cnt_lsb
        weights = None
        if pps.weighted_pred_flag:
            # weight 2^0 and offset 0 for the one reference: prediction unchanged (8.4.2.3)
            chroma_denom = 0 if sps.chroma_array_type else None
            weights = PredWeightTable(0, chroma_denom, (PredWeight(),))
        header = SliceHeader(
            nal_unit_type=NAL_SLICE,
            nal_ref_idc=self._nal_ref_idc,
            first_mb_in_slice=0,
            slice_type=_SLICE_TYPE_P_ONLY,
            pic_parameter_set_id=pps.pic_parameter_set_id,
            frame_num=frame_num,
            pic_order_cnt_lsb=lsb,
            delta_pic_order_cnt_bottom=(
                0 if pps.bottom_field_pic_order_in_frame_present_flag else None
            ),
            redundant_pic_cnt=0 if pps.redundant_pic_cnt_present_flag else None,
            # one active reference: a larger PPS default would name missing pictures
            num_ref_idx_active_override_flag=pps.num_ref_idx_l0_default_active_minus1 != 0,
            num_ref_idx_l0_active_minus1=0,
            pred_weight_table=weights,
            adaptive_ref_pic_marking_mode_flag=multi_ref,
            # with several references, mark the picture this one copies unused
            memory_management_operations=(_FORGET_PREDECESSOR if multi_ref else ()),
            cabac_init_idc=0 if pps.entropy_coding_mode_flag else None,
            slice_qp_delta=0,
            disable_deblocking_filter_idc=1 if pps.deblocking_filter_control_present_flag else 0,
        )
        w = write_slice_header(header, sps, pps)
        pic_size_in_mbs = sps.pic_width_in_mbs * sps.frame_height_in_mbs
        if pps.entropy_coding_mode_flag:
            w.align(1)  # cabac_alignment_one_bit
            rbsp = w.bytes() + self._cabac_data(pic_size_in_mbs, 26 + pps.pic_init_qp_minus26)
        else:
            w.ue(pic_size_in_mbs)  # mb_skip_run: the whole picture
            w.rbsp_trailing_bits()
            rbsp = w.bytes()
        self._fn_shift += 1
        if lsb is not None:
            self._poc_shift += self._poc_step
        # the skip frame takes the place of its twin in the DPB
        twin = self._short[-1]
        self._short[-1] = attrs.evolve(twin, frame_num=frame_num, shift_at=self._fn_shift)
        self._last = attrs.evolve(last, frame_num=frame_num, pic_order_cnt_lsb=lsb)
        self.inserted += 1
        return [make_nal(self._nal_ref_idc, NAL_SLICE, rbsp)]

    def make_repeats(self, count: int) -> list[list[bytes]]:
        """Up to ``count`` skip frames in a row (each a list of NAL units), fewer when
        the stream allows no more (``why_not`` then says why); never raises.

        For a caller that bridges a gap in a live stream (a publisher outage):
        send them one frame period apart after the last picture, then carry on
        passing every later access unit through ``observe_frame``.
        """
        frames = []
        while len(frames) < count and self.can_repeat:
            frames.append(self.make_repeat())
        return frames

    def _cabac_data(self, pic_size_in_mbs: int, slice_qp: int) -> bytes:
        key = (pic_size_in_mbs, slice_qp)
        data = self._cabac_cache.get(key)
        if data is None:
            data = self._cabac_cache[key] = cabac_skip_slice_data(pic_size_in_mbs, slice_qp)
        return data

    # --- bookkeeping ---------------------------------------------------------------------------

    def _start_sequence(self, idr: SliceHeader) -> None:
        pps = self._pps[idr.pic_parameter_set_id]
        self._seq_sps = self._sps[pps.seq_parameter_set_id]
        self._in_sequence = True
        self._sequence_problem = ""
        self._fn_shift = self._poc_shift = 0
        self._short.clear()
        self._long.clear()
        self._prev_ref_orig_frame_num = 0
        self._prev_poc_msb = self._prev_poc_lsb = 0
        self._last_poc = None

    def _problem_until_idr(self, problem: str) -> None:
        """The first problem of a coded video sequence is the one reported."""
        self._sequence_problem = self._sequence_problem or problem

    def _check(self, slices: list[tuple[int, SliceHeader]]) -> None:
        for _, header in slices:
            if header.kind == SLICE_B:
                self._stream_problem = "the stream has B slices (pictures are reordered)"
            elif header.kind in (SLICE_SP, SLICE_SI):
                self._stream_problem = "SP/SI slices are not supported"
            operations = header.memory_management_operations
            if any(op.memory_management_control_operation != 5 for op in operations):
                self._adaptive_marking_seen = True

    def _sent_numbers(self, header: SliceHeader, sps: SPS) -> tuple[int, int | None]:
        """frame_num and pic_order_cnt_lsb of a received slice, as sent."""
        frame_num = (header.frame_num + self._fn_shift) % sps.max_frame_num
        if header.pic_order_cnt_lsb is None:
            return frame_num, None
        return frame_num, (header.pic_order_cnt_lsb + self._poc_shift) % sps.max_pic_order_cnt_lsb

    def _renumber(self, nal: bytes, header: SliceHeader, sps: SPS) -> bytes:
        """The slice with the current shifts applied (and distances remapped)."""
        pps = self._pps[header.pic_parameter_set_id]
        frame_num, lsb = self._sent_numbers(header, sps)
        remapped = self._remap_distances(header, sps, frame_num)
        if remapped is None:
            return patch_slice_numbers(nal, header, sps, frame_num=frame_num, pic_order_cnt_lsb=lsb)
        new = attrs.evolve(remapped, frame_num=frame_num, pic_order_cnt_lsb=lsb)
        return replace_slice_header(nal, header, new, sps, pps)

    def _find(self, orig_frame_num: int) -> _Ref | None:
        for ref in self._short:
            if ref.orig_frame_num == orig_frame_num:
                return ref
        return None

    def _remap_distances(self, header: SliceHeader, sps: SPS, frame_num: int) -> SliceHeader | None:
        """``header`` with PicNum differences recomputed for the sent numbering,
        or None when none changes. Frames only: PicNum is FrameNumWrap and
        picNumNoWrap is FrameNum (8.2.4.1, 8.2.4.3.1)."""
        if sps.max_num_ref_frames <= 1:
            return None  # the one reference is the last picture: distance 1 both ways
        max_frame_num = sps.max_frame_num
        changes: dict = {}
        for list_name in ("l0", "l1"):
            ops = getattr(header, f"ref_pic_list_modification_{list_name}")
            if not ops:
                continue
            pred_orig, pred_sent = header.frame_num, frame_num
            new_ops = []
            for idc, value in ops:
                if idc == 2:
                    new_ops.append((idc, value))
                    continue
                step = value + 1
                target = (pred_orig - step if idc == 0 else pred_orig + step) % max_frame_num
                ref = self._find(target)
                if ref is None:
                    self._problem_until_idr(f"a reference list names frame_num {target}, unknown")
                    return None
                distance = (pred_sent - ref.frame_num if idc == 0 else ref.frame_num - pred_sent)
                distance %= max_frame_num
                new_ops.append((idc, (distance or max_frame_num) - 1))
                pred_orig, pred_sent = target, ref.frame_num
            if tuple(new_ops) != ops:
                changes[f"ref_pic_list_modification_{list_name}"] = tuple(new_ops)
        if header.memory_management_operations:
            new_mmco = []
            for op in header.memory_management_operations:
                if op.memory_management_control_operation in (1, 3):
                    target = _mmco_target(header, op, max_frame_num)
                    ref = self._find(target)
                    if ref is None:
                        self._problem_until_idr(f"an MMCO names frame_num {target}, unknown")
                        return None
                    distance = (frame_num - ref.frame_num) % max_frame_num
                    op = attrs.evolve(op, difference_of_pic_nums_minus1=distance - 1)
                new_mmco.append(op)
            if tuple(new_mmco) != header.memory_management_operations:
                changes["memory_management_operations"] = tuple(new_mmco)
        return attrs.evolve(header, **changes) if changes else None

    def _fill_frame_num_gap(self, header: SliceHeader, sps: SPS) -> None:
        """Frames missing from frame_num (gaps allowed) enter the DPB as
        "non-existing" frames through the sliding window (8.2.5.2)."""
        max_frame_num = sps.max_frame_num
        expected = (self._prev_ref_orig_frame_num + 1) % max_frame_num
        missing = (header.frame_num - expected) % max_frame_num
        if header.frame_num == self._prev_ref_orig_frame_num or not missing:
            return
        for k in range(missing):
            orig = (expected + k) % max_frame_num
            self._slide(sps)
            self._short.append(_Ref(orig, (orig + self._fn_shift) % max_frame_num, self._fn_shift))
        self._prev_ref_orig_frame_num = (header.frame_num - 1) % max_frame_num

    def _slide(self, sps: SPS) -> None:
        if len(self._short) + len(self._long) >= max(sps.max_num_ref_frames, 1) and self._short:
            self._short.pop(0)

    def _mark(self, header: SliceHeader, sps: SPS, frame_num: int) -> None:
        """Decoded reference picture marking (8.2.5), in the received numbering."""
        if not header.is_reference:
            return
        current = _Ref(header.frame_num, frame_num, self._fn_shift)
        self._prev_ref_orig_frame_num = header.frame_num
        if header.idr:
            if header.long_term_reference_flag:
                self._long.add(0)
            else:
                self._short.append(current)
            return
        if not header.adaptive_ref_pic_marking_mode_flag:
            self._slide(sps)
            self._short.append(current)
            return
        max_frame_num = sps.max_frame_num
        current_long = False
        for op in header.memory_management_operations:
            code = op.memory_management_control_operation
            if code in (1, 3):
                ref = self._find(_mmco_target(header, op, max_frame_num))
                if ref is not None:
                    self._short.remove(ref)
                    if code == 3:
                        self._long.add(op.long_term_frame_idx)
            elif code == 2:
                self._long.discard(op.long_term_pic_num)  # LongTermPicNum is the index for frames
            elif code == 4:
                self._long = {i for i in self._long if i < op.max_long_term_frame_idx_plus1}
            elif code == 5:
                self._short.clear()
                self._long.clear()
                current = _Ref(0, 0, 0)
            elif code == 6:
                self._long.add(op.long_term_frame_idx)
                current_long = True
        if not current_long:
            self._short.append(current)

    def _is_long_term_now(self, header: SliceHeader) -> bool:
        if header.idr:
            return header.long_term_reference_flag
        operations = header.memory_management_operations
        return any(op.memory_management_control_operation == 6 for op in operations)

    def _end_with_mmco5(self, header: SliceHeader, lsb: int | None) -> None:
        """After memory_management_control_operation 5 the picture counts as
        frame_num 0 with its order count moved to 0 (8.2.1): numbering restarts
        there for the received stream and the sent one alike."""
        top_after_reset = None
        if lsb is not None:
            bottom = header.delta_pic_order_cnt_bottom or 0
            top_after_reset = max(0, -bottom)  # TopFieldOrderCnt - Min(Top, Bottom)
        self._fn_shift = self._poc_shift = 0
        self._prev_ref_orig_frame_num = 0
        self._prev_poc_msb = 0
        self._prev_poc_lsb = top_after_reset or 0
        self._last_poc = None
        self._last = _Picture(
            frame_num=0,
            pic_order_cnt_lsb=top_after_reset,
            reference=True,
            long_term=self._is_long_term_now(header),
            pic_parameter_set_id=header.pic_parameter_set_id,
        )

    def _track_order(self, header: SliceHeader, sps: SPS, pps: PPS) -> None:
        """PicOrderCnt of the received picture (8.2.1.1) for pic_order_cnt_type 0:
        it must increase in decoding order, else pictures are reordered. Type 2
        increases by construction (8.2.1.3)."""
        if sps.pic_order_cnt_type != 0 or header.pic_order_cnt_lsb is None:
            return
        max_lsb = sps.max_pic_order_cnt_lsb
        lsb = header.pic_order_cnt_lsb
        if header.idr:
            self._prev_poc_msb = self._prev_poc_lsb = 0
        prev_msb, prev_lsb = self._prev_poc_msb, self._prev_poc_lsb
        if lsb < prev_lsb and prev_lsb - lsb >= max_lsb // 2:
            msb = prev_msb + max_lsb
        elif lsb > prev_lsb and lsb - prev_lsb > max_lsb // 2:
            msb = prev_msb - max_lsb
        else:
            msb = prev_msb
        top = msb + lsb
        poc = min(top, top + (header.delta_pic_order_cnt_bottom or 0))
        if self._last_poc is not None:
            if poc <= self._last_poc:
                self._stream_problem = "order counts do not increase (pictures are reordered)"
            else:
                self._poc_step = min(2, poc - self._last_poc)
        self._last_poc = poc
        if header.is_reference:
            self._prev_poc_msb, self._prev_poc_lsb = msb, lsb


def _mmco_target(header: SliceHeader, op: MemoryManagementOperation, max_frame_num: int) -> int:
    """FrameNum of picNumX = CurrPicNum - (difference_of_pic_nums_minus1 + 1) (8.2.5.4.1)."""
    return (header.frame_num - op.difference_of_pic_nums_minus1 - 1) % max_frame_num


def _unsupported(sps: SPS, pps: PPS, *, reordering: bool = True) -> str:
    """Why skip frames cannot follow pictures coded with ``sps`` and ``pps`` (empty: they can).
    ``reordering``: refuse an SPS that allows reordered frames."""
    if reordering and sps.max_num_reorder_frames:
        return f"the SPS allows {sps.max_num_reorder_frames} reordered frames (B-frames)"
    if sps.pic_order_cnt_type == 1:
        return "pic_order_cnt_type 1 is not supported"
    if not sps.frame_mbs_only_flag:
        return "interlaced coding (frame_mbs_only_flag 0) is not supported"
    if sps.separate_colour_plane_flag:
        return "separate colour planes are not supported"
    if sps.max_num_ref_frames == 0:
        return "max_num_ref_frames is 0: nothing can be predicted"
    if pps.num_slice_groups_minus1:
        return "slice groups (FMO) are not supported"
    return ""

