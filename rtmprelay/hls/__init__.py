"""Local HLS output: a live playlist model and an MPEG-TS segmenter (copy mode)."""

from rtmprelay.hls.playlist import MediaPlaylist, Segment
from rtmprelay.hls.segmenter import TsSegmenter

__all__ = ["MediaPlaylist", "Segment", "TsSegmenter"]
