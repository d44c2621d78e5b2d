"""One media value from the session to every sink (issue 11): made once where the
session completes an audio or video message, and the very same object handed to
the cleaner, the registry and every sink; the cleaner makes new ones only for
what it changes or generates."""

from __future__ import annotations

from rtmprelay.media.cleaner import CleanerConfig, StreamCleaner
from rtmprelay.media.message import MediaMessage
from rtmprelay.relay.registry import StreamRegistry
from rtmprelay.rtmp import session as s
from rtmprelay.testing.sinks import RecordingSink
from tests.unit.test_server_protocol import AAC_HEADER, AUDIO, AVC_HEADER, INTERFRAME, KEYFRAME


class Publisher:
    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


def test_without_cleaning_every_sink_gets_the_object_the_session_made():
    stream = StreamRegistry().start("live/u1/s1", Publisher())
    sinks = [RecordingSink(), RecordingSink()]
    for sink in sinks:
        stream.attach(sink)
    made = [MediaMessage.of(9, 0, AVC_HEADER), MediaMessage.of(9, 0, KEYFRAME), MediaMessage.of(8, 5, AUDIO)]
    for message in made:
        stream.publish_media(message)
    for sink in sinks:
        assert all(got is sent for got, sent in zip(sink.media, made, strict=True))
    assert stream.video_header is made[0] and stream.since_keyframe()[0] is made[1]


def test_the_cleaner_passes_unchanged_messages_on_and_classifies_only_what_it_changed():
    cleaner = StreamCleaner(CleanerConfig(fps=25.0))
    sent = [MediaMessage.of(9, 0, AVC_HEADER), MediaMessage.of(8, 0, AAC_HEADER)]
    sent += [MediaMessage.of(9, 40 * i, KEYFRAME if i == 0 else INTERFRAME + bytes([i])) for i in range(10)]
    out = []
    for i, message in enumerate(sent):
        out += cleaner.push(message, i * 0.04)
    out += cleaner.finish()
    by_payload = {id(m.payload): m for m in sent}
    # a clean input: every message leaves with its own payload object (retimed, or itself)
    assert sorted(id(message.payload) for message in out) == sorted(by_payload)
    for message in out:
        original = by_payload.get(id(message.payload))
        if original is None:
            continue  # generated here: classified from its own bytes
        assert message == original.retimed(message.timestamp)
        if message.timestamp == original.timestamp:
            assert message is original


def test_the_session_makes_the_value_once_with_its_classification():
    event = s.MediaReceived(1, MediaMessage.of(9, 33, KEYFRAME))
    assert (event.type_id, event.timestamp, event.payload) == (9, 33, KEYFRAME)
    assert event.message.keyframe and not event.message.header and event.message.codec == 7
