"""Dirty streams through the real relay into nginx-rtmp, cleaned for Cloudflare.

Every fault scenario is published at once (one paced publisher each, like a
fleet of glasses) to one relay process that forwards to nginx-rtmp; each of
nginx's recordings must pass the strictness validator for the ``cloudflare``
profile and decode cleanly with PyAV, except a GOP longer than 10 s, which
cannot be fixed without re-encoding and must be reported instead.
"""

from __future__ import annotations

import pytest

from rtmprelay.testing import dirty as d
from rtmprelay.testing.validate import validate

pytestmark = pytest.mark.peers

SPEC = dict(seconds=7.0, size=(160, 96), fps=30.0, gop_s=2.0, video_bitrate=200_000)

SCENARIOS = {
    "clean": (),
    "vfr": (d.VariableFrameRate(min_fps=9, max_fps=15, seed=11),),
    "gop": (d.IrregularGop(intervals_s=(0.07, 0.4, 3.0, 0.1, 2.5), seed=4),),
    "fwd": (d.TimestampJump(at_s=2.5, delta_ms=45_000),),
    "back": (d.TimestampJump(at_s=4.5, delta_ms=-3_000),),
    "reset": (d.TimestampReset(at_s=3.5),),
    "skew": (d.AVSkew(audio_ahead_ms=600),),
    "agap": (d.AudioGap(at_s=2.0, duration_s=1.5),),
    "bframes": (),  # made with bframes=2 below
}


@pytest.fixture
def upstream(nginx_rtmp_factory):
    return nginx_rtmp_factory(applications=("live",))


@pytest.mark.parametrize("entropy", ["cavlc", "cabac"])
def test_every_fault_comes_out_of_the_relay_clean_for_cloudflare(
    entropy, upstream, rtmprelay_factory, dirty_stream_factory, dirty_publisher_factory
):
    relay = rtmprelay_factory(["--bridge-grace", "0", "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}", "--profile", "cloudflare"])
    streams = {
        name: dirty_stream_factory(
            d.DirtyStreamSpec(**SPEC, entropy=entropy, bframes=2 if name == "bframes" else 0).with_faults(*faults)
        )
        for name, faults in SCENARIOS.items()
    }
    publishers = {name: dirty_publisher_factory(relay.url(f"live/fleet/{name}"), stream) for name, stream in streams.items()}
    for publisher in publishers.values():
        publisher.wait()
        publisher.check()
    failures = []
    for name in SCENARIOS:
        report = validate(upstream.wait_recording(f"fleet/{name}"), "cloudflare", fps=30)
        if not report.ok:
            failures.append(f"{name}: {report.summary(5)}")
        elif report.decoded_video_frames is not None and report.decoded_video_frames < 6 * 30:
            failures.append(f"{name}: only {report.decoded_video_frames} frames decoded")
    assert not failures, "\n".join(failures)
    assert "breaks rule" in relay.log_text  # the preflight said what it repaired


def test_a_gop_longer_than_the_destination_allows_is_reported(upstream, rtmprelay_factory, dirty_stream_factory, dirty_publisher_factory):
    relay = rtmprelay_factory(["--bridge-grace", "0", "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}"])
    stream = dirty_stream_factory(d.DirtyStreamSpec(**{**SPEC, "seconds": 12.0}).with_faults(d.LongGop(seconds=10.8, at_s=0.0)))
    publisher = dirty_publisher_factory(relay.url("live/fleet/long"), stream, speed=2.0)
    publisher.wait()
    publisher.check()
    report = validate(upstream.wait_recording("fleet/long"), "cloudflare", fps=30)
    assert report.failed_checks() == {"keyframe_interval"}, report.summary()
    assert "GOP of" in relay.log_text and "only re-encoding can shorten it" in relay.log_text


def test_no_clean_passes_the_dirt_through(upstream, rtmprelay_factory, dirty_stream_factory, dirty_publisher_factory):
    relay = rtmprelay_factory(["--bridge-grace", "0", "--forward", f"rtmp://127.0.0.1:{upstream.port}/live/{{path}}", "--no-clean"])
    stream = dirty_stream_factory(d.DirtyStreamSpec(**SPEC).with_faults(*SCENARIOS["vfr"]))
    publisher = dirty_publisher_factory(relay.url("live/fleet/raw"), stream, speed=2.0)
    publisher.wait()
    publisher.check()
    report = validate(upstream.wait_recording("fleet/raw"), "cloudflare", fps=30)
    assert "frame_interval" in report.failed_checks()
