"""Segmenter with container="fmp4": CMAF tracks, HLS master + media playlists.

Real H.264 + AAC made with the ffmpeg CLI, fed through the FLV adapter (copy
mode) and through the packet API (demuxed from MP4, so time bases 1/15360 and
1/44100 and negative B-frame dts); every segment is decoded behind its init
segment, its boxes read back, and ffmpeg's HLS and DASH demuxers read the lot.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from rtmprelay.errors import MediaError
from rtmprelay.hls.packets import AudioFormat, EncodedPacket, VideoFormat, avc_codec_string
from rtmprelay.hls.playlist import MediaPlaylist, Rendition, Variant, render_master
from rtmprelay.hls.cmaf import video_init_segment
from rtmprelay.hls.segmenter import FlvSegmenter, Segmenter, SegmentSettings
from rtmprelay.media import avc
from rtmprelay.media.bits import BitWriter
from rtmprelay.media.avcc import nal_units_to_annexb, parse_avc_config, split_nal_units
from rtmprelay.testing.flv import read_flv_tags
from tests.unit.test_media_avc import high_profile_sps

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

FPS = 30
FRAME_S = 1 / FPS
VIDEO_SCALE = 90000
FMP4 = SegmentSettings(container="fmp4")


# --- inputs


def _encode(path: Path, seconds: int, size: str = "160x96", fmt: str = "flv") -> Path:
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={FPS}",
            "-f", "lavfi", "-i", "sine",
            "-t", str(seconds),
            "-c:v", "libx264", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
            "-c:a", "aac", "-f", fmt, str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path


def _tags(path: Path) -> list:
    return [tag for tag in read_flv_tags(path) if tag.tag_type in (8, 9)]


def mp4_packets(path: Path) -> tuple[VideoFormat, AudioFormat, list[EncodedPacket]]:
    """What a transcoder hands the segmenter: Annex B with SPS/PPS on keyframes, raw AAC."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        avc = parse_avc_config(video.codec_context.extradata)
        video_format = VideoFormat(
            nal_units_to_annexb(avc.sps + avc.pps),
            video.codec_context.width,
            video.codec_context.height,
            avc_codec_string(avc.sps[0]),
            Fraction(FPS),
        )
        audio_format = AudioFormat(
            bytes(audio.codec_context.extradata),
            audio.codec_context.sample_rate,
            audio.codec_context.layout.nb_channels,
        )
        packets = []
        for packet in container.demux(video, audio):
            if packet.dts is None:
                continue  # the demuxer's end-of-stream packets
            if packet.stream.type == "video":
                nals = split_nal_units(bytes(packet), avc.nal_length_size)
                if packet.is_keyframe:
                    nals = [*avc.sps, *avc.pps, *nals]
                data, kind = nal_units_to_annexb(nals), "video"
            else:
                data, kind = bytes(packet), "audio"
            packets.append(
                EncodedPacket(kind, data, packet.dts, packet.pts, Fraction(packet.time_base), packet.is_keyframe)
            )
    return video_format, audio_format, packets


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    directory = tmp_path_factory.mktemp("media")
    return {
        "flv9": _tags(_encode(directory / "a.flv", 9)),
        "flv14": _tags(_encode(directory / "b.flv", 14)),
        "flv_big": _tags(_encode(directory / "c.flv", 5, size="192x128")),
        "mp4": mp4_packets(_encode(directory / "d.mp4", 7, fmt="mp4")),
    }


def _push_tags(segmenter, tags):
    for tag in tags:
        segmenter.push(tag.tag_type, tag.timestamp, tag.payload)


def _coded(tags, kind):
    return [t for t in tags if t.tag_type == kind and not t.is_header]


# --- reading back: m3u8, boxes, decoding


def parse_media_playlist(text: str):
    """(header tags, [(duration, uri, discontinuity, map uri)], ended)."""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    headers, segments, ended = {}, [], False
    duration, discontinuity, current_map = None, False, None
    for line in lines[1:]:
        if line == "#EXT-X-ENDLIST":
            ended = True
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line.startswith("#EXT-X-MAP:URI="):
            current_map = line[len("#EXT-X-MAP:URI=") :].strip('"')
        elif line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].rstrip(","))
        elif line.startswith("#EXT"):
            key, _, value = line[1:].partition(":")
            headers[key] = value
        else:
            segments.append((duration, line, discontinuity, current_map))
            duration, discontinuity = None, False
    return headers, segments, ended


def _attributes(text: str) -> dict:
    out, key, value, quoted = {}, "", "", False
    state = "key"
    for char in text + ",":
        if state == "key":
            if char == "=":
                state = "value"
            else:
                key += char
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            out[key] = value
            key, value, state = "", "", "key"
        else:
            value += char
    return out


def parse_master(text: str):
    """([EXT-X-MEDIA attributes], [(EXT-X-STREAM-INF attributes, uri)])."""
    lines = text.splitlines()
    media, variants = [], []
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-MEDIA:"):
            media.append(_attributes(line[len("#EXT-X-MEDIA:") :]))
        elif line.startswith("#EXT-X-STREAM-INF:"):
            variants.append((_attributes(line[len("#EXT-X-STREAM-INF:") :]), lines[index + 1]))
    return media, variants


def boxes(data: bytes, start: int = 0, end: int | None = None):
    end = len(data) if end is None else end
    while start < end:
        size, kind = struct.unpack_from(">I4s", data, start)
        assert size >= 8 and start + size <= end, (kind, size)
        yield kind.decode(), start + 8, start + size
        start += size


def find_box(data: bytes, *path: str) -> bytes:
    start, end = 0, len(data)
    for name in path:
        for kind, body, box_end in boxes(data, start, end):
            if kind == name:
                start, end = body, box_end
                break
        else:
            raise AssertionError(f"no {name} in {path}")
    return data[start:end]


@pytest.fixture
def fragment():
    return read_fragment


def read_fragment(segment: bytes):
    """(tfdt, sample durations, composition offsets, sample sizes, mdat size) of one-fragment segment."""
    assert [kind for kind, _, _ in boxes(segment)] == ["styp", "moof", "mdat"]
    tfdt = find_box(segment, "moof", "traf", "tfdt")
    assert tfdt[0] == 1
    base = struct.unpack_from(">Q", tfdt, 4)[0]
    trun = find_box(segment, "moof", "traf", "trun")
    flags = int.from_bytes(trun[1:4], "big")
    count = struct.unpack_from(">I", trun, 4)[0]
    offset = 8 + (4 if flags & 0x1 else 0) + (4 if flags & 0x4 else 0)
    durations, offsets, sizes = [], [], []
    for _ in range(count):
        if flags & 0x100:
            durations.append(struct.unpack_from(">I", trun, offset)[0])
            offset += 4
        if flags & 0x200:
            sizes.append(struct.unpack_from(">I", trun, offset)[0])
            offset += 4
        if flags & 0x400:
            offset += 4
        if flags & 0x800:
            offsets.append(struct.unpack_from(">i", trun, offset)[0])
            offset += 4
        else:
            offsets.append(0)
    mdat = len(find_box(segment, "mdat"))
    return base, durations, offsets, sizes, mdat


def timescale(init: bytes) -> int:
    mdhd = find_box(init, "moov", "trak", "mdia", "mdhd")
    return struct.unpack_from(">I", mdhd, 12)[0]


def decode(init: bytes, segment: bytes, strict: bool = False) -> list:
    """Every frame of init + segment, decoded by PyAV; ``strict``: the ffmpeg CLI
    must not complain either (PyAV conceals decoding errors)."""
    with av.open(io.BytesIO(init + segment)) as container:
        frames = list(container.decode(container.streams[0]))
    if not strict:
        return frames
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "mp4", "-i", "pipe:0", "-f", "null", "-"],
        input=init + segment,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    return frames


def ffprobe_codecs(path: Path) -> list[str]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
    )
    assert done.returncode == 0, done.stderr
    return sorted(set(done.stdout.split()))


def ffmpeg_errors(path: Path) -> str:
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def check_track(directory: Path, kind: str, strict: bool = False) -> list[tuple[str, int, int, int]]:
    """Decode every listed segment of a track behind its init; tfdt must be continuous
    within each run between discontinuities. Returns (uri, tfdt, sum of durations, frames)."""
    _, segments, _ = parse_media_playlist((directory / f"{kind}.m3u8").read_text())
    out = []
    previous_end = None
    for _, uri, discontinuity, map_uri in segments:
        init = (directory / map_uri).read_bytes()
        data = (directory / uri).read_bytes()
        base, durations, offsets, sizes, mdat = read_fragment(data)
        assert sum(sizes) == mdat
        assert all(d > 0 for d in durations)
        if previous_end is not None:
            if discontinuity:
                assert base >= previous_end  # keeps growing across a reconnect
            else:
                assert base == previous_end  # each segment joins the last exactly
        previous_end = base + sum(durations)
        frames = decode(init, data, strict)
        assert len(frames) == len(durations)
        if kind == "video":
            assert frames[0].key_frame
            # presentation time of the first picture = tfdt + its composition offset
            assert frames[0].pts * frames[0].time_base == Fraction(base + offsets[0], timescale(init))
        out.append((uri, base, sum(durations), len(frames)))
    return out


# --- the tests


def test_flv_copy_mode_writes_cmaf_tracks_that_decode(media, tmp_path):
    tags = media["flv9"]
    infos = []
    segmenter = FlvSegmenter(tmp_path, FMP4, on_segment=infos.append)
    _push_tags(segmenter, tags)
    segmenter.finish()

    assert segmenter.playlist_path == tmp_path / "index.m3u8"
    assert segmenter.manifest_path == tmp_path / "manifest.mpd"
    renditions, variants = parse_master((tmp_path / "index.m3u8").read_text())
    assert renditions == [
        {
            "TYPE": "AUDIO", "GROUP-ID": "audio", "NAME": "audio", "DEFAULT": "YES",
            "AUTOSELECT": "YES", "CHANNELS": "1", "URI": "audio.m3u8",
        }
    ]  # fmt: skip
    [(variant, uri)] = variants
    assert uri == "video.m3u8"
    sps = parse_avc_config(next(t for t in tags if t.tag_type == 9 and t.is_header).payload[5:]).sps[0]
    assert variant["CODECS"] == f"{avc_codec_string(sps)},mp4a.40.2"
    assert variant["RESOLUTION"] == "160x96"
    assert variant["AUDIO"] == "audio"
    # BANDWIDTH is the peak of (video + audio bytes) * 8 / duration over the segments
    sizes = [
        ((tmp_path / f"video_{n}.m4s").stat().st_size + (tmp_path / f"audio_{n}.m4s").stat().st_size) * 8
        for n in range(5)
    ]
    durations = [info.duration_s for info in infos]
    assert int(variant["BANDWIDTH"]) == max(-(-size * 1000 // round(d * 1000)) for size, d in zip(sizes, durations))

    headers, segments, ended = parse_media_playlist((tmp_path / "video.m3u8").read_text())
    assert ended
    assert headers["EXT-X-VERSION"] == "7"
    assert "EXT-X-INDEPENDENT-SEGMENTS" in headers
    assert [(uri, map_uri) for _, uri, _, map_uri in segments] == [(f"video_{n}.m4s", "video_init.mp4") for n in range(5)]
    for duration, _, discontinuity, _ in segments[:-1]:
        assert abs(duration - 2.0) <= FRAME_S
        assert not discontinuity
    assert abs(segments[-1][0] - 1.0) <= FRAME_S
    assert [(i.uri, i.sequence, i.discontinuity, i.playlist, i.manifest) for i in infos] == [
        (f"video_{n}.m4s", n, False, "index.m3u8", "manifest.mpd") for n in range(5)
    ]
    assert infos[0].files == ("video_0.m4s", "audio_0.m4s")

    video = check_track(tmp_path, "video", strict=True)
    audio = check_track(tmp_path, "audio", strict=True)
    assert timescale((tmp_path / "video_init.mp4").read_bytes()) == VIDEO_SCALE
    assert timescale((tmp_path / "audio_init.mp4").read_bytes()) == 44100
    assert sum(frames for *_, frames in video) == len(_coded(tags, 9))
    # audio from the first keyframe's presentation time on: the frames before it are dropped
    first_key = next(t for t in _coded(tags, 9))
    start_ms = first_key.timestamp + int.from_bytes(first_key.payload[2:5], "big", signed=True)
    after = [t for t in _coded(tags, 8) if tags.index(t) > tags.index(first_key) and t.timestamp >= start_ms]
    assert sum(frames for *_, frames in audio) == len(after)
    # audio is cut where video is: each audio segment begins within a frame of its video segment
    for (_, video_base, _, _), (_, audio_base, durations, _), (_, _, offsets, _, _) in zip(
        video, audio, [read_fragment((tmp_path / f"video_{n}.m4s").read_bytes()) for n in range(5)]
    ):
        video_start = Fraction(video_base + offsets[0], VIDEO_SCALE)
        assert abs(Fraction(audio_base, 44100) - video_start) < Fraction(1024, 44100)
    assert not list(tmp_path.glob("*.tmp"))
    assert ffprobe_codecs(tmp_path / "index.m3u8") == ["aac", "h264"]
    assert ffprobe_codecs(tmp_path / "manifest.mpd") == ["aac", "h264"]
    assert ffmpeg_errors(tmp_path / "index.m3u8") == ""


def test_packet_api_with_encoder_time_bases(media, tmp_path):
    video_format, audio_format, packets = media["mp4"]
    assert packets[0].dts < 0  # B-frames: the encoder's clock starts before 0
    segmenter = Segmenter(tmp_path, FMP4)
    segmenter.set_formats(video_format, audio_format)
    for packet in packets:
        segmenter.push(packet)
    segmenter.finish()

    _, segments, ended = parse_media_playlist((tmp_path / "video.m3u8").read_text())
    assert ended
    assert [abs(d - 2.0) <= FRAME_S for d, *_ in segments] == [True, True, True, False]
    assert abs(segments[-1][0] - 1.0) <= FRAME_S
    video = check_track(tmp_path, "video", strict=True)
    audio = check_track(tmp_path, "audio", strict=True)
    assert video[0][1] == 0  # negative dts shifted to 0, the decode timeline kept
    assert sum(frames for *_, frames in video) == sum(p.kind == "video" for p in packets)
    # every AAC frame lasts 1024 samples: the 1/44100 clock is kept exactly
    for uri, *_ in audio:
        assert set(read_fragment((tmp_path / uri).read_bytes())[1]) == {1024}
    assert "FRAME-RATE=30.000" in (tmp_path / "index.m3u8").read_text()
    assert ffprobe_codecs(tmp_path / "index.m3u8") == ["aac", "h264"]
    assert ffprobe_codecs(tmp_path / "manifest.mpd") == ["aac", "h264"]


def test_window_keeps_five_and_deletes_older_files(media, tmp_path):
    segmenter = FlvSegmenter(tmp_path, SegmentSettings(container="fmp4", window=5))
    _push_tags(segmenter, media["flv14"])
    headers, segments, ended = parse_media_playlist((tmp_path / "video.m3u8").read_text())
    assert not ended
    assert [uri for _, uri, _, _ in segments] == [f"video_{n}.m4s" for n in range(1, 6)]
    assert headers["EXT-X-MEDIA-SEQUENCE"] == "1"

    segmenter.finish()
    _, video, _ = parse_media_playlist((tmp_path / "video.m3u8").read_text())
    _, audio, _ = parse_media_playlist((tmp_path / "audio.m3u8").read_text())
    names = [uri for _, uri, _, _ in video + audio]
    assert names == [f"video_{n}.m4s" for n in range(2, 7)] + [f"audio_{n}.m4s" for n in range(2, 7)]
    playlists = ["index.m3u8", "video.m3u8", "audio.m3u8", "manifest.mpd", "video_init.mp4", "audio_init.mp4"]
    # segment 0 and 1 left the window but stay for window + 1 more segments (RFC 8216 6.2.2)
    departed = ["video_0.m4s", "video_1.m4s", "audio_0.m4s", "audio_1.m4s"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names + playlists + departed)
    check_track(tmp_path, "video")
    check_track(tmp_path, "audio")
    assert ffmpeg_errors(tmp_path / "index.m3u8") == ""


def test_restart_is_a_discontinuity_with_growing_tfdt(media, tmp_path):
    tags = media["flv9"]
    infos = []
    segmenter = FlvSegmenter(tmp_path, SegmentSettings(container="fmp4", window=10), on_segment=infos.append)
    # its audio runs 0.4 s past its last picture: the next publisher starts after both
    _push_tags(segmenter, [t for t in tags if t.timestamp < 4500 or (t.tag_type == 8 and t.timestamp < 4900)])
    segmenter.restart()
    _push_tags(segmenter, tags)  # the same publisher again: its clock starts at 0
    segmenter.finish()

    text = (tmp_path / "video.m3u8").read_text()
    _, segments, _ = parse_media_playlist(text)
    assert [d for _, _, d, _ in segments] == [False, False, False, True, False, False, False, False]
    assert [i.discontinuity for i in infos] == [False, False, False, True, False, False, False, False]
    # same SPS/PPS: the same init segment, stated again after the discontinuity
    assert {m for *_, m in segments} == {"video_init.mp4"}
    assert text.count('#EXT-X-MAP:URI="video_init.mp4"') == 2
    assert not (tmp_path / "video_init_1.mp4").exists()
    video = check_track(tmp_path, "video")
    audio = check_track(tmp_path, "audio")
    bases = [base for _, base, _, _ in video]
    assert bases == sorted(set(bases))
    assert [d for _, _, d, _ in parse_media_playlist((tmp_path / "audio.m3u8").read_text())[1]] == [
        False, False, False, True, False, False, False, False,
    ]  # fmt: skip
    assert [b for _, b, _, _ in audio] == sorted({b for _, b, _, _ in audio})
    assert ffmpeg_errors(tmp_path / "index.m3u8") == ""
    assert ffprobe_codecs(tmp_path / "manifest.mpd") == ["aac", "h264"]


def test_new_formats_after_restart_get_a_new_init_segment(media, tmp_path):
    segmenter = FlvSegmenter(tmp_path, SegmentSettings(container="fmp4", window=4))
    _push_tags(segmenter, media["flv9"][: len(media["flv9"]) // 2])  # 2 + 2 + 0.5 s
    segmenter.restart()
    _push_tags(segmenter, media["flv_big"])  # another encoder: 192x128, 2 + 2 + 1 s
    segmenter.finish()

    text = (tmp_path / "video.m3u8").read_text()
    _, segments, _ = parse_media_playlist(text)
    maps = [m for *_, m in segments]
    assert maps == ["video_init.mp4"] + ["video_init_1.mp4"] * 3
    assert [d for _, _, d, _ in segments] == [False, True, False, False]
    assert (tmp_path / "audio_init.mp4").exists() and not (tmp_path / "audio_init_1.mp4").exists()
    for _, uri, _, map_uri in segments:
        frames = decode((tmp_path / map_uri).read_bytes(), (tmp_path / uri).read_bytes())
        assert (frames[0].width, frames[0].height) == ((160, 96) if map_uri == "video_init.mp4" else (192, 128))
    check_track(tmp_path, "video")
    assert "RESOLUTION=192x128" in (tmp_path / "index.m3u8").read_text()
    # not ffmpeg_errors(index.m3u8): ffmpeg 5.1's HLS demuxer reads the new
    # EXT-X-MAP but keeps the old avcC, and avc1 samples carry no SPS/PPS of
    # their own (ISO/IEC 14496-15 avc1; avc3 would allow them in-band)
    assert ffprobe_codecs(tmp_path / "index.m3u8") == ["aac", "h264"]

    # back to 160x96: a new name (players may hold the old file), and the
    # inits no listed segment needs any more are deleted
    segmenter.reopen()
    _push_tags(segmenter, media["flv14"])
    _, segments, _ = parse_media_playlist((tmp_path / "video.m3u8").read_text())
    assert {m for *_, m in segments} == {"video_init_2.mp4"}
    assert sorted(p.name for p in tmp_path.glob("*init*")) == ["audio_init.mp4", "video_init_2.mp4"]


def test_finish_reopen_and_remove_files(media, tmp_path):
    folder = tmp_path / "live" / "cam"
    segmenter = FlvSegmenter(folder, FMP4)
    _push_tags(segmenter, media["flv9"])
    segmenter.finish()
    assert (folder / "video.m3u8").read_text().endswith("#EXT-X-ENDLIST\n")
    assert (folder / "audio.m3u8").read_text().endswith("#EXT-X-ENDLIST\n")
    with pytest.raises(ValueError, match="finished"):
        segmenter.push(9, 0, media["flv9"][0].payload)

    segmenter.reopen()
    _push_tags(segmenter, media["flv9"][:200])
    assert "#EXT-X-ENDLIST" not in (folder / "video.m3u8").read_text()
    segmenter.finish()

    segmenter.remove_files()
    assert not folder.exists()
    assert (tmp_path / "live").exists()  # only the folder it wrote in


def test_remove_files_keeps_what_it_did_not_write(media, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    segmenter = FlvSegmenter(tmp_path, FMP4)
    _push_tags(segmenter, media["flv9"][:300])  # still live: a segment is open
    segmenter.remove_files()
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_bad_frame_skips_video_to_the_next_keyframe(media, tmp_path):
    tags = media["flv9"]
    video = _coded(tags, 9)
    bad = video[10]
    segmenter = FlvSegmenter(tmp_path, FMP4)
    dropped = 0
    for tag in tags:
        if tag is bad:
            with pytest.raises(MediaError, match="NAL unit length"):
                segmenter.push(9, tag.timestamp, tag.payload[:5] + b"\x00\x00\xff\xff" + tag.payload[9:])
            dropped = 1
            continue
        if dropped and tag.tag_type == 9 and tag.timestamp < 2000:
            dropped += 1
        segmenter.push(tag.tag_type, tag.timestamp, tag.payload)
    segmenter.finish()
    frames = sum(n for *_, n in check_track(tmp_path, "video"))
    assert frames == len(video) - dropped


def test_timestamps_that_do_not_grow_are_refused(media, tmp_path):
    video_format, audio_format, packets = media["mp4"]
    segmenter = Segmenter(tmp_path, FMP4)
    segmenter.set_formats(video_format, audio_format)
    videos = [p for p in packets if p.kind == "video"]
    for packet in videos[:5]:
        segmenter.push(packet)
    with pytest.raises(MediaError, match="does not follow"):
        segmenter.push(videos[3])
    segmenter.push(videos[5])  # not a keyframe: dropped until the next one
    key = next(p for p in videos[6:] if p.key)
    segmenter.push(key)
    segmenter.finish()
    _, durations, _, _, _ = read_fragment((tmp_path / "video_0.m4s").read_bytes())
    assert len(durations) == 5
    assert len(read_fragment((tmp_path / "video_1.m4s").read_bytes())[1]) == 1


def test_video_only_stream(media, tmp_path):
    video_format, _, packets = media["mp4"]
    segmenter = Segmenter(tmp_path, FMP4)
    segmenter.set_formats(video_format, None)
    for packet in packets:
        segmenter.push(packet)  # audio without a format is ignored
    segmenter.finish()
    renditions, [(variant, _)] = parse_master((tmp_path / "index.m3u8").read_text())
    assert renditions == [] and "AUDIO" not in variant and variant["CODECS"] == video_format.codec
    assert not list(tmp_path.glob("audio*"))
    check_track(tmp_path, "video")
    assert ffprobe_codecs(tmp_path / "manifest.mpd") == ["h264"]


# --- the playlist models


def test_media_playlist_map_and_independent_segments():
    playlist = MediaPlaylist(window=3, version=7, independent_segments=True)
    playlist.add_segment("v0.m4s", 2, map_uri="init.mp4")
    playlist.add_segment("v1.m4s", 2, map_uri="init.mp4")
    playlist.add_segment("v2.m4s", 2, discontinuity=True, map_uri="init.mp4")
    playlist.add_segment("v3.m4s", 2, discontinuity=True, map_uri="init_1.mp4")
    assert playlist.map_uris == {"init.mp4", "init_1.mp4"}
    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:1\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        "#EXTINF:2.000,\n"
        "v1.m4s\n"
        "#EXT-X-DISCONTINUITY\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        "#EXTINF:2.000,\n"
        "v2.m4s\n"
        "#EXT-X-DISCONTINUITY\n"
        '#EXT-X-MAP:URI="init_1.mp4"\n'
        "#EXTINF:2.000,\n"
        "v3.m4s\n"
    )


def test_master_playlist():
    text = render_master(
        [Variant("video.m3u8", 900000, "avc1.64001f,mp4a.40.2", 800000, (1280, 720), 30.0, "audio")],
        [Rendition("AUDIO", "audio", "audio", "audio.m3u8", channels=2)],
    )
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",URI="audio.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=800000,CODECS="avc1.64001f,mp4a.40.2",'
        'RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO="audio"\n'
        "video.m3u8\n"
    )
    with pytest.raises(ValueError, match="quoted-string"):
        render_master([Variant("video.m3u8", 1, 'avc1"')])


def test_a_closed_segment_waits_for_its_audio_only_while_audio_flows(media, tmp_path):
    tags = media["flv9"]
    video = _coded(tags, 9)
    cut = next(t for t in video[1:] if t.payload[0] >> 4 == 1)  # the keyframe at 2 s
    cut_pts = cut.timestamp + int.from_bytes(cut.payload[2:5], "big", signed=True)
    infos = []
    segmenter = FlvSegmenter(tmp_path / "with", FMP4, on_segment=infos.append)
    position = tags.index(cut)
    _push_tags(segmenter, tags[: position + 1])
    assert infos == []  # the audio up to the cut's presentation time is still to come
    for tag in tags[position + 1 :]:
        segmenter.push(tag.tag_type, tag.timestamp, tag.payload)
        if tag.tag_type == 8 and tag.timestamp >= cut_pts:
            break
        assert infos == []
    assert [i.uri for i in infos] == ["video_0.m4s"]

    # an audio format but no audio: nothing to wait for
    infos.clear()
    segmenter = FlvSegmenter(tmp_path / "without", FMP4, on_segment=infos.append)
    _push_tags(segmenter, [t for t in tags[: position + 1] if t.tag_type == 9 or t.is_header])
    assert [i.uri for i in infos] == ["video_0.m4s"]


@pytest.mark.parametrize("profile_idc", [100, 144, 244])
def test_avcc_of_high_profiles_ends_with_chroma_format_and_bit_depths(profile_idc):
    """14496-15 5.3.3.1.2: profiles whose SPS carries chroma_format_idc and bit depths
    repeat them after the PPS list; High 4:4:4 Predictive (244, x264's 4:4:4) too."""
    pps = BitWriter().ue(0).ue(0).u(1, 0).u(1, 0).ue(0).ue(0).ue(0).u(1, 0).u(2, 0).se(0).se(0).se(0)
    pps.u(1, 1).u(1, 0).u(1, 0)
    nals = [high_profile_sps(profile_idc), avc.make_nal(3, avc.NAL_PPS, pps.rbsp_trailing_bits().bytes())]
    init = video_init_segment(VideoFormat(nal_units_to_annexb(nals), 160, 96))
    at = init.index(b"avcC")
    size = struct.unpack(">I", init[at - 4 : at])[0]
    record = parse_avc_config(init[at + 4 : at - 4 + size])
    assert record.sps == (nals[0],) and record.pps == (nals[1],)
    assert record.ext == bytes([0xFC | 3, 0xF8 | 2, 0xF8 | 2, 0])
