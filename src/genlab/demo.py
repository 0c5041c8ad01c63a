"""``genlab demo``: the main job, on the bundled 8x8 digits.

The default, ``text`` (about 4-5 minutes on 2 CPU cores): genlab's best generator on digits,
text-to-image diffusion.

1. Split the digits 80/20 (fixed seed) and keep the test part unseen; genlab writes a
   caption for every image from its label and measured stroke thickness, slant and size.
2. Train the text-conditional diffusion model (quick preset) on the training part.
3. Generate from prompts in wording no training caption uses ("the number five, drawn with
   a heavy pen", ...) and from the held-out images' own captions; judge them with the
   evaluator network: share of samples showing the named digit, Fréchet distance to the
   held-out images, copies of training images.
4. Write one picture — real digits | uniform noise | generated, one row per prompt — and
   metrics.json.

``gmm`` (seconds): the classical model, hyper-parameters chosen by 5-fold cross-validation
of held-out log-likelihood, the same picture.
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
from .service import fit_run

DEMO_MODELS = ("text", "gmm")
DEMO_MODEL = "gmm"
DEMO_GRID = {"n_components": [10, 20, 50], "reg_covar": [1e-4, 1e-3], "covariance_type": ["full", "diag"]}
N_SHOW = 64
#: the demo's model folder is its own: a rerun replaces it
_OWN_RUN = {"overwrite": True}


def run_demo(
    out_dir: Path,
    seed: int = 0,
    echo: Callable[[str], None] = print,
    folds: int = 5,
    model: str = "text",
    **text_options,
) -> dict:
    """Run the demo ``model`` ("text" or "gmm") into ``out_dir``; returns its metrics.
    ``text_options`` go to :func:`run_text_demo` (shorter runs for tests)."""
    if model == "text":
        return run_text_demo(out_dir, seed=seed, echo=echo, **text_options)
    if model != "gmm":
        from .errors import GenlabError

        raise GenlabError(f"demo model {model!r}: choose one of {', '.join(DEMO_MODELS)}")
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

    model_dir = out_dir / "model"
    model = fit_run(DEMO_MODEL, "digits", model_dir, params=best, seed=seed, split_seed=seed, **_OWN_RUN).model
    uniform = make_model("uniform").fit(train.images)
    model_bpd = model.bits_per_dim(test.images)
    uniform_bpd = uniform.bits_per_dim(test.images)
    echo(f"test bits/dim: {DEMO_MODEL} {model_bpd:.3f} vs uniform noise {uniform_bpd:.3f} (lower is better)")

    generated = model.sample(N_SHOW, seed=seed)
    noise = uniform.sample(N_SHOW, seed=seed)
    real = test.images[:N_SHOW]
    scale = auto_scale(data.image_shape[1], target=40)
    picture = labelled_panels(
        [
            ("real digits (held out)", make_grid(real, 8)),
            ("uniform noise", make_grid(noise, 8)),
            (f"generated: {DEMO_MODEL}", make_grid(generated, 8)),
        ],
        scale,
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
    echo(
        f"wrote {picture_path} (real | uniform noise | generated), {out_dir / 'metrics.json'} and the model in {model_dir}/"
    )
    echo(f"done in {metrics['seconds']:.1f} s")
    return metrics


def run_text_demo(
    out_dir: Path,
    seed: int = 0,
    echo: Callable[[str], None] = print,
    max_steps: int | None = None,
    evaluator_epochs: int | None = None,
    samples_per_prompt: int = 32,
    n_eval: int = 500,
) -> dict:
    """Text-to-image diffusion on the digits (see the module docstring). ``max_steps`` and
    ``evaluator_epochs`` shorten the trainings, ``samples_per_prompt`` (>= 8) and ``n_eval``
    the evaluation (tests)."""
    import torch

    from .metrics.evaluate import sample_metrics
    from .metrics.evaluator import get_evaluator
    from .text.captions import HELD_OUT_TARGETS

    out_dir = Path(out_dir)
    start = time.perf_counter()
    data = load_dataset("digits", captions="auto")
    train, test = data.split(0.2, seed)
    echo(f"digits: {len(train)} training images with captions such as {train.captions[0]!r}, {len(test)} held out")
    echo("training text-to-image diffusion (quick preset; a progress bar shows the steps)")
    model_dir = out_dir / "model"
    # the held-out likelihood bound is not what the demo shows: skip its scoring
    fit = fit_run(
        "diffusion",
        "digits",
        model_dir,
        params={"max_steps": max_steps},
        condition="text",
        seed=seed,
        split_seed=seed,
        n_samples=8,
        score_images=0,
        **_OWN_RUN,
    )
    model = fit.model
    fit_seconds = time.perf_counter() - start

    evaluator = get_evaluator(train, test, seed=seed, epochs=evaluator_epochs)
    prompts = list(HELD_OUT_TARGETS)
    per_prompt = 8
    rows, accuracy = [], {}
    for i, prompt in enumerate(prompts):
        images = model.sample(max(per_prompt, samples_per_prompt), prompt=prompt, seed=seed + i)
        accuracy[prompt] = float((evaluator.predict(images) == int(HELD_OUT_TARGETS[prompt]["digit"])).float().mean())
        rows.append(images[:per_prompt])
    generated = torch.cat(rows)
    n_eval = min(n_eval, len(test))
    caption_samples = model.sample(n_eval, prompt=test.captions[:n_eval], seed=seed)
    quality = sample_metrics(caption_samples, train, test, evaluator, requested_labels=test.labels[:n_eval]).metrics
    uniform = make_model("uniform").fit(train.images)
    noise = uniform.sample(len(generated), seed=seed)
    real = test.images[: len(generated)]
    scale = auto_scale(data.image_shape[1], target=40)
    picture = labelled_panels(
        [
            ("real digits (held out)", make_grid(real, per_prompt)),
            ("uniform noise", make_grid(noise, per_prompt)),
            ("generated from the prompts below", make_grid(generated, per_prompt)),
        ],
        scale,
    )
    picture_path = save_png(picture, out_dir / "demo.png")
    (out_dir / "prompts.txt").write_text("".join(f"row {i + 1}: {p}\n" for i, p in enumerate(prompts)))
    metrics = {
        "model": "diffusion",
        "condition": "text",
        "training": model.training_summary_,
        "fit_seconds": round(fit_seconds, 1),
        "evaluator": evaluator.describe(),
        "held_out_prompt_accuracy": accuracy,
        "held_out_prompt_accuracy_mean": float(np.mean(list(accuracy.values()))),
        "held_out_captions": {
            k: quality[k]
            for k in ("fd", "precision", "recall", "conditional_accuracy", "copies", "copies_reference")
            if k in quality
        },
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(out_dir / "metrics.json", metrics)
    for prompt in prompts:
        echo(f"  {accuracy[prompt]:6.1%} show the digit asked for: {prompt!r}")
    q = metrics["held_out_captions"]
    echo(
        f"samples for the {n_eval} held-out captions: Fréchet distance {q['fd']:.2f} to the held-out images, "
        f"{q.get('conditional_accuracy', float('nan')):.1%} show the caption's digit, {q['copies']:.1%} near-copies of training images"
    )
    echo(
        f"wrote {picture_path} (real | uniform noise | generated, one row per prompt in {out_dir / 'prompts.txt'}), {out_dir / 'metrics.json'} and the model in {model_dir}/"
    )
    echo(f"done in {metrics['seconds']:.1f} s")
    return metrics
