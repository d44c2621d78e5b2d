"""Frames whose decoding time a muxer squashed onto the frame before (issue 9).

GStreamer's flvmux clamps x264's negative decoding times to 0, so a B-frame stream
starts I, P, B all at DTS 0; another muxer may repeat a DTS once mid-stream. The
cleaner gives such a frame a decoding time of its own within the slot of the frame
before and lowers its composition time by as much: its presentation time is kept.
The tags here are libx264's own frames (``x264-default``: 3 B-frames, b-pyramid,
max_num_reorder_frames 2) with decoding and composition times set by hand.
"""

from __future__ import annotations

import pytest

from rtmprelay.media import tags as flv_tags
from rtmprelay.media.cleaner import StreamCleaner
from rtmprelay.media.message import MediaMessage
from rtmprelay.testing.validate import validate
from tests.unit.test_cleaner_encoders import CLOUDFLARE

PERIOD_MS = 1000 / 30


def cts_of(payload: bytes) -> int:
    return int.from_bytes(payload[2:5], "big", signed=True)


def is_frame(tag) -> bool:
    return tag.tag_type == 9 and tag.payload[1] == 1


def restamped(tags, decoding_times: dict[int, int], shift_ms: int = 0):
    """The stream as (type, timestamp, payload), frame ``i`` decoded at ``decoding_times[i]``
    where given, every presentation time (and audio) ``shift_ms`` earlier; audio that
    would go below 0 is left out. Presentation times stay what they were."""
    out, index = [], 0
    for tag in tags:
        if tag.tag_type not in (8, 9):
            continue
        if not is_frame(tag):
            if tag.timestamp - shift_ms >= 0 or tag.payload[1] == 0:
                out.append((tag.tag_type, max(0, tag.timestamp - shift_ms), tag.payload))
            continue
        shown = tag.timestamp + cts_of(tag.payload) - shift_ms
        dts = decoding_times.get(index, tag.timestamp - shift_ms)
        out.append((9, dts, flv_tags.with_composition_time(tag.payload, shown - dts)))
        index += 1
    out.sort(key=lambda message: message[1])  # a muxer sends in timestamp order
    return out


def clean(messages):
    cleaner = StreamCleaner(CLOUDFLARE)
    out = []
    for type_id, ts, payload in messages:
        out.extend(cleaner.push(MediaMessage.of(type_id, ts, payload), ts / 1000))
    out.extend(cleaner.poll(messages[-1][1] / 1000 + 5))
    out.extend(cleaner.finish())
    return cleaner, [(m.type_id, m.timestamp, m.payload) for m in out]


def frames(out):
    return [(ts, cts_of(p)) for type_id, ts, p in out if type_id == 9 and p[1] == 1]


def shown(messages):
    return [ts + cts_of(p) for type_id, ts, p in messages if type_id == 9 and p[1] == 1]


def assert_well_formed(out):
    decoding = [dts for dts, _ in frames(out)]
    assert all(b > a for a, b in zip(decoding, decoding[1:])), decoding
    assert all(cts >= 0 for _, cts in frames(out)), frames(out)
    timestamps = [ts for _, ts, _ in out]
    assert timestamps == sorted(timestamps)


@pytest.fixture
def x264(encoder_tags):
    tags = encoder_tags("x264-default")
    first = [t for t in tags if is_frame(t)][:2]
    # libx264 (via ffmpeg) decodes its first frame at 0 and shows it at 67: two frames of reordering
    assert [(t.timestamp, cts_of(t.payload)) for t in first] == [(0, 67), (34, 133)]
    return tags


def test_a_squashed_start_is_kept_with_its_presentation_times(x264):
    """As flvmux writes it: x264's DTS -67 and -33 clamped to 0 (I, P, B at 0)."""
    given = restamped(x264, {0: 0, 1: 0}, shift_ms=67)
    assert [(dts, cts) for dts, cts in frames(given)][:4] == [(0, 0), (0, 100), (0, 33), (33, 34)]
    cleaner, out = clean(given)
    counters = cleaner.counters
    assert counters.video_out == counters.video_in == 300, counters
    assert (counters.squeezed, counters.retimed, counters.dropped) == (2, 0, 0), counters
    # the P and B get decoding times of their own, a third of a frame apart, before the
    # b-frame's slot; every frame is shown when it was
    assert frames(out)[:4] == [(0, 0), (11, 89), (22, 11), (33, 34)]
    assert shown(out) == shown(given)
    assert_well_formed(out)
    verdicts = {v.rule: v for v in cleaner.verdicts()}
    assert verdicts["monotonic_timestamps"].repaired and "squashed" in verdicts["monotonic_timestamps"].detail
    assert "constant_frame_rate" not in verdicts
    report = validate(out, "generic", fps=30)
    assert report.decode_errors == 0 and not report.failed_checks() - {"keyframe_interval"}, report.summary()


def test_a_dts_repeated_once_mid_stream_is_kept_and_the_next_frame_keeps_its_slot(x264):
    """Frame 40's DTS is frame 39's (its presentation time unchanged): squeezed into
    frame 39's slot; frame 41 takes its own slot, no gap counted, no frame lost."""
    video = [t for t in x264 if is_frame(t)]
    given = restamped(x264, {40: video[39].timestamp})
    cleaner, out = clean(given)
    counters = cleaner.counters
    assert counters.video_out == counters.video_in, counters
    assert (counters.squeezed, counters.retimed, counters.dropped) == (1, 0, 0), counters
    # shown when it was (to the grid's rounding of its slot, exactly as frame 39)
    moved = [b - a for a, b in zip(shown(given), shown(out))]
    assert all(abs(m) <= 1 for m in moved) and moved[40] == moved[39], moved
    assert frames(out)[40][0] - frames(out)[39][0] < PERIOD_MS
    assert_well_formed(out)
    assert "constant_frame_rate" not in {v.rule for v in cleaner.verdicts()}


@pytest.mark.parametrize("stuck", [4, 8])
def test_a_stuck_decoding_time_is_squeezed_at_most_the_reorder_depth(x264, stuck):
    """Frames 1..stuck all decoded at 0: two (the SPS's max_num_reorder_frames) are
    squeezed after the keyframe, the rest go the old way (retimed, or dropped if
    nothing references them), in decoding order, never shown before they are decoded."""
    cleaner, out = clean(restamped(x264, {i: 0 for i in range(1, stuck + 1)}))
    counters = cleaner.counters
    assert counters.squeezed == 2, counters
    assert counters.retimed + counters.dropped + counters.dropped_for_lag >= stuck - 2, counters
    assert counters.video_out == counters.video_in - counters.dropped - counters.dropped_for_lag
    assert_well_formed(out)


def test_a_collision_its_presentation_time_does_not_allow_goes_the_old_way(encoder_tags):
    """No B-frames (composition time 0): a frame decoded at its predecessor's time is shown
    then too; a later decoding time would need a negative composition time, so it is
    retimed to the next slot as before, not squeezed."""
    tags = encoder_tags("x264-baseline")
    video = [t for t in tags if is_frame(t)]
    assert all(cts_of(t.payload) == 0 for t in video)
    given = [(t.tag_type, t.timestamp, t.payload) for t in tags if t.tag_type in (8, 9)]
    index = [i for i, m in enumerate(given) if m[0] == 9 and m[2] is video[40].payload][0]
    given[index] = (9, video[39].timestamp, video[40].payload)  # stamped as the frame before, shown then
    cleaner, out = clean(given)
    assert cleaner.counters.squeezed == 0 and cleaner.counters.retimed >= 1, cleaner.counters
    assert cleaner.counters.video_out == cleaner.counters.video_in
    assert_well_formed(out)


def test_squeezed_frames_are_counted_for_api_streams_and_metrics(x264):
    from twisted.internet.task import Clock

    from rtmprelay.relay.registry import StreamRegistry
    from rtmprelay.web.metrics import RelayCollector
    from tests.unit.test_hls_output import Publisher
    from tests.unit.test_metrics import Scrape

    registry = StreamRegistry(cleaning=CLOUDFLARE)
    stream = registry.start("live/u1/gst", Publisher())
    for type_id, ts, payload in restamped(x264, {0: 0, 1: 0}, shift_ms=67):
        stream.publish_media(MediaMessage.of(type_id, ts, payload), ts / 1000)
    assert stream.cleaner.counters.as_dict()["squeezed"] == 2  # /api/streams' "cleaner"
    scrape = Scrape(RelayCollector(registry, clock=Clock()))
    assert scrape.value("rtmprelay_stream_video_frames_squeezed_total", path="live/u1/gst") == 2
