"""Fuzzing in the suite (issue 8): every parser, and the whole ingest path of one
connection, fed mutated real traffic; only declared errors may come out.

Bounded by input counts so the suite's time stays fixed; the long run and its
figures are in docs/testing.md (``python -m rtmprelay.testing.fuzz``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rtmprelay.testing.fuzz import corpus_from_captures, fuzz, targets

DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = corpus_from_captures(sorted(DATA.glob("*.c2s.bin")))
TARGETS = {target.name: target for target in targets(CORPUS)}
#: Inputs per target in the suite (~0.1 s each for a parser; the server target ~1 ms an input).
INPUTS = {"server": 1500, "cleaner": 1500}
DEFAULT_INPUTS = 5000


def test_the_corpus_holds_real_traffic_of_every_kind():
    assert len(CORPUS.sessions) >= 6
    for kind in ("video_tags", "audio_tags", "avc_configs", "aac_configs", "nal_units"):
        assert getattr(CORPUS, kind), kind
    assert {1, 8, 9, 18, 20} <= set(CORPUS.messages)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_raises_only_declared_errors(name):
    result = fuzz(TARGETS[name], inputs=INPUTS.get(name, DEFAULT_INPUTS), seed=20261204)
    assert not result.findings, "\n\n".join(f"{f.error}\n{f.traceback}" for f in result.findings)
    assert result.inputs == INPUTS.get(name, DEFAULT_INPUTS)


def test_the_server_target_notices_a_contained_fault(monkeypatch):
    """The server target must be able to fail: a sink that raises is a finding."""
    from rtmprelay.relay import registry

    def broken(self, type_id, timestamp, payload, now=0.0):
        raise RuntimeError("planted")

    monkeypatch.setattr(registry.LiveStream, "publish_media", broken)
    result = fuzz(TARGETS["server"], inputs=len(TARGETS["server"].seeds), seed=1)
    assert result.findings and "contained faults" in result.findings[0].error
