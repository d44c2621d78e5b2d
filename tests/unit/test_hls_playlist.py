"""MediaPlaylist: the exact m3u8 text of a live sliding window."""

from __future__ import annotations

import pytest

from rtmprelay.hls.playlist import MediaPlaylist, Segment


def test_empty_playlist():
    assert MediaPlaylist().render() == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
    )


def test_segments_and_target_duration_is_ceiling_of_longest():
    playlist = MediaPlaylist()
    assert playlist.add_segment("seg0.ts", 2.0) == []
    assert playlist.add_segment("seg1.ts", 2.033) == []
    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:3\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXTINF:2.000,\n"
        "seg0.ts\n"
        "#EXTINF:2.033,\n"
        "seg1.ts\n"
    )


def test_duration_is_kept_to_the_millisecond():
    playlist = MediaPlaylist()
    playlist.add_segment("a.ts", 2.0000001)  # float noise must not push the target to 3
    assert playlist.target_duration == 2
    assert playlist.segments == (Segment("a.ts", 2000),)


def test_window_slides_and_media_sequence_advances():
    playlist = MediaPlaylist(window=2)
    assert playlist.add_segment("s0.ts", 4.5) == []
    assert playlist.add_segment("s1.ts", 2) == []
    # s0 leaves the window here, but stays deletable only window + 1 = 3 segments later
    assert playlist.add_segment("s2.ts", 2) == []
    assert playlist.add_segment("s3.ts", 1.5) == []
    # the 4.5 s segment has gone, but the target duration must not shrink
    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:5\n"
        "#EXT-X-MEDIA-SEQUENCE:2\n"
        "#EXTINF:2.000,\n"
        "s2.ts\n"
        "#EXTINF:1.500,\n"
        "s3.ts\n"
    )
    assert playlist.add_segment("s4.ts", 2) == []
    assert playlist.add_segment("s5.ts", 2) == ["s0.ts"]
    assert playlist.add_segment("s6.ts", 2) == ["s1.ts"]


def test_discontinuity_tag_and_sequence():
    playlist = MediaPlaylist(window=2)
    playlist.add_segment("s0.ts", 2)
    playlist.add_segment("s1.ts", 2, discontinuity=True)
    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXTINF:2.000,\n"
        "s0.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXTINF:2.000,\n"
        "s1.ts\n"
    )
    playlist.add_segment("s2.ts", 2)
    # s1 (with its tag) is still first in the window: the count has not moved
    assert "#EXT-X-DISCONTINUITY-SEQUENCE" not in playlist.render()
    playlist.add_segment("s3.ts", 2)
    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:2\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:1\n"
        "#EXTINF:2.000,\n"
        "s2.ts\n"
        "#EXTINF:2.000,\n"
        "s3.ts\n"
    )


def test_end_writes_endlist_and_refuses_more():
    playlist = MediaPlaylist()
    playlist.add_segment("s0.ts", 1.25)
    playlist.end()
    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXTINF:1.250,\n"
        "s0.ts\n"
        "#EXT-X-ENDLIST\n"
    )
    with pytest.raises(ValueError, match="ended"):
        playlist.add_segment("s1.ts", 2)


@pytest.mark.parametrize("window", [0, -1])
def test_window_must_hold_a_segment(window):
    with pytest.raises(ValueError, match="window"):
        MediaPlaylist(window=window)


def test_negative_duration_is_refused():
    with pytest.raises(ValueError, match="negative"):
        MediaPlaylist().add_segment("s.ts", -0.5)
