"""The numbers of ITU-T H.264 that more than one module needs, defined once.

NAL unit types (table 7-1), slice types (table 7-6), the profiles whose SPS
carries chroma format, bit depths and scaling lists (7.3.2.1.1), and the largest
picture any level allows. ``rtmprelay.media.avc`` exports them; ``avcc``,
``skipframe``, the HLS writers and the test stream makers import them from there.
"""

from __future__ import annotations

# --- nal_unit_type (table 7-1) ----------------------------------------------------------

NAL_SLICE = 1  # coded slice of a non-IDR picture
NAL_SLICE_A = 2  # coded slice data partition A
NAL_SLICE_B = 3
NAL_SLICE_C = 4
NAL_IDR_SLICE = 5  # coded slice of an IDR picture
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_END_OF_SEQUENCE = 10
NAL_END_OF_STREAM = 11
NAL_FILLER = 12
NAL_SPS_EXT = 13

#: The NAL unit types that carry a whole coded slice (slice_layer_without_partitioning_rbsp).
CODED_SLICES = (NAL_SLICE, NAL_IDR_SLICE)
#: Data partitioning (Extended profile only): slices split over three NAL units.
DATA_PARTITIONS = (NAL_SLICE_A, NAL_SLICE_B, NAL_SLICE_C)

# --- slice_type % 5 (table 7-6) -----------------------------------------------------------

SLICE_P = 0
SLICE_B = 1
SLICE_I = 2
SLICE_SP = 3
SLICE_SI = 4

#: profile_idc values whose SPS carries chroma_format_idc, bit depths and scaling
#: lists (7.3.2.1.1), so whose AVCDecoderConfigurationRecord repeats the first
#: three after its PPS (ISO/IEC 14496-15 5.3.3.1.2). 144 is the High 4:4:4 of the
#: 2005 edition, withdrawn in 2007: its SPS has the same fields (ffmpeg reads it so).
HIGH_PROFILES = frozenset({100, 110, 122, 144, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})

#: MaxFS of level 6.2 (table A-1): more macroblocks than this is not a real stream.
MAX_PIC_SIZE_IN_MBS = 139264
