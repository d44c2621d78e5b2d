"""Real RTMP peers for tests: nginx-rtmp, ffmpeg, GStreamer, rtmpdump, FLV checks.

Plain Python, usable without pytest; ``rtmprelay.testing.plugin`` wraps them
as fixtures (see docs/testing.md).
"""

from rtmprelay.testing.flv import (
    DecodeReport,
    FlvTag,
    PayloadRun,
    assert_payload_subsequence,
    decode_check,
    media_payloads,
    read_flv_tags,
    sequence_headers,
)
from rtmprelay.testing.nginx import AccessRecord, NginxRtmp, find_rtmp_module
from rtmprelay.testing.peers import (
    PeerError,
    PeerProcess,
    PeerTimeout,
    PeerUnavailable,
    find_tool,
    gst_element_available,
    require_gst_elements,
    rtmp_app_and_name,
)
from rtmprelay.testing.players import (
    FfmpegRecorder,
    GstPlayer,
    RtmpdumpPlayer,
    StreamInfo,
    ffmpeg_record,
    ffprobe_stream,
)
from rtmprelay.testing.ports import free_port, port_accepts, wait_for_port
from rtmprelay.testing.publishers import FfmpegPublisher, GstPublisher, make_test_flv
from rtmprelay.testing.sinks import RecordingSink

__all__ = [
    "AccessRecord",
    "DecodeReport",
    "FfmpegPublisher",
    "FfmpegRecorder",
    "FlvTag",
    "GstPlayer",
    "GstPublisher",
    "NginxRtmp",
    "PayloadRun",
    "PeerError",
    "PeerProcess",
    "PeerTimeout",
    "PeerUnavailable",
    "RecordingSink",
    "RtmpdumpPlayer",
    "StreamInfo",
    "assert_payload_subsequence",
    "decode_check",
    "ffmpeg_record",
    "ffprobe_stream",
    "find_rtmp_module",
    "find_tool",
    "free_port",
    "gst_element_available",
    "make_test_flv",
    "media_payloads",
    "port_accepts",
    "read_flv_tags",
    "require_gst_elements",
    "rtmp_app_and_name",
    "sequence_headers",
    "wait_for_port",
]
