"""Trained models sampled with and without their tone curve (issue #14; :mod:`genlab.tone_curve`).

For each saved model folder (a ``genlab fit`` run folder or ``model.save`` output) trained on
the shared mnist10k (or digits) train split, draws ``-n`` samples the way ``genlab evaluate``
does (class-conditional models: a balanced set of labels) twice from the same seed — mapped
through the tone curve, and plainly rounded (``tone_curve=False``) — and prints the pixel
histogram (TV distance to the held-out images, exact-background and faint 1-7 shares) beside
FD, precision and coverage in both feature spaces, and near-copies; real training images scored
the same way give the reference. Models saved before the tone curve existed get it fitted
first, exactly as ``fit`` would (``--refit`` refits it for every model):

    OMP_NUM_THREADS=1 python benchmarks/tone_curve.py --data mnist10k runs/gan runs/diffusion ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _common import load_split, table, threads  # noqa: E402

import genlab  # noqa: E402
from genlab.metrics.evaluate import evaluate_model, real_data_metrics  # noqa: E402
from genlab.metrics.evaluator import get_evaluators  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402

COLUMNS = [
    "model",
    "pixels",
    "pixel_tv",
    "zero_share",
    "faint_share",
    "fd",
    "precision",
    "coverage",
    "fd_mlp",
    "precision_mlp",
    "coverage_mlp",
    "copies",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="saved model / run folders")
    parser.add_argument("--data", default="mnist10k", help="shared data file the models were trained on")
    parser.add_argument("-n", type=int, default=1000, help="samples per model and setting")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sample seeds")
    parser.add_argument("--refit", action="store_true", help="refit every model's tone curve")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    set_quiet(True)
    with threads(args.threads):
        train, test = load_split(args.data)
        evaluators = get_evaluators(train, test, seed=0)
        rows = []
        for seed in args.seeds:
            real = real_data_metrics(train, test, evaluators, n_samples=args.n, seed=seed)
            rows.append({"model": "real training images", "pixels": f"seed {seed}", **real})
        for path in args.models:
            model = genlab.load_model(path)
            if args.refit or getattr(model, "tone_thresholds_", None) is None:
                start = time.perf_counter()
                model._after_fit(train.images)  # the step fit ends with
                print(f"{path}: tone curve fitted in {time.perf_counter() - start:.1f} s", flush=True)
            for seed in args.seeds:
                for setting, options in (("tone curve", {}), ("rounded", {"tone_curve": False})):
                    ev = evaluate_model(
                        model,
                        train,
                        test,
                        evaluators,
                        n_samples=args.n,
                        seed=seed,
                        sample_options=options,
                        likelihood=False,
                    )
                    row = {"model": f"{model.name} {path.name}", "pixels": f"{setting}, seed {seed}", **ev.metrics}
                    rows.append(row)
                    print(table([row], COLUMNS).splitlines()[-1], flush=True)
    print()
    print(table(rows, COLUMNS))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
