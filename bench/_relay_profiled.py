"""rtmprelay under cProfile, for ``relay_forward.py --profile-relay``.

    python bench/_relay_profiled.py OUT.prof [rtmprelay options]

twistd ends a SIGTERMed process by re-raising the signal, so
``python -m cProfile -m rtmprelay`` never writes its file. This builds the same
service as ``python -m rtmprelay`` (``tap.Options`` and ``tap.makeService``),
runs the reactor itself, and dumps the profile once the reactor has stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtmprelay import tap  # noqa: E402

from _profiled import run_profiled  # noqa: E402  (bench/ is this script's folder)


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    options = tap.Options()
    options.parseOptions(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    service = tap.makeService(options)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    run_profiled(reactor, out)


if __name__ == "__main__":
    main()
