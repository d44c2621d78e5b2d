"""read_video / read_audio: FLV bodies as H.264 and AAC units, one set of errors."""

import pytest

from rtmprelay.errors import MediaError
from rtmprelay.media.avcc import AVCConfig, build_avc_config
from rtmprelay.media.elementary import AacFrame, AacSequenceHeader, AvcAccessUnit, AvcSequenceHeader, read_audio, read_video
from rtmprelay.media.tags import build_aac_tag, build_video_tag

SPS = bytes.fromhex("6742c01e95a0a0fd0100")
PPS = bytes.fromhex("68ce3c80")


def test_video_units():
    record = build_avc_config(AVCConfig(1, 0x42, 0xC0, 0x1E, nal_length_size=4, sps=(SPS,), pps=(PPS,)))
    header = read_video(0, build_video_tag(1, 0, record))
    assert type(header) is AvcSequenceHeader and header.record == record and header.config.sps == (SPS,)
    unit = read_video(100, build_video_tag(1, 1, b"\x00\x00\x00\x01\x65", composition_time=67))
    assert unit == AvcAccessUnit(b"\x00\x00\x00\x01\x65", 100, 167, True)
    assert read_video(200, build_video_tag(2, 2, b"")) is None  # end of sequence


def test_audio_units():
    header = read_audio(0, build_aac_tag(0, b"\x12\x10"))
    assert type(header) is AacSequenceHeader and header.config.sample_rate == 44100 and header.raw == b"\x12\x10"
    assert read_audio(23, build_aac_tag(1, b"\x21\x00")) == AacFrame(b"\x21\x00", 23)


def test_other_codecs_and_bad_bodies_are_media_errors():
    with pytest.raises(MediaError, match="not H.264"):
        read_video(0, bytes([0x12, 0x00]))  # Sorenson H.263
    with pytest.raises(MediaError, match="not AAC"):
        read_audio(0, bytes([0x2F, 0x00]))  # MP3
    with pytest.raises(MediaError):
        read_audio(0, build_aac_tag(0, b"\xff"))  # not an AudioSpecificConfig
