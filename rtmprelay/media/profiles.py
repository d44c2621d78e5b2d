"""Destination profiles: the rules an ingest enforces, which the cleaner is configured from.

Where an ingest documents a rule we take its figure; where it is silent the
profile leaves the rule off rather than invent one.
"""

from __future__ import annotations

import attrs

from rtmprelay.errors import ConfigError


@attrs.frozen
class DestinationProfile:
    name: str
    #: Keyframes closer than this are relabelled as inter frames (0: never).
    min_keyframe_interval_s: float = 0.0
    #: A GOP longer than this cannot be shortened without re-encoding: it is reported.
    max_keyframe_interval_s: float | None = None
    min_bitrate: int | None = None
    max_bitrate: int | None = None
    video_codecs: tuple[str, ...] = ("avc",)
    audio_codecs: tuple[str, ...] = ("aac",)
    fps: float = 30.0


PROFILES = {
    # Cloudflare Stream Live: H.264 + AAC, closed GOP of 2 to 10 s, 2 to 14 Mbit/s.
    "cloudflare": DestinationProfile(
        "cloudflare", min_keyframe_interval_s=2.0, max_keyframe_interval_s=10.0, min_bitrate=2_000_000, max_bitrate=14_000_000
    ),
    # YouTube Live: keyframes at most 4 s apart (2 s recommended).
    "youtube": DestinationProfile("youtube", min_keyframe_interval_s=1.0, max_keyframe_interval_s=4.0),
    "generic": DestinationProfile("generic", video_codecs=(), audio_codecs=()),
}


def get_profile(name: str) -> DestinationProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown destination profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
