"""AAC: the AudioSpecificConfig, and silent raw frames to fill audio gaps.

AudioSpecificConfig (ISO/IEC 14496-3, 1.6.2.1), what an FLV/RTMP AAC sequence
header carries after its 2-byte tag header, is bit-packed::

    audioObjectType         5 bits; 31 escapes to 32 + the next 6 bits
    samplingFrequencyIndex  4 bits; 15 means an explicit 24-bit frequency follows
    channelConfiguration    4 bits; 0 means a program_config_element follows
    [object type 5 or 29 (SBR, SBR+PS): extensionSamplingFrequencyIndex 4 bits
     (15: 24-bit frequency), then the core's audioObjectType]
    GASpecificConfig        frameLengthFlag 1 (960 or 480 samples instead of 1024
                            or 512), dependsOnCoreCoder 1 (+14 bits delay),
                            extensionFlag 1, ...
    [epConfig 2 bits for error resilient object types]
    [syncExtensionType 0x2B7 11 bits, extension object type 5, sbrPresentFlag,
     ... : backward-compatible SBR signalling, as ffmpeg's encoder writes it
     with sbrPresentFlag 0]

``AacConfig.object_type`` is the type the stream decodes as: 5 (SBR) or 29
(SBR+PS) whether signalled hierarchically or by the backward-compatible sync
extension, and ``core_object_type`` is the AAC core's type (2 for HE-AAC).
``sample_rate`` and ``frame_length`` are the core's, so ``frame_length /
sample_rate`` is a frame's duration for every profile. Only the General Audio
object types (1-4, 6, 7, 17, 19-23) are understood; others (CELP, ELD, USAC,
...) raise ``MediaError``. With channelConfiguration 0 the program config
element is not parsed, so a sync extension after it is not seen either. Bytes
after the parsed fields are ignored (they stay in ``raw``).

``silent_frame(cfg)`` writes one raw_data_block (no ADTS header) that decodes to
digital silence: for every channel element one individual_channel_stream with
max_sfb = 0 (no sections, scale factors or spectral data) and no pulse, TNS or
gain control data; then ID_END and byte alignment. It is valid for AAC Main,
LC and LTP (object types 1, 2, 4) with channel configurations 1 to 7. SBR has
its own extension payload per frame, so HE-AAC raises ``MediaError`` and the
caller falls back (e.g. to repeating or dropping).

ASC parsing and the frame writer use the bit reader/writer of
``rtmprelay.media.bits`` (shared with ``avc``): the fields are conditional and
escape-coded, which a bit-level construct would only obscure.
"""

from __future__ import annotations

import functools

import attrs

from rtmprelay.errors import MediaError
from rtmprelay.media.bits import BitReader, BitWriter

__all__ = [
    "AOT_AAC_LC",
    "AOT_AAC_LTP",
    "AOT_AAC_MAIN",
    "AOT_PS",
    "AOT_SBR",
    "AacConfig",
    "SAMPLING_FREQUENCIES",
    "parse_aac_config",
    "silent_frame",
]

AOT_AAC_MAIN = 1
AOT_AAC_LC = 2
AOT_AAC_SSR = 3
AOT_AAC_LTP = 4
AOT_SBR = 5
AOT_ER_AAC_LD = 23
AOT_PS = 29
_ESCAPE = 31

#: samplingFrequencyIndex -> Hz (13 and 14 are reserved, 15 is explicit).
SAMPLING_FREQUENCIES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)
_EXPLICIT_FREQUENCY = 15

#: Object types with a GASpecificConfig.
_GA_TYPES = frozenset({1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23})
#: Error resilient object types (they carry epConfig after their specific config).
_ER_TYPES = frozenset({17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 39})
_SYNC_EXTENSION = 0x2B7
_PS_SYNC_EXTENSION = 0x548

#: channelConfiguration -> output channels.
_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8}


class _ConfigReader(BitReader):
    """A short read anywhere is one error: "truncated AudioSpecificConfig" at its byte."""

    __slots__ = ()

    def truncated(self, n: int, field: str) -> MediaError:
        return MediaError("truncated AudioSpecificConfig", _where(self.position))


@attrs.frozen
class AacConfig:
    """A parsed AudioSpecificConfig; ``raw`` is the bytes it was parsed from."""

    object_type: int
    sampling_frequency_index: int
    sample_rate: int
    channel_configuration: int
    frame_length: int
    raw: bytes
    core_object_type: int = 0
    sbr: bool = False
    ps: bool = False
    extension_sample_rate: int | None = None

    @property
    def channels(self) -> int | None:
        """Output channels for channel configurations 1-7; None otherwise (PCE)."""
        return _CHANNELS.get(self.channel_configuration)


def _where(bit: int) -> str:
    return f"aac config byte {bit // 8}"


def _object_type(reader: BitReader) -> int:
    start = reader.position
    aot = reader.u(5)
    if aot == _ESCAPE:
        aot = 32 + reader.u(6)
    if aot == 0:
        raise MediaError("null audio object type 0", _where(start))
    return aot


def _frequency(reader: BitReader) -> tuple[int, int]:
    start = reader.position
    index = reader.u(4)
    if index == _EXPLICIT_FREQUENCY:
        rate = reader.u(24)
        if rate == 0:
            raise MediaError("explicit sampling frequency 0", _where(start))
        return index, rate
    if index >= len(SAMPLING_FREQUENCIES):
        raise MediaError(f"reserved sampling frequency index {index}", _where(start))
    return index, SAMPLING_FREQUENCIES[index]


def parse_aac_config(data: bytes) -> AacConfig:
    """Parse an AudioSpecificConfig; ``MediaError`` names the field and byte."""
    raw = bytes(data)
    return _parse(_ConfigReader(raw, "AudioSpecificConfig"), raw)


def _parse(reader: BitReader, raw: bytes) -> AacConfig:
    object_type = _object_type(reader)
    index, rate = _frequency(reader)
    channel_configuration = reader.u(4)
    sbr = ps = False
    extension_rate = None
    core = object_type
    if object_type in (AOT_SBR, AOT_PS):
        sbr, ps = True, object_type == AOT_PS
        _, extension_rate = _frequency(reader)
        core_start = reader.position
        core = _object_type(reader)
        if core == 22:  # ER BSAC: extensionChannelConfiguration
            reader.u(4)
        if core in (AOT_SBR, AOT_PS):
            raise MediaError(f"SBR core object type {core}", _where(core_start))
    if core not in _GA_TYPES:
        raise MediaError(f"unsupported audio object type {core}", _where(0))
    frame_length = _ga_specific_config(reader, core, channel_configuration)
    if core in _ER_TYPES:
        reader.u(2)  # epConfig
    if not sbr and channel_configuration != 0:
        found = _sync_extension(reader)
        if found is not None:
            extension_rate, ps = found
            sbr = True
            object_type = AOT_PS if ps else AOT_SBR
    return AacConfig(
        object_type=object_type,
        sampling_frequency_index=index,
        sample_rate=rate,
        channel_configuration=channel_configuration,
        frame_length=frame_length,
        raw=raw,
        core_object_type=core,
        sbr=sbr,
        ps=ps,
        extension_sample_rate=extension_rate,
    )


def _ga_specific_config(reader: BitReader, core: int, channel_configuration: int) -> int:
    """Read GASpecificConfig up to (not into) a program config element."""
    short = reader.u(1)  # frameLengthFlag
    if reader.u(1):  # dependsOnCoreCoder
        reader.u(14)  # coreCoderDelay
    extension = reader.u(1)
    if core == AOT_ER_AAC_LD:
        frame_length = 480 if short else 512
    else:
        frame_length = 960 if short else 1024
    if channel_configuration == 0:
        return frame_length  # a program_config_element follows; not parsed
    if core in (6, 20):
        reader.u(3)  # layerNr
    if extension:
        if core == 22:
            reader.u(5 + 11)  # numOfSubFrame, layer_length
        if core in (17, 19, 20, 23):
            reader.u(3)  # the three resilience flags
        reader.u(1)  # extensionFlag3
    return frame_length


def _sync_extension(reader: BitReader) -> tuple[int, bool] | None:
    """Backward-compatible SBR signalling: (extension rate, ps) if SBR is present.

    The extension is optional and muxers pad differently, so anything short or
    unexpected here means "no extension" rather than an error.
    """
    if reader.bits_left < 16:
        return None
    try:
        if reader.u(11) != _SYNC_EXTENSION:
            return None
        if _object_type(reader) != AOT_SBR or not reader.u(1):  # sbrPresentFlag
            return None
        _, extension_rate = _frequency(reader)
        ps = False
        if reader.bits_left >= 12 and reader.u(11) == _PS_SYNC_EXTENSION:
            ps = bool(reader.u(1))
        return extension_rate, ps
    except MediaError:  # truncated, or a reserved frequency index
        return None


# --- silent frames

_ID_SCE = 0
_ID_CPE = 1
_ID_LFE = 3
_ID_END = 7
_SILENT_OBJECT_TYPES = frozenset({AOT_AAC_MAIN, AOT_AAC_LC, AOT_AAC_LTP})
#: channelConfiguration -> syntactic elements of a raw_data_block (14496-3 table 1.19).
_ELEMENTS = {
    1: (_ID_SCE,),
    2: (_ID_CPE,),
    3: (_ID_SCE, _ID_CPE),
    4: (_ID_SCE, _ID_CPE, _ID_SCE),
    5: (_ID_SCE, _ID_CPE, _ID_CPE),
    6: (_ID_SCE, _ID_CPE, _ID_CPE, _ID_LFE),
    7: (_ID_SCE, _ID_CPE, _ID_CPE, _ID_CPE, _ID_LFE),
}
_GLOBAL_GAIN = 100  # irrelevant: with max_sfb 0 there is nothing to scale


def _ics_info(writer: BitWriter) -> None:
    writer.u(1, 0)  # ics_reserved_bit
    writer.u(2, 0)  # window_sequence: ONLY_LONG_SEQUENCE
    writer.u(1, 0)  # window_shape: sine
    writer.u(6, 0)  # max_sfb: no scale factor bands
    writer.u(1, 0)  # predictor_data_present


def _individual_channel_stream(writer: BitWriter, common_window: bool) -> None:
    writer.u(8, _GLOBAL_GAIN)
    if not common_window:
        _ics_info(writer)
    # section_data, scale_factor_data: empty for max_sfb 0
    writer.u(1, 0)  # pulse_data_present
    writer.u(1, 0)  # tns_data_present
    writer.u(1, 0)  # gain_control_data_present
    # spectral_data: empty


@functools.lru_cache(maxsize=None)
def _silent_block(channel_configuration: int) -> bytes:
    writer = BitWriter()
    tags = {_ID_SCE: 0, _ID_CPE: 0, _ID_LFE: 0}
    for element in _ELEMENTS[channel_configuration]:
        writer.u(3, element)
        writer.u(4, tags[element])  # element_instance_tag
        tags[element] += 1
        if element == _ID_CPE:
            writer.u(1, 1)  # common_window: one ics_info for both channels
            _ics_info(writer)
            writer.u(2, 0)  # ms_mask_present
            _individual_channel_stream(writer, common_window=True)
            _individual_channel_stream(writer, common_window=True)
        else:
            _individual_channel_stream(writer, common_window=False)
    writer.u(3, _ID_END)
    return writer.align(0).bytes()  # byte_alignment()


def silent_frame(cfg: AacConfig) -> bytes:
    """One raw AAC frame of digital silence for ``cfg`` (no ADTS header).

    It lasts ``cfg.frame_length`` samples like any other frame of the stream.
    """
    if cfg.sbr or cfg.object_type not in _SILENT_OBJECT_TYPES:
        raise MediaError(f"silent frame for object type {cfg.object_type} not supported")
    if cfg.channel_configuration not in _ELEMENTS:
        raise MediaError(
            f"silent frame for channel configuration {cfg.channel_configuration} not supported"
        )
    return _silent_block(cfg.channel_configuration)
