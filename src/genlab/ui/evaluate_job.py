"""``python -m genlab.ui.evaluate_job RUN_DIR N SEED``: the evaluation job of the web app.

:func:`genlab.service.evaluate_run` (which merges the metrics into the run's metrics.json),
then the memorisation and uniform-noise baseline strips from what its ``inspect`` hook
hands over (:func:`genlab.ui.figures.write_figures`). Run in a subprocess by the job worker,
like training, so that a long or crashing evaluation never stalls the server.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from ..errors import GenlabError
    from ..progress import set_quiet
    from ..service import evaluate_run
    from .figures import write_figures

    set_quiet(True)
    run, n, seed = Path(argv[0]), int(argv[1]), int(argv[2])
    seen: dict = {}
    try:
        result = evaluate_run(
            run, n_samples=n, seed=seed, inspect=lambda ev, train, test: seen.update(ev=ev, train=train, test=test)
        )
        if seen:
            write_figures(run, seen["ev"], seen["train"], seen["test"], seed=seed)
    except GenlabError as exc:
        print(f"genlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genlab: interrupted", file=sys.stderr)
        return 130
    print(f"evaluated with {result.n_samples} samples in {result.seconds:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover - run by the job worker
    sys.exit(main(sys.argv[1:]))
