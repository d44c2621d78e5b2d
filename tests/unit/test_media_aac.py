"""AudioSpecificConfig parsing, and silent frames checked by ffmpeg's AAC decoder (PyAV)."""

from __future__ import annotations

import io
import math
from array import array

import av
import av.logging
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtmprelay.errors import MediaError
from rtmprelay.media.aac import AacConfig, parse_aac_config, silent_frame


def bits(text: str) -> bytes:
    """Bytes from a string of 0/1 (spaces ignored), zero-padded to a byte boundary."""
    text = text.replace(" ", "")
    text += "0" * (-len(text) % 8)
    return int(text, 2).to_bytes(len(text) // 8, "big")


def lc_config(sample_rate: int, channels: int, object_type: int = 2, short: bool = False) -> AacConfig:
    index = {96000: 0, 48000: 3, 44100: 4, 32000: 5, 24000: 6, 22050: 7, 16000: 8, 8000: 11}[sample_rate]
    return parse_aac_config(bits(f"{object_type:05b} {index:04b} {channels:04b} {int(short)}00"))


# --- parsing: vectors


def test_ffmpeg_mono_44100_with_sync_extension() -> None:
    """What ffmpeg's aac encoder puts in FLV: LC, then 0x2B7 / SBR / sbrPresentFlag 0."""
    cfg = parse_aac_config(bytes.fromhex("120856e500"))
    assert cfg == AacConfig(
        object_type=2,
        sampling_frequency_index=4,
        sample_rate=44100,
        channel_configuration=1,
        frame_length=1024,
        raw=bytes.fromhex("120856e500"),
        core_object_type=2,
    )
    assert cfg.channels == 1


def test_plain_stereo_48000() -> None:
    cfg = parse_aac_config(b"\x11\x90")
    assert (cfg.object_type, cfg.sample_rate, cfg.channel_configuration, cfg.channels) == (2, 48000, 2, 2)
    assert (cfg.frame_length, cfg.sbr, cfg.raw) == (1024, False, b"\x11\x90")


def test_frame_length_flag() -> None:
    assert parse_aac_config(bits("00010 0011 0010 100")).frame_length == 960
    assert parse_aac_config(bits("10111 0011 0001 000 00")).frame_length == 512  # ER AAC LD
    assert parse_aac_config(bits("10111 0011 0001 100 00")).frame_length == 480


def test_explicit_frequency() -> None:
    cfg = parse_aac_config(bits(f"00010 1111 {44100:024b} 0010 000"))
    assert (cfg.sampling_frequency_index, cfg.sample_rate, cfg.channel_configuration) == (15, 44100, 2)


def test_depends_on_core_coder_and_extension_flag() -> None:
    cfg = parse_aac_config(bits(f"00010 0100 0010 0 1 {123:014b} 0"))
    assert (cfg.sample_rate, cfg.channel_configuration) == (44100, 2)


def test_explicit_he_aac() -> None:
    """Hierarchical signalling: object type 5, extension rate, then the core type."""
    cfg = parse_aac_config(bits("00101 0110 0010 0011 00010 000"))
    assert (cfg.object_type, cfg.core_object_type, cfg.sbr, cfg.ps) == (5, 2, True, False)
    assert (cfg.sample_rate, cfg.extension_sample_rate, cfg.frame_length) == (24000, 48000, 1024)


def test_explicit_he_aac_v2() -> None:
    cfg = parse_aac_config(bits("11101 0110 0001 0011 00010 000"))
    assert (cfg.object_type, cfg.core_object_type, cfg.sbr, cfg.ps) == (29, 2, True, True)


def test_backward_compatible_sbr_signalling() -> None:
    sync = "01010110111 00101 1 0011"  # 0x2B7, SBR, present, 48000
    cfg = parse_aac_config(bits(f"00010 0110 0010 000 {sync}"))
    assert (cfg.object_type, cfg.core_object_type, cfg.sbr, cfg.ps) == (5, 2, True, False)
    assert (cfg.sample_rate, cfg.extension_sample_rate) == (24000, 48000)
    cfg = parse_aac_config(bits(f"00010 0110 0001 000 {sync} 10101001000 1"))  # + 0x548, PS
    assert (cfg.object_type, cfg.sbr, cfg.ps) == (29, True, True)


def test_escaped_object_type() -> None:
    with pytest.raises(MediaError) as info:
        parse_aac_config(bits("11111 001010 0100 0010 000"))  # 32 + 10 = 42, USAC
    assert info.value.what == "unsupported audio object type 42"


def test_channel_configuration_zero_parses_without_the_pce() -> None:
    cfg = parse_aac_config(bits("00010 0100 0000 000") + b"\x55\x55")
    assert (cfg.channel_configuration, cfg.channels) == (0, None)


@pytest.mark.parametrize(
    ("data", "what", "where"),
    [
        (b"", "truncated AudioSpecificConfig", "aac config byte 0"),
        (b"\x12", "truncated AudioSpecificConfig", "aac config byte 0"),
        (bits("00000 0100 0010 000"), "null audio object type 0", "aac config byte 0"),
        (bits("00010 1101 0010 000"), "reserved sampling frequency index 13", "aac config byte 0"),
        (bits("00010 1110 0010 000"), "reserved sampling frequency index 14", "aac config byte 0"),
        (bits(f"00010 1111 {0:024b} 0010 000"), "explicit sampling frequency 0", "aac config byte 0"),
        (bits("00010 1111 0000"), "truncated AudioSpecificConfig", "aac config byte 1"),
        (bits("01000 0100 0010 000"), "unsupported audio object type 8", "aac config byte 0"),
        (bits("00101 0110 0010 1101 00010 000"), "reserved sampling frequency index 13", "aac config byte 1"),
        (bits("00101 0110 0010 0011 00101 000"), "SBR core object type 5", "aac config byte 2"),
        (bits("00010 0100 0010 0 1 0000"), "truncated AudioSpecificConfig", "aac config byte 1"),
    ],
)
def test_errors_name_field_and_byte(data: bytes, what: str, where: str) -> None:
    with pytest.raises(MediaError) as info:
        parse_aac_config(data)
    assert (info.value.what, info.value.where) == (what, where)


@pytest.mark.parametrize(
    "data",
    [bytes.fromhex("120856e500"), b"\x11\x90", bits("00101 0110 0010 0011 00010 000"), bits(f"00010 1111 {44100:024b} 0010 000")],
)
def test_prefixes_raise_media_error(data: bytes) -> None:
    """The mandatory part must be whole; an optional sync extension cut short is
    ignored (it is just absent), so prefixes past the GASpecificConfig parse."""
    full = parse_aac_config(data)
    for n in range(len(data)):
        try:
            cfg = parse_aac_config(data[:n])
        except MediaError:
            continue
        assert (cfg.sample_rate, cfg.channel_configuration, cfg.core_object_type) == (
            full.sample_rate, full.channel_configuration, full.core_object_type,
        )
        assert n >= 2


def test_trailing_bytes_are_ignored_and_kept_raw() -> None:
    cfg = parse_aac_config(b"\x11\x90\x00\x00\x00\x00")
    assert (cfg.object_type, cfg.sbr, cfg.raw) == (2, False, b"\x11\x90\x00\x00\x00\x00")


@settings(max_examples=500)
@given(st.binary(max_size=12))
def test_garbage_raises_only_media_error(data: bytes) -> None:
    try:
        cfg = parse_aac_config(data)
    except MediaError:
        return
    assert cfg.raw == data
    assert cfg.frame_length in (480, 512, 960, 1024)
    assert cfg.sample_rate > 0


# --- silent frames: exact bytes


def test_silent_frame_bytes() -> None:
    # SCE tag 0, global_gain 100, ics_info all zero (max_sfb 0), no pulse/tns/gain, END
    assert silent_frame(lc_config(44100, 1)) == bits("000 0000 01100100 0 00 0 000000 0 000 111")
    assert silent_frame(lc_config(44100, 1)) == bytes.fromhex("00c80007")
    # CPE tag 0, common_window 1, ics_info, ms_mask_present 0, 2 x (gain, 3 flags), END
    assert silent_frame(lc_config(48000, 2)) == bits(
        "001 0000 1 0 00 0 000000 0 00 01100100 000 01100100 000 111"
    )
    assert silent_frame(lc_config(48000, 2)) == bytes.fromhex("21000320641c")


def test_silent_frame_does_not_depend_on_rate_or_frame_length() -> None:
    assert silent_frame(lc_config(8000, 2, short=True)) == silent_frame(lc_config(96000, 2))


@pytest.mark.parametrize(
    ("cfg", "what"),
    [
        (parse_aac_config(bits("00101 0110 0010 0011 00010 000")), "silent frame for object type 5 not supported"),
        (parse_aac_config(bits("11101 0110 0001 0011 00010 000")), "silent frame for object type 29 not supported"),
        (parse_aac_config(bits("00010 0110 0010 000 01010110111 00101 1 0011")), "silent frame for object type 5 not supported"),
        (parse_aac_config(bits("10111 0011 0001 000 00")), "silent frame for object type 23 not supported"),
        (parse_aac_config(bits("00011 0011 0001 000")), "silent frame for object type 3 not supported"),
        (parse_aac_config(bits("00010 0100 0000 000")), "silent frame for channel configuration 0 not supported"),
        (parse_aac_config(bits("00010 0100 1000 000")), "silent frame for channel configuration 8 not supported"),
    ],
)
def test_silent_frame_unsupported(cfg: AacConfig, what: str) -> None:
    with pytest.raises(MediaError) as info:
        silent_frame(cfg)
    assert info.value.what == what


# --- silent frames: decoded by ffmpeg


def adts_header(cfg: AacConfig, frame_size: int) -> bytes:
    """ISO 14496-3 1.A.2.2: MPEG-4, no CRC, one raw_data_block, fullness 0x7FF."""
    length = 7 + frame_size
    return bits(
        "111111111111 0 00 1"  # syncword, ID MPEG-4, layer, protection_absent
        f"{cfg.object_type - 1:02b} {cfg.sampling_frequency_index:04b} 0 {cfg.channel_configuration:03b} 0 0"
        f"0 0 {length:013b} 11111111111 00"
    )


def decode_samples(frames: list[av.AudioFrame]) -> list[array]:
    """Per channel, every decoded sample (planar float)."""
    assert frames
    channels = frames[0].layout.nb_channels
    out = [array("f") for _ in range(channels)]
    for frame in frames:
        assert frame.format.name == "fltp"
        for channel, plane in zip(out, frame.planes[:channels]):  # PyAV lists a 9th plane for 7.1
            channel.frombytes(bytes(plane)[: frame.samples * 4])
    return out


def quiet(logs: list) -> list:
    return [entry for entry in logs if entry[0] <= av.logging.WARNING]


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_adts_stream_of_silent_frames_decodes_to_zeros(sample_rate: int, channels: int) -> None:
    cfg = lc_config(sample_rate, channels)
    frame = silent_frame(cfg)
    count = 12
    stream = (adts_header(cfg, len(frame)) + frame) * count
    with av.logging.Capture() as logs, av.open(io.BytesIO(stream), format="aac") as container:
        audio = container.streams.audio[0]
        decoded = [f for packet in container.demux(audio) for f in packet.decode()]
    assert quiet(logs) == []
    assert (audio.codec_context.sample_rate, audio.codec_context.layout.nb_channels) == (sample_rate, channels)
    samples = decode_samples(decoded)
    assert len(samples) == channels
    assert all(len(channel) == count * 1024 for channel in samples)
    assert all(value == 0.0 for channel in samples for value in channel)


def decode_raw(cfg: AacConfig, packets: list[bytes]) -> tuple[list[array], list]:
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = cfg.raw
    frames = []
    with av.logging.Capture() as logs:
        for packet in packets:
            frames += decoder.decode(av.Packet(packet))
        frames += decoder.decode(None)
    return decode_samples(frames), quiet(logs)


@pytest.mark.parametrize("object_type", [1, 2, 4])
@pytest.mark.parametrize("channel_configuration", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("short", [False, True])
def test_raw_silent_frames_decode_to_zeros(object_type: int, channel_configuration: int, short: bool) -> None:
    cfg = lc_config(48000, channel_configuration, object_type, short)
    samples, logs = decode_raw(cfg, [silent_frame(cfg)] * 4)
    assert logs == []
    assert len(samples) == cfg.channels
    assert all(len(channel) == 4 * cfg.frame_length for channel in samples)
    assert all(value == 0.0 for channel in samples for value in channel)


def encode_sine(sample_rate: int, layout: str, count: int) -> tuple[bytes, list[bytes]]:
    """ASC and raw frames from ffmpeg's own AAC encoder: a 440 Hz sine."""
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate, encoder.layout, encoder.format = sample_rate, layout, "fltp"
    encoder.bit_rate = 64000
    encoder.open()
    channels = encoder.layout.nb_channels
    packets = []
    for i in range(count):
        frame = av.AudioFrame(format="fltp", layout=layout, samples=1024)
        frame.sample_rate, frame.pts = sample_rate, i * 1024
        tone = array("f", (0.3 * math.sin(2 * math.pi * 440 * (i * 1024 + n) / sample_rate) for n in range(1024)))
        for plane in frame.planes[:channels]:
            plane.update(tone.tobytes() + bytes(plane.buffer_size - 4096))
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return bytes(encoder.extradata), [bytes(p) for p in packets]


@pytest.mark.parametrize(("sample_rate", "layout"), [(44100, "mono"), (48000, "stereo")])
def test_silence_spliced_into_real_stream(sample_rate: int, layout: str) -> None:
    asc, real = encode_sine(sample_rate, layout, 20)
    cfg = parse_aac_config(asc)
    assert (cfg.object_type, cfg.sample_rate, cfg.sbr) == (2, sample_rate, False)
    gap = [silent_frame(cfg)] * 3
    spliced = real[:10] + gap + real[10:]
    samples, logs = decode_raw(cfg, spliced)
    assert logs == []
    assert all(len(channel) == len(spliced) * 1024 for channel in samples)
    for channel in samples:
        # the first silent frame still carries the overlap of the real frame before it
        assert all(value == 0.0 for value in channel[11 * 1024 : 13 * 1024])
        assert any(value != 0.0 for value in channel[13 * 1024 : 14 * 1024])
