"""Local HLS (and DASH): playlists, segmenters, the transcoder and the per-stream output."""

from rtmprelay.hls.playlist import MediaPlaylist, Segment
from rtmprelay.hls.segmenter import FlvSegmenter, Segmenter, SegmentSettings

__all__ = ["FlvSegmenter", "MediaPlaylist", "Segment", "SegmentSettings", "Segmenter"]
