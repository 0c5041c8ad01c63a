"""Held-out bits/dim of the ``flow`` family on the shared train/test split (short CPU runs).

    python benchmarks/flows.py                                   # digits, affine, quick preset
    python benchmarks/flows.py --coupling spline --steps 1500    # shorter / other coupling
    python benchmarks/flows.py --data mnist10k --steps 500       # 28x28 (slow on CPU)

Fits ``make_model("flow", preset="quick", ...)`` on the train split of
``load_dataset(NAME).split(0.2, 0)`` and prints (and appends to
``benchmarks/results/flows.jsonl``): held-out and train bits/dim (exact, genlab's
convention), fit seconds, seconds per step, the number of non-finite values among 10,000
samples at temperature 1 (before quantisation) and whether ``reconstruct`` returns the test
images exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import genlab  # noqa: E402
from _common import SHARED_DATA, threads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="digits or mnist10k")
    ap.add_argument("--coupling", default="affine", choices=("affine", "spline"))
    ap.add_argument("--mask", default="channel", choices=("channel", "checkerboard"))
    ap.add_argument("--dequantization", default="uniform", choices=("uniform", "variational"))
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the quick preset's)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    threads(args.threads)
    spec = args.data if args.data == "digits" else f"npz:{SHARED_DATA / (args.data + '.npz')}"
    train, test = genlab.load_dataset(spec).split(0.2, 0)
    kw = dict(preset="quick", device="cpu", coupling=args.coupling, mask=args.mask, dequantization=args.dequantization)
    if args.steps is not None:
        kw["max_steps"] = args.steps
    model = genlab.make_model("flow", **kw)
    t0 = time.perf_counter()
    model.fit(train.images)
    fit_s = time.perf_counter() - t0
    steps = model.training_summary_["steps"]
    u = model._sample(10_000, None, torch.Generator().manual_seed(0), temperature=1.0)
    raw = model._decode_tensor(torch.randn(10_000, model.n_dims_, generator=torch.Generator().manual_seed(0)), None)
    row = {
        "data": args.data,
        **{k: kw[k] for k in ("coupling", "mask", "dequantization")},
        "likelihood": model.likelihood,
        "resolved": model.resolved_params_,
        "steps": steps,
        "test_bits_per_dim": model.bits_per_dim(test.images),
        "train_bits_per_dim": model.bits_per_dim(train.images),
        "fit_s": round(fit_s, 1),
        "s_per_step": round(fit_s / max(steps, 1), 3),
        "nonfinite_samples_of_10000": int((~torch.isfinite(raw.flatten(1))).any(1).sum()),
        "samples_in_range": bool(((u >= 0) & (u <= 1)).all()),
        "reconstruct_exact": bool(torch.equal(model.reconstruct(test.images), test.images)),
    }
    print(json.dumps(row))
    out = Path(__file__).resolve().parent / "results" / "flows.jsonl"
    out.parent.mkdir(exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
