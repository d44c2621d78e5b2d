"""What a transcode encodes: ``TranscodeSettings``, checked when made.

Apart from ``transcode`` so that the command line and the HLS configuration can
name them without importing PyAV: a relay that only forwards never loads it.
"""

from __future__ import annotations

import attrs

from rtmprelay.errors import ConfigError

__all__ = ["TranscodeSettings"]


def _bitrate(value: int | str) -> int:
    """``2000000``, ``"2M"``, ``"2500k"`` -> bits per second."""
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    try:
        number = float(text[:-1] if scale != 1 else text)
    except ValueError:
        raise ConfigError(f"{value!r} is not a bit rate (e.g. 2000000, 2500k, 2M)") from None
    if number <= 0:
        raise ConfigError(f"bit rate {value!r} must be positive")
    return round(number * scale)


@attrs.frozen
class TranscodeSettings:
    """Encoder settings; the defaults are the old relay's FFmpeg command."""

    fps: int = 30
    gop: int = 60
    preset: str = "veryfast"
    tune: str = "zerolatency"
    profile: str = "baseline"
    level: str = "3.1"
    video_bitrate: int = attrs.field(default=2_000_000, converter=_bitrate)
    maxrate: int = attrs.field(default=2_500_000, converter=_bitrate)
    bufsize: int = attrs.field(default=4_000_000, converter=_bitrate)
    pix_fmt: str = "yuv420p"
    #: Output size; None keeps the source's (rounded down to even numbers).
    width: int | None = None
    height: int | None = None
    audio_rate: int = 48_000
    audio_channels: int = 2
    audio_bitrate: int = attrs.field(default=128_000, converter=_bitrate)
    #: x264 threads; 0 lets x264 choose, as the FFmpeg CLI does.
    threads: int = 0

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.fps <= 240:
            raise ConfigError(f"transcode fps {self.fps} is outside 1..240")
        if self.gop < 1:
            raise ConfigError(f"GOP of {self.gop} frames must be at least 1")
        if self.audio_channels not in (1, 2):
            raise ConfigError(f"{self.audio_channels} audio channels: only 1 or 2 are encoded")
        if (self.width is None) != (self.height is None):
            raise ConfigError("give both the output width and height, or neither")

    def x264_options(self) -> dict[str, str]:
        options = {
            "preset": self.preset,
            "profile": self.profile,
            "level": self.level,
            "g": str(self.gop),
            "keyint_min": str(self.gop),
            "sc_threshold": "0",
            "b": str(self.video_bitrate),
            "maxrate": str(self.maxrate),
            "bufsize": str(self.bufsize),
            "threads": str(self.threads) if self.threads else "auto",
        }
        if self.tune:
            options["tune"] = self.tune
        return options
