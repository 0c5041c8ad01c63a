"""``python -m genlab.ui.interruptible MODULE [ARGS...]``: ``python -m MODULE ARGS...`` with
Ctrl-C semantics restored.

The job queue cancels a job with SIGINT, so that the trainer stops between steps as it does
on Ctrl-C and keeps its last checkpoint for ``--resume``. A process that starts with SIGINT
*ignored* — every background job of a non-interactive shell (``genlab serve &`` in a
script, CI runners) inherits ``SIG_IGN`` — never gets Python's KeyboardInterrupt handler, so
the signal would do nothing and the cancelled job would run to the end. This entry point
reinstalls the handler before running the module.
"""

from __future__ import annotations

import runpy
import signal
import sys


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m genlab.ui.interruptible MODULE [ARGS...]")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
