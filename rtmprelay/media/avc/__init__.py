"""H.264 bitstream syntax: NAL unit types, RBSP escaping, SPS, PPS, slice headers.

Everything here works on one raw NAL unit (no start code, no length prefix:
the first byte is the NAL header) and follows the field names of ITU-T H.264
(clause numbers in the docstrings). Parsers raise ``MediaError`` naming the
field and the bit where they stopped, never ``IndexError`` and the like.

One job per module, all of them exported here:

* ``_constants``: NAL unit types, slice types, ``HIGH_PROFILES``: the numbers
  ``avcc``, ``skipframe``, the HLS writers and the test streams share;
* ``_rbsp``: the NAL header byte (``nal_unit_type``, ``nal_ref_idc``, and
  ``nal_header`` for parsers), and emulation prevention taken out and put back;
* ``_parameter_sets``: ``parse_sps`` (with VUI), ``parse_pps``, and ``sps_with_frame_rate``
  (the VUI timing rewritten for a changed frame rate);
* ``_slice_header``: ``parse_slice_header`` and its values (hot: once per slice
  when a stream is cleaned);
* ``_slice_writer``: ``write_slice_header``, ``replace_slice_header``,
  ``patch_slice_numbers``, what the skip-frame maker needs to renumber the
  frames that follow an inserted picture.

The bit reader and writer (u(n), ue(v), se(v)) are ``rtmprelay.media.bits``,
shared with ``aac``; they are exported here as well. Bit offsets kept in parsed
values (``SliceHeader.frame_num_bit`` and friends) count from the first bit of
the RBSP, that is ``unescape_rbsp(nal[1:])``. The AVCDecoderConfigurationRecord
and the AVCC and Annex B framings are ``rtmprelay.media.avcc``.
"""

from __future__ import annotations

from rtmprelay.media.avc._constants import (
    CODED_SLICES,
    DATA_PARTITIONS,
    HIGH_PROFILES,
    NAL_AUD,
    NAL_END_OF_SEQUENCE,
    NAL_END_OF_STREAM,
    NAL_FILLER,
    NAL_IDR_SLICE,
    NAL_PPS,
    NAL_SEI,
    NAL_SLICE,
    NAL_SLICE_A,
    NAL_SLICE_B,
    NAL_SLICE_C,
    NAL_SPS,
    NAL_SPS_EXT,
    SLICE_B,
    SLICE_I,
    SLICE_P,
    SLICE_SI,
    SLICE_SP,
)
from rtmprelay.media.avc._parameter_sets import PPS, SPS, parse_pps, parse_sps, sps_with_frame_rate
from rtmprelay.media.avc._rbsp import (
    escape_rbsp,
    make_nal,
    nal_header,
    nal_ref_idc,
    nal_unit_type,
    unescape_rbsp,
)
from rtmprelay.media.avc._slice_header import (
    MemoryManagementOperation,
    PredWeight,
    PredWeightTable,
    SliceHeader,
    parse_slice_header,
)
from rtmprelay.media.avc._slice_writer import (
    patch_slice_numbers,
    replace_slice_header,
    write_slice_header,
)
from rtmprelay.media.bits import BitReader, BitWriter

__all__ = [
    "NAL_SLICE",
    "NAL_SLICE_A",
    "NAL_SLICE_B",
    "NAL_SLICE_C",
    "NAL_IDR_SLICE",
    "NAL_SEI",
    "NAL_SPS",
    "NAL_PPS",
    "NAL_AUD",
    "NAL_END_OF_SEQUENCE",
    "NAL_END_OF_STREAM",
    "NAL_FILLER",
    "NAL_SPS_EXT",
    "CODED_SLICES",
    "DATA_PARTITIONS",
    "SLICE_P",
    "SLICE_B",
    "SLICE_I",
    "SLICE_SP",
    "SLICE_SI",
    "HIGH_PROFILES",
    "BitReader",
    "BitWriter",
    "SPS",
    "PPS",
    "SliceHeader",
    "PredWeight",
    "PredWeightTable",
    "MemoryManagementOperation",
    "unescape_rbsp",
    "escape_rbsp",
    "nal_header",
    "nal_ref_idc",
    "nal_unit_type",
    "parse_sps",
    "sps_with_frame_rate",
    "parse_pps",
    "parse_slice_header",
    "write_slice_header",
    "replace_slice_header",
    "patch_slice_numbers",
    "make_nal",
]
