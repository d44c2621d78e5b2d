"""Run the reactor under cProfile and write the profile when it stops (the benches' --profile-relay)."""

from __future__ import annotations

import cProfile


def run_profiled(reactor, out: str) -> None:
    profile = cProfile.Profile()
    profile.enable()
    try:
        reactor.run()
    finally:
        profile.disable()
        profile.dump_stats(out)
