"""Drop to the next keyframe: the one rule every sink that must shed load follows.

A sink that cannot take everything (a player or an upstream whose socket is
full, an HLS encoder whose queue is full) may drop frames, but a decoder fed a
frame whose reference was dropped makes garbage until the next keyframe. So
once a frame is dropped, everything is dropped up to the next keyframe that
comes while the sink is no longer over its bound; sequence headers always
pass (they are few, small, and every later frame needs them). nginx-rtmp's
live module drops for slow players the same way.

Two ways to be over the bound: ``admit(message, full=True)`` (the caller
knows, e.g. a bounded queue), or the gate's own count: while the sink's
socket is paused (``pause()`` / ``resume()``, from an IPushProducer) what is
written still counts, and past ``limit`` bytes the sink is over.
Pure: no Twisted, no clock.
"""

from __future__ import annotations

from rtmprelay.media.message import MediaMessage

__all__ = ["KeyframeGate"]


class KeyframeGate:
    """Whether each message may go to one sink; ``dropped`` counts what did not."""

    def __init__(self, limit: int | None = None) -> None:
        """``limit``: bytes written while paused before the sink is over (None: only ``full``)."""
        self.limit = limit
        self.paused = False
        self.skipping = False
        self.written_while_paused = 0
        self.dropped = 0

    def pause(self) -> None:
        self.paused = True
        self.written_while_paused = 0

    def resume(self) -> None:
        self.paused = False
        self.written_while_paused = 0

    @property
    def over(self) -> bool:
        """Paused with more than ``limit`` bytes written meanwhile."""
        return self.paused and self.limit is not None and self.written_while_paused > self.limit

    def admit(self, message: MediaMessage, full: bool = False) -> bool:
        """True: send ``message``. ``full``: the sink cannot take it now (whatever it is)."""
        if message.header:
            return True
        # ``over``, written out: asked for every message
        over = full or (self.paused and self.limit is not None and self.written_while_paused > self.limit)
        if self.skipping:
            if over or not message.keyframe:
                self.dropped += 1
                return False
            self.skipping = False
        elif over:
            self.skipping = True
            self.dropped += 1
            return False
        if self.paused:
            self.written_while_paused += len(message.payload)
        return True

    def skip_to_keyframe(self) -> None:
        """Drop from here to the next keyframe (a sink that lost what came before)."""
        self.skipping = True
