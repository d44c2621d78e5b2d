"""Skip frames, checked by decoding: x264 clips with skip frames inserted decode
without a single error, to as many pictures as were sent, each skip frame
identical to the picture before it and every real picture identical to the
same picture decoded from the untouched stream."""

from __future__ import annotations

import random
import subprocess

import attrs
import av
import pytest

from rtmprelay.errors import MediaError
from rtmprelay.media import avc
from rtmprelay.media.avc import BitReader, BitWriter
from rtmprelay.media.skipframe import SkipFrameMaker, cabac_skip_slice_data
from tests.unit.test_media_avc import CLIPS, Clip, access_units, annexb, nal_type

PARAMETER_SETS = (avc.NAL_SPS, avc.NAL_PPS)
# after which real picture (decoding order) how many skip frames go in; IDRs are at 0, 8, 16
PLAN = {0: 1, 1: 2, 3: 1, 4: 5, 7: 2, 8: 3, 11: 4, 13: 1, 15: 2, 16: 1, 19: 3}


# --- decoding ----------------------------------------------------------------------------


def _planes(frame) -> tuple[bytes, ...]:
    sample = 2 if "10" in frame.format.name else 1
    out = []
    for plane in frame.planes:
        data = bytes(plane)
        row = plane.width * sample
        starts = range(0, plane.height * plane.line_size, plane.line_size)
        out.append(b"".join(data[start : start + row] for start in starts))
    return tuple(out)


def decode(aus) -> tuple[list[tuple[bytes, ...]], list[str]]:
    """Pictures decoded by ffmpeg's h264 decoder, and every warning or error it logged."""
    codec = av.CodecContext.create("h264", "r")
    codec.thread_count = 1
    pictures = []
    av.logging.set_level(av.logging.VERBOSE)
    try:
        with av.logging.Capture() as logs:
            for au in aus:
                pictures += [_planes(f) for f in codec.decode(av.Packet(annexb([au])))]
            pictures += [_planes(f) for f in codec.decode(None)]
    finally:
        av.logging.set_level(None)
    return pictures, [message for level, _, message in logs if level <= av.logging.WARNING]


def ffmpeg_complaints(aus, tmp_path) -> str:
    path = tmp_path / "out.h264"
    path.write_bytes(annexb(aus))
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "warning", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stderr


@attrs.define
class Run:
    sent: list  # access units as sent
    origin: list  # per sent AU: index of the real picture, or None for a skip frame
    refusals: dict  # real picture index -> why_not when a planned skip frame was refused
    maker: SkipFrameMaker


def insert(aus, plan, *, in_band=False, maker=None) -> Run:
    """Feed the stream to a maker the way the relay does (parameter sets from the
    sequence header, then access units) and insert skip frames after the
    pictures ``plan`` names, as far as the maker allows."""
    maker = maker or SkipFrameMaker()
    config = [nal for nal in aus[0] if nal_type(nal) in PARAMETER_SETS]
    if not in_band:
        sps = [nal for nal in config if nal_type(nal) == avc.NAL_SPS]
        maker.observe_config(sps, [nal for nal in config if nal_type(nal) == avc.NAL_PPS])
        aus = [[nal for nal in au if nal_type(nal) not in PARAMETER_SETS] for au in aus]
    run = Run([], [], {}, maker)
    for index, au in enumerate(aus):
        sent = maker.observe_frame(au)
        run.sent.append(sent if in_band or index else config + sent)
        run.origin.append(index)
        for _ in range(plan.get(index, 0)):
            if not maker.can_repeat:
                run.refusals[index] = maker.why_not
                break
            run.sent.append(maker.make_repeat())
            run.origin.append(None)
    return run


def assert_conforming_numbers(aus) -> None:
    """frame_num and the order counts of a stream as 7.4.3 and 8.2.1 want them
    (no gaps; output order is decoding order), read with our own parser: the
    decoder conceals a frame_num gap without a word."""
    sps_by_id: dict = {}
    pps_by_id: dict = {}
    prev_ref_frame_num = prev_msb = prev_lsb = frame_num_offset = prev_frame_num = 0
    last_poc = None
    for au in aus:
        headers = []
        for nal in au:
            if nal_type(nal) == avc.NAL_SPS:
                sps = avc.parse_sps(nal)
                sps_by_id[sps.seq_parameter_set_id] = sps
            elif nal_type(nal) == avc.NAL_PPS:
                pps = avc.parse_pps(nal, sps_by_id)
                pps_by_id[pps.pic_parameter_set_id] = pps
            elif nal_type(nal) in (avc.NAL_SLICE, avc.NAL_IDR_SLICE):
                headers.append(avc.parse_slice_header(nal, sps_by_id, pps_by_id))
        h = headers[0]
        numbers = {(x.frame_num, x.pic_order_cnt_lsb) for x in headers}
        assert numbers == {(h.frame_num, h.pic_order_cnt_lsb)}
        sps = sps_by_id[pps_by_id[h.pic_parameter_set_id].seq_parameter_set_id]
        if h.idr:
            assert h.frame_num == 0
            prev_ref_frame_num = prev_msb = prev_lsb = frame_num_offset = prev_frame_num = 0
            last_poc = None
        else:
            assert h.frame_num == (prev_ref_frame_num + 1) % sps.max_frame_num, "frame_num gap"
        if sps.pic_order_cnt_type == 0:
            max_lsb = sps.max_pic_order_cnt_lsb
            lsb = h.pic_order_cnt_lsb
            if lsb < prev_lsb and prev_lsb - lsb >= max_lsb // 2:
                msb = prev_msb + max_lsb
            elif lsb > prev_lsb and lsb - prev_lsb > max_lsb // 2:
                msb = prev_msb - max_lsb
            else:
                msb = prev_msb
            poc = msb + lsb
            if h.is_reference:
                prev_msb, prev_lsb = msb, lsb
        else:
            if not h.idr and prev_frame_num > h.frame_num:
                frame_num_offset += sps.max_frame_num
            poc = 2 * (frame_num_offset + h.frame_num) - (0 if h.is_reference else 1)
            prev_frame_num = h.frame_num
        assert last_poc is None or poc > last_poc, "order counts must increase"
        last_poc = poc
        if h.is_reference:
            prev_ref_frame_num = h.frame_num
        if h.mmco5:
            prev_ref_frame_num = prev_msb = prev_lsb = frame_num_offset = prev_frame_num = 0
            last_poc = None


def assert_repeats_exactly(aus, run: Run, tmp_path=None) -> None:
    reference, logs = decode(aus)
    assert logs == []
    assert len(reference) == len(aus)
    # the check means something only if pictures move
    assert sum(a != b for a, b in zip(reference, reference[1:])) >= len(aus) - 2
    assert_conforming_numbers(run.sent)
    pictures, logs = decode(run.sent)
    assert logs == []
    assert len(pictures) == len(run.sent)
    for index, (picture, origin) in enumerate(zip(pictures, run.origin)):
        if origin is None:
            assert picture == pictures[index - 1], f"skip frame {index} differs from the one before"
        else:
            assert picture == reference[origin], f"real picture {origin} (sent as {index}) changed"
    if tmp_path is not None:
        assert ffmpeg_complaints(run.sent, tmp_path) == ""


# --- the acceptance test: every supported x264 setting --------------------------------------

SUPPORTED = sorted(set(CLIPS) - {"bframes", "fake-interlaced"})


@pytest.mark.parametrize("name", SUPPORTED)
def test_skip_frames_repeat_the_picture_and_leave_the_rest_intact(name, tmp_path):
    aus = access_units(CLIPS[name])
    run = insert(aus, PLAN)
    assert run.refusals == {}
    assert run.maker.inserted == sum(k for index, k in PLAN.items() if index < len(aus))
    assert_repeats_exactly(aus, run, tmp_path)


def test_in_band_parameter_sets(tmp_path):
    aus = access_units(CLIPS["cabac-high-ref3-weightp"])
    run = insert(aus, PLAN, in_band=True)
    assert run.refusals == {}
    assert_repeats_exactly(aus, run, tmp_path)


def test_unlimited_skip_frames_with_one_reference(tmp_path):
    """40 in a row wrap frame_num (MaxFrameNum 16) more than twice."""
    for name in ("cavlc-baseline", "cabac-main", "intra-refresh"):
        aus = access_units(CLIPS[name])
        run = insert(aus, {2: 40, 5: 1, 12: 17})
        assert run.refusals == {}
        assert_repeats_exactly(aus, run)
    assert_repeats_exactly(aus, run, tmp_path)


def test_multiple_references_limit_skip_frames_in_a_row():
    """With max_num_ref_frames 3 an older reference stays usable, and its PicNum
    distance must stay below MaxFrameNum (16): 16 - 3 - 1 = 12 skip frames."""
    aus = access_units(CLIPS["cabac-high-ref3-weightp"])
    run = insert(aus, {5: 20, 6: 1, 7: 1, 13: 20})
    # after 6, picture 4 is still in the DPB (and 7 may use it); 7 pushes it out
    assert run.maker.inserted == 12 + 0 + 1 + 12
    assert set(run.refusals) == {5, 6, 13}
    assert "MaxFrameNum 16" in run.refusals[5]
    assert_repeats_exactly(aus, run)


# --- pic_order_cnt_type 0 ------------------------------------------------------------------


def _sps_with_poc_type_0(nal: bytes, log2_max_lsb_minus4: int) -> bytes:
    """The SPS with pic_order_cnt_type 2 replaced by 0 (x264 writes 0 only with B-frames)."""
    rbsp = avc.unescape_rbsp(nal[1:])
    r = BitReader(rbsp)
    profile_idc = r.u(8)
    r.u(16)
    r.ue()
    if profile_idc in (100, 110, 122, 244):
        if r.ue() == 3:
            r.u(1)
        r.ue(), r.ue(), r.u(1)
        assert not r.u(1)  # no scaling matrix
    r.ue()
    before = r.position
    assert r.ue() == 2
    after = r.position
    stripped = rbsp.rstrip(b"\x00")
    stop = len(stripped) * 8 - (stripped[-1] & -stripped[-1]).bit_length()
    bits = int.from_bytes(stripped, "big") >> (len(stripped) * 8 - stop)
    w = BitWriter().bits(bits >> (stop - before), before).ue(0).ue(log2_max_lsb_minus4)
    w.bits(bits, stop - after).rbsp_trailing_bits()
    return nal[:1] + avc.escape_rbsp(w.bytes())


def to_poc_type_0(aus, log2_max_lsb_minus4=0, step=2):
    """The stream rewritten to pic_order_cnt_type 0, pic_order_cnt_lsb stepping by
    ``step`` per picture from each IDR and wrapping at 2^(4 + log2_max_lsb_minus4)."""
    old_sps, new_sps, pps = {}, {}, {}
    out = []
    count = 0
    for au in aus:
        new_au = []
        first_slice = True
        for nal in au:
            kind = nal_type(nal)
            if kind == avc.NAL_SPS:
                sps = avc.parse_sps(nal)
                old_sps[sps.seq_parameter_set_id] = sps
                nal = _sps_with_poc_type_0(nal, log2_max_lsb_minus4)
                new_sps[sps.seq_parameter_set_id] = avc.parse_sps(nal)
            elif kind == avc.NAL_PPS:
                p = avc.parse_pps(nal, old_sps)
                pps[p.pic_parameter_set_id] = p
            elif kind in (avc.NAL_SLICE, avc.NAL_IDR_SLICE):
                header = avc.parse_slice_header(nal, old_sps, pps)
                if first_slice:
                    count = 0 if header.idr else count + 1
                    first_slice = False
                p = pps[header.pic_parameter_set_id]
                sps = new_sps[p.seq_parameter_set_id]
                lsb = (count * step) % sps.max_pic_order_cnt_lsb
                new = attrs.evolve(header, pic_order_cnt_lsb=lsb)
                nal = avc.replace_slice_header(nal, header, new, sps, p)
            new_au.append(nal)
        out.append(new_au)
    return out


POC0 = {
    "cavlc": Clip("keyint=30:scenecut=0:bframes=0:ref=1:cabac=0"),
    "cabac-ref3-weightp": Clip("keyint=30:scenecut=0:bframes=0:ref=3:weightp=2"),
    "cabac-keyint8": Clip("keyint=8:scenecut=0:bframes=0:ref=1"),
}


@pytest.mark.parametrize("name", sorted(POC0))
@pytest.mark.parametrize("step", [1, 2])
def test_poc_type_0_with_wrapping_lsb(name, step, tmp_path):
    aus = to_poc_type_0(access_units(POC0[name]), log2_max_lsb_minus4=0, step=step)
    sps = avc.parse_sps(aus[0][0])
    assert sps.pic_order_cnt_type == 0 and sps.max_pic_order_cnt_lsb == 16
    run = insert(aus, PLAN)
    assert run.refusals == {}
    assert_repeats_exactly(aus, run, tmp_path)
    # as sent, order counts go up by 1 or 2 from picture to picture, wrapping at 16
    pps = {0: avc.parse_pps(aus[0][1], {})}
    headers = [avc.parse_slice_header(au[-1], {0: sps}, pps) for au in run.sent]
    for before, after in zip(headers, headers[1:]):
        if not after.idr:
            assert (after.pic_order_cnt_lsb - before.pic_order_cnt_lsb) % 16 in (1, 2)


# --- what cannot be repeated -------------------------------------------------------------------


def test_b_frames_are_refused_and_passed_through():
    aus = access_units(CLIPS["bframes"])
    maker = SkipFrameMaker()
    for au in aus:
        assert maker.observe_frame(au) == au
        assert not maker.can_repeat
        assert "reordered" in maker.why_not
    with pytest.raises(MediaError, match="cannot make a skip frame"):
        maker.make_repeat()


def test_interlaced_coding_is_refused():
    run = insert(access_units(CLIPS["fake-interlaced"]), {3: 1})
    assert run.maker.inserted == 0
    assert "frame_mbs_only_flag" in run.refusals[3]


def test_nothing_before_the_first_idr():
    aus = access_units(CLIPS["cabac-main"])
    maker = SkipFrameMaker()
    assert maker.why_not == "no IDR picture yet"
    with pytest.raises(MediaError, match="no IDR picture yet"):
        maker.make_repeat()
    config = [n for n in aus[0] if nal_type(n) in PARAMETER_SETS]
    maker.observe_config(config[:1], config[1:])
    for au in aus[1:8]:
        assert maker.observe_frame(au) == au
        assert maker.why_not == "no IDR picture yet"
    maker.observe_frame(aus[8])
    assert maker.can_repeat


def _without_reference(nal: bytes, sps_by_id, pps_by_id) -> bytes:
    header = avc.parse_slice_header(nal, sps_by_id, pps_by_id)
    pps = pps_by_id[header.pic_parameter_set_id]
    new = attrs.evolve(header, nal_ref_idc=0, adaptive_ref_pic_marking_mode_flag=False)
    return avc.replace_slice_header(nal, header, new, sps_by_id[pps.seq_parameter_set_id], pps)


def test_a_non_reference_last_picture_is_not_repeated():
    """Pictures just before an IDR are referenced by nothing: made non-reference
    they decode the same, and a skip frame after one would show the picture before."""
    aus = access_units(CLIPS["cavlc-high-weightp"])
    sps = {0: avc.parse_sps(aus[0][0])}
    pps = {0: avc.parse_pps(aus[0][1], sps)}
    for index in (7, 15, 19):
        aus[index] = [_without_reference(n, sps, pps) if nal_type(n) == 1 else n for n in aus[index]]
    run = insert(aus, {6: 1, 7: 2, 15: 1, 16: 1, 19: 1})
    assert set(run.refusals) == {7, 15, 19}
    assert "not a reference picture" in run.refusals[7]
    assert run.maker.inserted == 2
    assert_repeats_exactly(aus, run)


def test_changed_parameter_sets_wait_for_an_idr():
    aus = access_units(CLIPS["cabac-main"])
    other = access_units(CLIPS["cabac-cropped"])
    maker = SkipFrameMaker()
    for au in aus[:3]:
        maker.observe_frame(au)
    assert maker.can_repeat
    maker.observe_config([other[0][0]], [other[0][1]])
    assert maker.why_not == "the SPS changed; waiting for an IDR"
    maker.observe_frame(other[0])
    assert maker.can_repeat


def test_unparsable_slices_are_passed_on_and_stop_repeats_until_an_idr():
    aus = access_units(CLIPS["cabac-main"])
    maker = SkipFrameMaker()
    for au in aus[:3]:
        maker.observe_frame(au)
    maker.make_repeat()
    broken = [aus[3][0][:2]]
    assert maker.observe_frame(broken) == broken
    assert maker.why_not.startswith("cannot follow the stream: truncated slice header")
    maker.observe_frame(aus[4])
    assert not maker.can_repeat
    maker.observe_frame(aus[8])
    assert maker.can_repeat


# --- the skip slice itself -----------------------------------------------------------------


def test_skip_slice_header():
    aus = access_units(CLIPS["cabac-high-ref3-weightp"])
    sps = {0: avc.parse_sps(aus[0][0])}
    pps = {0: avc.parse_pps(aus[0][1], sps)}
    maker = SkipFrameMaker()
    for au in aus[:4]:
        maker.observe_frame(au)
    (nal,) = maker.make_repeat()
    header = avc.parse_slice_header(nal, sps, pps)
    assert header.slice_type == 5 and header.first_mb_in_slice == 0 and header.nal_ref_idc == 2
    assert header.frame_num == 4
    assert header.num_ref_idx_active_override_flag and header.num_ref_idx_l0_active_minus1 == 0
    assert header.pred_weight_table == avc.PredWeightTable(0, 0, (avc.PredWeight(),))
    forget_the_twin = avc.MemoryManagementOperation(1, difference_of_pic_nums_minus1=0)
    assert header.memory_management_operations == (forget_the_twin,)
    assert header.cabac_init_idc == 0 and header.slice_qp_delta == 0
    assert header.disable_deblocking_filter_idc == 1


class CabacDecoder:
    """The arithmetic decoding engine of 9.3.3.2, to read back what the encoder wrote."""

    def __init__(self, data: bytes) -> None:
        self.r = BitReader(data)
        self.range = 510
        self.offset = self.r.u(9)

    def decision(self, context) -> int:
        from rtmprelay.media.skipframe import _RANGE_TAB_LPS, _TRANS_IDX_LPS

        state, mps = context
        lps = _RANGE_TAB_LPS[state][(self.range >> 6) & 3]
        self.range -= lps
        if self.offset >= self.range:
            bin_value = 1 - mps
            self.offset -= self.range
            self.range = lps
            if state == 0:
                context[1] = 1 - mps
            context[0] = _TRANS_IDX_LPS[state]
        else:
            bin_value = mps
            context[0] = min(state + 1, 62)
        self._renormalise()
        return bin_value

    def terminate(self) -> int:
        self.range -= 2
        if self.offset >= self.range:
            return 1
        self._renormalise()
        return 0

    def _renormalise(self) -> None:
        while self.range < 256:
            self.range <<= 1
            self.offset = (self.offset << 1) | self.r.u(1)


@pytest.mark.parametrize("pic_size_in_mbs", [1, 2, 3, 99, 396, 1200])
def test_cabac_skip_data_decodes_to_skip_flags_and_one_end_of_slice(pic_size_in_mbs):
    from rtmprelay.media.skipframe import _MB_SKIP_FLAG_MN, _context

    for qp in range(0, 52, 3 if pic_size_in_mbs > 99 else 1):
        data = cabac_skip_slice_data(pic_size_in_mbs, qp)
        decoder = CabacDecoder(data)
        context = _context(*_MB_SKIP_FLAG_MN, qp)
        for mb in range(pic_size_in_mbs):
            assert decoder.decision(context) == 1
            assert decoder.terminate() == (mb == pic_size_in_mbs - 1)
        # the last bit the decoder read is the rbsp_stop_one_bit (9.3.3.2.2.3),
        # what follows it the alignment zeros
        stop = decoder.r.position - 1
        tail = BitReader(data, position=stop)
        assert tail.u(1) == 1  # rbsp_stop_one_bit
        assert not any(tail.u(1) for _ in range(tail.bits_left))
        assert len(data) * 8 - stop <= 8


@pytest.mark.parametrize("name", ["cabac-main", "cavlc-high-ref3-weightp"])
def test_the_check_catches_frames_left_unrenumbered(name):
    """Skip frames followed by the frames as received, not renumbered: the
    decoder drops or mispredicts pictures, and the check above says so."""
    aus = access_units(CLIPS[name])
    run = insert(aus, PLAN, in_band=True)
    run.sent = [au if origin is None else aus[origin] for au, origin in zip(run.sent, run.origin)]
    with pytest.raises(AssertionError):
        assert_repeats_exactly(aus, run)


def test_remapping_distances_is_needed_with_several_references(monkeypatch):
    aus = access_units(CLIPS["cavlc-high-ref3-weightp"])
    monkeypatch.setattr(SkipFrameMaker, "_remap_distances", lambda *args: None)
    with pytest.raises(AssertionError):
        assert_repeats_exactly(aus, insert(aus, PLAN))


@pytest.mark.parametrize(
    "name", ["cavlc-high-ref3-weightp", "cabac-high-ref4-weightp-flicker", "cabac-slices"]
)
def test_mutated_streams_never_raise(name):
    """Damaged slices (bits flipped in their headers) are passed on; the maker
    keeps going and refuses to repeat until it can follow the stream again."""
    rnd = random.Random(name)
    aus = access_units(CLIPS[name])
    maker = SkipFrameMaker()
    for round_ in range(6):
        for au in aus:
            damaged = []
            for nal in au:
                if nal_type(nal) in (1, 5) and rnd.random() < 0.3:
                    data = bytearray(nal)
                    data[rnd.randrange(1, min(len(data), 12))] ^= 1 << rnd.randrange(8)
                    nal = bytes(data)
                damaged.append(nal)
            assert len(maker.observe_frame(damaged)) == len(damaged)
            if maker.can_repeat:
                (nal,) = maker.make_repeat()
                assert nal_type(nal) == 1
            else:
                assert maker.why_not


def with_mmco5(aus, index):
    """The stream with memory_management_control_operation 5 on picture ``index``
    (a one-reference stream, so the pictures after it only use it) and the
    pictures after it, up to the next IDR, numbered from 0 as 8.2.1 requires."""
    sps = {0: avc.parse_sps(aus[0][0])}
    pps = {0: avc.parse_pps(aus[0][1], sps)}
    base = None
    out = []
    for position, au in enumerate(aus):
        new_au = []
        for nal in au:
            if nal_type(nal) in (avc.NAL_SLICE, avc.NAL_IDR_SLICE):
                header = avc.parse_slice_header(nal, sps, pps)
                if header.idr:
                    base = None
                elif position == index:
                    base = header.frame_num
                    new = attrs.evolve(
                        header,
                        adaptive_ref_pic_marking_mode_flag=True,
                        memory_management_operations=(avc.MemoryManagementOperation(5),),
                    )
                    nal = avc.replace_slice_header(nal, header, new, sps[0], pps[0])
                elif base is not None:
                    frame_num = (header.frame_num - base) % sps[0].max_frame_num
                    nal = avc.patch_slice_numbers(nal, header, sps[0], frame_num=frame_num)
            new_au.append(nal)
        out.append(new_au)
    return out


def test_numbering_restarts_after_mmco5(tmp_path):
    original = access_units(CLIPS["cabac-main"])
    aus = with_mmco5(original, 3)
    assert decode(aus) == decode(original)
    run = insert(aus, {1: 2, 2: 1, 3: 2, 4: 1, 6: 3})
    assert run.refusals == {}
    assert_repeats_exactly(aus, run, tmp_path)
