"""One tree of errors for the whole project.

Every error a peer can provoke is a ``ProtocolError`` (or a ``MediaError``) that
says *what* was wrong and *where*, so the adapter that catches it can log one
line naming both and close only the connection that sent it.
"""

from __future__ import annotations


class RelayError(Exception):
    """Root of every error rtmprelay raises on purpose."""


class ParseError(RelayError):
    """Input that cannot be understood: names what was wrong and where."""

    def __init__(self, what: str, where: str | None = None) -> None:
        self.what = what
        self.where = where
        super().__init__(f"{what} (at {where})" if where else what)


class ProtocolError(ParseError):
    """The RTMP peer broke the protocol."""


class HandshakeError(ProtocolError):
    """Bad C0/C1/C2 or S0/S1/S2, or a handshake that stalled."""


class ChunkStreamError(ProtocolError):
    """Bad chunk header, chunk size, message length or chunk stream id."""


class AMFError(ProtocolError):
    """Malformed, truncated or too deeply nested AMF0/AMF3 data."""


class MessageError(ProtocolError):
    """A message whose payload does not match its type."""


class SessionError(ProtocolError):
    """A command that is not valid in the session's current state."""


class MediaError(ParseError):
    """Malformed FLV, AVC or AAC data."""


class ConfigError(RelayError):
    """Configuration that cannot work (bad URL template, bad endpoint, ...)."""
