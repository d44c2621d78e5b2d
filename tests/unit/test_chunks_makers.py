"""``ChunkReader.makers``: what the reader makes of a completed message of a given type
(the connection's media value), called exactly as ``Message`` is, for those types only."""

from __future__ import annotations

from rtmprelay.rtmp.chunks import ChunkReader, ChunkWriter, Message


def test_makers_get_messages_arguments_for_their_types_only():
    sent = [Message(9, b"\x17\x01video", 40, 1, 6), Message(8, b"\xaf\x01audio", 41, 1, 4), Message(20, b"cmd", 0, 0, 3)]
    writer = ChunkWriter(4)  # several chunks each: the fast path and the chunk loop alike
    wire = b"".join(writer.write(message) for message in sent)
    reader = ChunkReader(4)
    reader.makers = {9: lambda *args: ("made", args)}
    assert reader.feed(wire) == [("made", (9, b"\x17\x01video", 40, 1, 6)), sent[1], sent[2]]
    reader = ChunkReader(4)
    reader.makers = {9: lambda *args: ("made", args)}
    got = [item for i in range(len(wire)) for item in reader.feed(wire[i : i + 1])]
    assert got == [("made", (9, b"\x17\x01video", 40, 1, 6)), sent[1], sent[2]]
