"""``genlab demo``: the main job, on the bundled 8x8 digits, in about a minute on 2 CPU cores.

1. Split the digits 80/20 (fixed seed) and keep the test part unseen.
2. Choose the demo model's hyper-parameters by 5-fold cross-validation of held-out
   log-likelihood on the training part.
3. Fit the best setting on the whole training part; score the test part.
4. Write one picture — real digits | uniform noise | generated — and metrics.json.
"""

from __future__ import annotations

import itertools
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .data import load_dataset
from .images import auto_scale, labelled_panels, make_grid, save_png
from .io import write_json
from .models import make_model
from .runs import RunInfo, now

DEMO_MODEL = "gmm"
DEMO_GRID = {"n_components": [10, 20, 50], "reg_covar": [1e-4, 1e-3], "covariance_type": ["full", "diag"]}
N_SHOW = 64


def run_demo(out_dir: Path, seed: int = 0, echo: Callable[[str], None] = print, folds: int = 5) -> dict:
    out_dir = Path(out_dir)
    start = time.perf_counter()
    data = load_dataset("digits")
    train, test = data.split(0.2, seed)
    echo(f"digits: {len(train)} training images, {len(test)} held-out test images, {data.image_shape}")

    fold_pairs = train.kfold(folds, seed)
    results = []
    points = [dict(zip(DEMO_GRID, combo)) for combo in itertools.product(*DEMO_GRID.values())]
    echo(f"choosing {DEMO_MODEL} hyper-parameters by {folds}-fold cross-validation ({len(points)} settings)")
    for point in points:
        scores = []
        for fold_train, fold_test in fold_pairs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = make_model(DEMO_MODEL, random_state=seed, **point).fit(fold_train.images)
            scores.append(model.score(fold_test.images))
        results.append((float(np.mean(scores)), float(np.std(scores, ddof=1)), point))
    results.sort(key=lambda r: -r[0])
    for mean, std, point in results[:3]:
        echo(f"  {point}: {mean:.2f} ± {std:.2f} nats/image held out")
    best = results[0][2]

    model = make_model(DEMO_MODEL, random_state=seed, **best).fit(train.images)
    uniform = make_model("uniform").fit(train.images)
    model_bpd = model.bits_per_dim(test.images)
    uniform_bpd = uniform.bits_per_dim(test.images)
    echo(f"test bits/dim: {DEMO_MODEL} {model_bpd:.3f} vs uniform noise {uniform_bpd:.3f} (lower is better)")

    model_dir = out_dir / "model"
    model.save(model_dir)
    RunInfo(model=DEMO_MODEL, data="digits", seed=seed, split_seed=seed, created=now()).save(model_dir)
    generated = model.sample(N_SHOW, seed=seed)
    noise = uniform.sample(N_SHOW, seed=seed)
    real = test.images[:N_SHOW]
    scale = auto_scale(data.image_shape[1], target=40)
    picture = labelled_panels(
        [("real digits (held out)", make_grid(real, 8)), ("uniform noise", make_grid(noise, 8)), (f"generated: {DEMO_MODEL}", make_grid(generated, 8))], scale
    )
    picture_path = save_png(picture, out_dir / "demo.png")
    metrics = {
        "model": DEMO_MODEL,
        "params": best,
        "cv_folds": folds,
        "cv_results": [{"params": p, "mean_nats": m, "std_nats": s} for m, s, p in results],
        "test_bits_per_dim": model_bpd,
        "uniform_test_bits_per_dim": uniform_bpd,
        "test_log_likelihood_nats": model.score(test.images),
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(out_dir / "metrics.json", metrics)
    echo(f"wrote {picture_path} (real | uniform noise | generated), {out_dir / 'metrics.json'} and the model in {model_dir}/")
    echo(f"done in {metrics['seconds']:.1f} s")
    return metrics
