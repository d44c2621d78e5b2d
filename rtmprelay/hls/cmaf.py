"""CMAF tracks (ISO/IEC 23000-19) as bytes: one init segment and media segments
per track, H.264 or AAC, one track per file. Pure: values in, bytes out.

We write the boxes ourselves rather than drive ffmpeg's ``mp4`` muxer: that
muxer derives ``tfdt`` and the last sample's duration from what it has seen,
so a segment cut, a reconnect or a fresh muxer per segment would each need a
workaround, while here every decode time is a number we chose. The layout kept:

- Init segment: ``ftyp`` (``iso6``, compatible ``iso6 cmfc mp41``) and ``moov``
  with one ``trak`` (track_ID 1, durations 0, times 0 so that the same formats
  give the same bytes) and ``mvex/trex``. Video is ``avc1`` with ``avcC``
  (4-byte NAL lengths, the high-profile trailer when profile_idc needs it);
  audio is ``mp4a`` with ``esds`` carrying the AudioSpecificConfig.
- Media segment: ``styp`` (``msdh``, compatible ``msdh cmfs``), then one
  ``moof`` (``mfhd``, ``traf`` with ``tfhd`` default-base-is-moof, ``tfdt``
  version 1, one ``trun`` version 1) and its ``mdat``; or, with LL-HLS parts,
  ``styp`` and one ``moof`` + ``mdat`` fragment a part (a CMAF chunk each,
  ``fragment``), the part files being those fragments alone.
- ``tfdt`` is the decode time of the segment's first sample; each sample's
  duration is the step to the next decode time, so consecutive segments of a
  track join exactly (the caller gives the last sample's duration).
- Composition offsets are pts - dts in the track timescale (trun version 1:
  signed), no edit list: presentation time = the pts the caller gave.
- Samples are AVCC (4-byte lengths) without SPS, PPS or access unit
  delimiters: ``avc1`` keeps parameter sets in ``avcC`` (ISO/IEC 14496-15
  5.3.2), and a change of them is a new init segment.
- Video sample flags say sync (key) or non-sync depending on others; audio
  samples are all sync (tfhd default_sample_flags).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import attrs

from rtmprelay.errors import MediaError
from rtmprelay.hls.packets import AudioFormat, VideoFormat
from rtmprelay.media.avc import HIGH_PROFILES, NAL_AUD, NAL_PPS, NAL_SPS, parse_sps
from rtmprelay.media.avcc import AVCConfig, annexb_to_nal_units, build_avc_config

__all__ = [
    "VIDEO_TIMESCALE",
    "Sample",
    "SEGMENT_TYPE",
    "annexb_to_sample",
    "audio_init_segment",
    "fragment",
    "media_segment",
    "video_init_segment",
]

#: Video track timescale: divisible by 1000, 30, 25, 24 and 60, the MPEG-TS clock.
VIDEO_TIMESCALE = 90000
TRACK_ID = 1

_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4  # ISO 639-2 "und", 5 bits a letter
_SYNC = 0x02000000  # sample_depends_on = 2: depends on no other sample
_NON_SYNC = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample = 1


@attrs.frozen
class Sample:
    """One sample of a media segment, in the track timescale."""

    data: bytes
    duration: int
    composition_offset: int = 0
    key: bool = True


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _ftyp(kind: bytes, major: bytes, compatible: Sequence[bytes]) -> bytes:
    return _box(kind, major, struct.pack(">I", 0), *compatible)


# --- init segments


def _mvhd() -> bytes:
    return _full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, 1000, 0),  # creation, modification, timescale, duration
        struct.pack(">IH", 0x00010000, 0x0100), bytes(10),  # rate 1.0, volume 1.0, reserved
        _MATRIX, bytes(24),  # matrix, pre_defined
        struct.pack(">I", TRACK_ID + 1),  # next_track_ID
    )  # fmt: skip


def _tkhd(width: int, height: int, audio: bool) -> bytes:
    return _full_box(
        b"tkhd", 0, 0x000003,  # enabled, in movie
        struct.pack(">IIII", 0, 0, TRACK_ID, 0),  # creation, modification, track_ID, reserved
        struct.pack(">I", 0), bytes(8),  # duration, reserved
        struct.pack(">hhhH", 0, 0, 0x0100 if audio else 0, 0),  # layer, group, volume, reserved
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )  # fmt: skip


def _mdia(timescale: int, handler: bytes, name: bytes, media_header: bytes, sample_entry: bytes) -> bytes:
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, _LANGUAGE_UND, 0))
    hdlr = _full_box(b"hdlr", 0, 0, struct.pack(">I4s", 0, handler), bytes(12), name + b"\x00")
    dref = _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1))
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), sample_entry),
        _full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        _full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        _full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        _full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = _box(b"minf", media_header, _box(b"dinf", dref), stbl)
    return _box(b"mdia", mdhd, hdlr, minf)


def _init_segment(trak: bytes) -> bytes:
    trex = _full_box(b"trex", 0, 0, struct.pack(">IIIII", TRACK_ID, 1, 0, 0, 0))
    moov = _box(b"moov", _mvhd(), trak, _box(b"mvex", trex))
    return _ftyp(b"ftyp", b"iso6", (b"iso6", b"cmfc", b"mp41")) + moov


def _avc_config(video: VideoFormat) -> tuple[bytes, int, int]:
    """(avcC payload, width, height) from the format's Annex B SPS and PPS."""
    units = annexb_to_nal_units(video.extradata)
    sps = [u for u in units if u[0] & 0x1F == NAL_SPS]
    pps = [u for u in units if u[0] & 0x1F == NAL_PPS]
    if not sps or not pps:
        raise MediaError("video extradata lacks an SPS or a PPS", "video format")
    parsed = parse_sps(sps[0])
    ext = b""
    if parsed.profile_idc in HIGH_PROFILES:
        # 14496-15 5.3.3.1.2: chroma format and bit depths follow for these profiles
        ext = bytes(
            [
                0xFC | parsed.chroma_format_idc,
                0xF8 | parsed.bit_depth_luma_minus8,
                0xF8 | parsed.bit_depth_chroma_minus8,
                0,
            ]
        )
    record = AVCConfig(1, sps[0][1], sps[0][2], sps[0][3], 4, sps, pps, ext)
    try:
        return build_avc_config(record), parsed.width, parsed.height
    except ValueError as exc:
        raise MediaError(str(exc), "video format") from None


def video_init_segment(video: VideoFormat) -> bytes:
    """``ftyp`` + ``moov`` of one H.264 track in the 90 kHz timescale."""
    avcc, width, height = _avc_config(video)
    entry = _box(
        b"avc1",
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16),  # pre_defined, reserved, pre_defined
        struct.pack(">HHIII", width, height, 0x00480000, 0x00480000, 0),  # size, 72 dpi, reserved
        struct.pack(">H", 1), bytes(32),  # frame_count, compressorname
        struct.pack(">Hh", 0x0018, -1),  # depth, pre_defined
        _box(b"avcC", avcc),
        _box(b"pasp", struct.pack(">II", 1, 1)),
    )  # fmt: skip
    vmhd = _full_box(b"vmhd", 0, 1, bytes(8))
    mdia = _mdia(VIDEO_TIMESCALE, b"vide", b"VideoHandler", vmhd, entry)
    return _init_segment(_box(b"trak", _tkhd(width, height, False), mdia))


def _descriptor(tag: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    size = len(body)
    if size >= 1 << 28:
        raise MediaError(f"descriptor of {size} bytes", "esds")
    # the size is 7 bits a byte, high bit "more follows"; 4 bytes as most muxers write it
    encoded = bytes([0x80 | (size >> 21) & 0x7F, 0x80 | (size >> 14) & 0x7F, 0x80 | (size >> 7) & 0x7F, size & 0x7F])
    return bytes([tag]) + encoded + body


def audio_init_segment(audio: AudioFormat) -> bytes:
    """``ftyp`` + ``moov`` of one AAC track whose timescale is the sample rate."""
    if not 0 < audio.sample_rate < 1 << 16:
        raise MediaError(f"sample rate {audio.sample_rate} does not fit mp4a", "audio format")
    decoder_config = _descriptor(
        0x04,
        struct.pack(">BB", 0x40, 0x15),  # MPEG-4 audio; audio stream, upstream 0, reserved 1
        bytes(3), struct.pack(">II", 0, 0),  # bufferSizeDB, maxBitrate, avgBitrate (unknown)
        _descriptor(0x05, audio.config),
    )  # fmt: skip
    es = _descriptor(0x03, struct.pack(">HB", 0, 0), decoder_config, _descriptor(0x06, b"\x02"))
    entry = _box(
        b"mp4a",
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(8),  # reserved
        struct.pack(">HHHH", max(1, min(audio.channels, 0xFFFF)), 16, 0, 0),
        struct.pack(">I", audio.sample_rate << 16),
        _full_box(b"esds", 0, 0, es),
    )  # fmt: skip
    smhd = _full_box(b"smhd", 0, 0, bytes(4))
    mdia = _mdia(audio.sample_rate, b"soun", b"SoundHandler", smhd, entry)
    return _init_segment(_box(b"trak", _tkhd(0, 0, True), mdia))


# --- media segments


def media_segment(sequence_number: int, base_decode_time: int, samples: Sequence[Sample], *, video: bool) -> bytes:
    """``styp`` + ``moof`` + ``mdat`` for consecutive samples of the one track."""
    return SEGMENT_TYPE + fragment(sequence_number, base_decode_time, samples, video=video)


def fragment(sequence_number: int, base_decode_time: int, samples: Sequence[Sample], *, video: bool) -> bytes:
    """``moof`` + ``mdat`` for consecutive samples of the one track (a CMAF chunk);
    ``sequence_number`` grows by one a fragment within the track."""
    if not samples:
        raise ValueError("a media segment needs at least one sample")
    if video:
        trun_flags = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
        entries = b"".join(
            struct.pack(">IIIi", s.duration, len(s.data), _SYNC if s.key else _NON_SYNC, s.composition_offset)
            for s in samples
        )
        tfhd = _full_box(b"tfhd", 0, 0x020000, struct.pack(">I", TRACK_ID))
    else:
        trun_flags = 0x000001 | 0x000100 | 0x000200
        entries = b"".join(struct.pack(">II", s.duration, len(s.data)) for s in samples)
        tfhd = _full_box(b"tfhd", 0, 0x020000 | 0x000020, struct.pack(">II", TRACK_ID, _SYNC))
    tfdt = _full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time))
    mfhd = _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))

    def moof(data_offset: int) -> bytes:
        trun = _full_box(b"trun", 1, trun_flags, struct.pack(">Ii", len(samples), data_offset), entries)
        return _box(b"moof", mfhd, _box(b"traf", tfhd, tfdt, trun))

    # data_offset counts from the start of moof (default-base-is-moof) to the first sample
    size = len(moof(0))
    mdat = _box(b"mdat", *(s.data for s in samples))
    return moof(size + 8) + mdat


#: What a media segment begins with.
SEGMENT_TYPE = _ftyp(b"styp", b"msdh", (b"msdh", b"cmfs"))


def annexb_to_sample(data: bytes) -> bytes:
    """An Annex B access unit as an ``avc1`` sample: 4-byte lengths, no SPS/PPS/AUD."""
    units = [u for u in annexb_to_nal_units(data) if u[0] & 0x1F not in (NAL_SPS, NAL_PPS, NAL_AUD)]
    if not units:
        raise MediaError("access unit without a picture", "video packet")
    return b"".join(struct.pack(">I", len(u)) + u for u in units)

