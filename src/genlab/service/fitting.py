"""Training workflows: :func:`fit_run` (``genlab fit``) and :func:`cross_validate` (``genlab cv``)."""

from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import GenlabError
from .common import Echo, load_data, silent

#: fit flags that map onto hyper-parameters of the neural models (name -> value given)
NEURAL_FLAGS = ("condition", "preset", "epochs", "max_steps", "device", "precision", "checkpoint_every", "sample_every")
#: held-out images fit scores by default for neural models (their likelihood is costly: an ELBO
#: or importance-weighted bound); classical models score the whole held-out split
DEFAULT_SCORE_IMAGES = 2_000
#: images per call when scoring, so the progress bar moves
SCORE_CHUNK = 256


@dataclass
class FitResult:
    """What :func:`fit_run` did."""

    out_dir: Path
    #: the fitted model
    model: Any
    #: what was written to metrics.json (held-out likelihood, timings, training summary)
    metrics: dict[str, Any]
    fit_seconds: float
    #: False on the non-zero ranks of a torchrun job, which train but write nothing
    wrote: bool = True
    #: names of the files and folders in the run folder
    files: list[str] = field(default_factory=list)
    #: the (train, test) split the model was trained and scored on
    train: Any = None
    test: Any = None


def fit_run(
    model_name: str,
    data_spec: str,
    out_dir: str | Path,
    *,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    size: int | None = None,
    n_samples: int = 64,
    condition: str | None = None,
    captions: str | None = None,
    preset: str | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    checkpoint_every: int | None = None,
    sample_every: int | None = None,
    resume: bool = False,
    score_images: int | None = None,
    echo: Echo = silent,
) -> FitResult:
    """Train ``model_name`` on the training split of ``data_spec`` and write a run folder.

    The run folder ``out_dir`` gets config.json + model.safetensors (the model), run.json
    (data and split), metrics.json (held-out log-likelihood in nats/image and bits/dim,
    timings) and samples.png (``n_samples`` images); neural models also checkpoint into
    ``out_dir/checkpoints`` so that ``resume=True`` continues an interrupted run.
    ``params``: hyper-parameters; the keyword flags (``condition`` ... ``sample_every``)
    are neural-model hyper-parameters given separately, None = not given.
    ``score_images``: how many held-out images to score at the end (a fixed-seed random
    subset; recorded in metrics.json as ``n_scored``): None = all for classical models and
    :data:`DEFAULT_SCORE_IMAGES` for neural ones, 0 = skip the scoring.
    """
    from ..images import save_grid
    from ..models import make_model
    from ..runs import RunInfo, now, update_metrics
    from ..training import is_main_process

    if score_images is not None and score_images < 0:
        raise GenlabError(f"--score-images {score_images}: must be >= 0 (0 skips the held-out scoring)")
    out_dir = Path(out_dir)
    kwargs = dict(params or {})
    flags = {"condition": condition, "preset": preset, "epochs": epochs, "max_steps": max_steps, "device": device,
             "precision": precision, "checkpoint_every": checkpoint_every, "sample_every": sample_every}
    model = make_model(model_name, **kwargs)
    valid = model.get_params()
    for name, value in flags.items():
        if value is None:
            continue
        if name not in valid:
            raise GenlabError(f"--{name.replace('_', '-')}: {model_name} has no such setting (it is not a neural model, or does not support it)")
        if name in kwargs:
            raise GenlabError(f"{name} given both as --{name.replace('_', '-')} and --param")
        kwargs[name] = value
    neural = "checkpoint_dir" in valid
    if resume and not neural:
        raise GenlabError(f"--resume: {model_name} is not trained in steps, so there is nothing to resume")
    if neural and "checkpoint_dir" not in kwargs:
        kwargs["checkpoint_dir"] = str(out_dir / "checkpoints")
    if "random_state" in valid and "random_state" not in kwargs:
        kwargs["random_state"] = seed
    model = make_model(model_name, **kwargs)
    text = bool(getattr(model, "text_conditional", False))
    if captions is not None and not text:
        raise GenlabError("--captions only applies with --condition text")
    data = load_data(data_spec, size, captions=(captions or "auto") if text else None)
    if model.conditional and data.labels is None:
        raise GenlabError(f"--condition label: {data_spec} has no labels")
    train, test = data.split(test_fraction, split_seed)

    main_process = is_main_process()
    if main_process:
        echo(f"fitting {model_name} on {len(train)} images of {data_spec} (shape {train.image_shape}); {len(test)} held out")
    start = time.perf_counter()
    fit_kwargs = {"resume": True} if resume else {}
    targets = train.captions if text else (train.labels if model.conditional else None)
    model.fit(train.images, targets, **fit_kwargs)
    fit_seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {"model": model_name, "fit_seconds": round(fit_seconds, 3), "n_train": len(train), "n_test": len(test)}
    if not main_process:
        return FitResult(out_dir, model, metrics, fit_seconds, wrote=False, train=train, test=test)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir)
    RunInfo(model=model_name, data=data_spec, size=size, captions=(captions or "auto") if text else None, test_fraction=test_fraction,
            split_seed=split_seed, seed=seed, created=now()).save(out_dir)
    summary = getattr(model, "training_summary_", None)
    if summary:
        metrics["training"] = summary
    if model.likelihood != "none":
        limit = (DEFAULT_SCORE_IMAGES if neural else len(test)) if score_images is None else score_images
        metrics.update(score_held_out(model, test, limit, seed=split_seed, echo=echo))
    update_metrics(out_dir, **metrics)
    labels = (torch.arange(n_samples) % int(model.n_classes_)) if model.conditional and getattr(model, "n_classes_", None) else None
    if text:  # samples for the held-out images' captions (sentences the model did not train on)
        prompts = [test.captions[i % len(test)] for i in range(n_samples)]
        save_grid(model.sample(n_samples, prompt=prompts, seed=seed), out_dir / "samples.png")
        (out_dir / "samples-prompts.txt").write_text("\n".join(prompts) + "\n")
    else:
        ncols = int(model.n_classes_) if labels is not None and model.n_classes_ <= 16 else None
        save_grid(model.sample(n_samples, y=labels, seed=seed), out_dir / "samples.png", ncols=ncols)
    files = ["config.json", "model.safetensors", "run.json", "metrics.json", "samples.png"] + (["checkpoints/"] if neural else [])
    return FitResult(out_dir, model, metrics, fit_seconds, wrote=True, files=files, train=train, test=test)


def score_held_out(model, test, limit: int, *, seed: int = 0, echo: Echo = silent) -> dict[str, Any]:
    """Mean held-out log-likelihood (nats/image) and bits/dim of at most ``limit`` images of
    ``test`` (a fixed-seed random subset when there are more). Returns the metrics.json
    entries; ``limit`` 0 records that the scoring was skipped."""
    from ..likelihood import bits_per_dim

    n = min(int(limit), len(test))
    if n == 0:
        return {"n_scored": 0, "likelihood": model.likelihood}
    images = test.images
    if n < len(test):
        images = images[np.sort(np.random.default_rng(seed).choice(len(test), n, replace=False))]
        echo(f"scoring {n} of the {len(test)} held-out images")
    mean = float(score_images_in_chunks(model, images).mean())
    return {"test_log_likelihood_nats": mean, "test_bits_per_dim": float(bits_per_dim(mean, model.n_dims_)), "likelihood": model.likelihood, "n_scored": n}


def score_images_in_chunks(model, images: torch.Tensor) -> np.ndarray:
    """``model.score_samples(images)`` (nats, (N,)); neural models in chunks of
    :data:`SCORE_CHUNK` under a progress bar (their bounds are slow), classical models in
    one call (so the figures equal ``model.score`` exactly: scoring uses fixed-seed
    dequantisation per call)."""
    from ..progress import progress

    if "checkpoint_dir" not in model.get_params():
        return model.score_samples(images)
    parts = []
    with progress(total=len(images), desc="held-out log-likelihood", unit="img") as bar:
        for start in range(0, len(images), SCORE_CHUNK):
            parts.append(model.score_samples(images[start : start + SCORE_CHUNK]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)


@dataclass
class CVResult:
    """What :func:`cross_validate` measured: one entry per grid point."""

    model: str
    data: str
    folds: int
    base_params: dict[str, Any]
    #: per grid point: {"params", "fold_scores" (nats/image), "mean", "std", "bits_per_dim"}
    results: list[dict[str, Any]]
    best: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "folds": self.folds, "base_params": self.base_params, "results": self.results, "best": self.best}


def cross_validate(
    model_name: str,
    data_spec: str,
    *,
    folds: int = 5,
    params: Mapping[str, Any] | None = None,
    grid: Mapping[str, list[Any]] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    size: int | None = None,
    json_out: str | Path | None = None,
    echo: Echo = silent,
) -> CVResult:
    """k-fold cross-validation of held-out log-likelihood (nats/image) on the training split,
    for every point of the product ``grid`` (name -> values) on top of ``params``.

    ``echo`` gets one line per grid point as it finishes; ``json_out``: also write the
    results there as JSON.
    """
    from ..likelihood import bits_per_dim
    from ..models import make_model

    base = dict(params or {})
    grid_values = dict(grid or {})
    overlap = sorted(set(base) & set(grid_values))
    if overlap:
        raise GenlabError(f"{', '.join(overlap)} given both as --param and --grid")
    make_model(model_name, **base, **{k: v[0] for k, v in grid_values.items()})  # validates names early
    train, _ = load_data(data_spec, size).split(test_fraction, seed)
    fold_pairs = train.kfold(folds, seed)
    points = [dict(zip(grid_values, combo)) for combo in itertools.product(*grid_values.values())] or [{}]
    n_dims = train.n_dims
    echo(f"{folds}-fold cross-validation of {model_name} on {len(train)} training images of {data_spec}")
    results = []
    for point in points:
        scores = []
        for fold_train, fold_test in fold_pairs:
            model = make_model(model_name, **base, **point)
            if "random_state" in model.get_params() and "random_state" not in base and "random_state" not in point:
                model.set_params(random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(fold_train.images, fold_train.labels if model.conditional else None)
            scores.append(model.score(fold_test.images))
        label = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "(defaults)"
        bpd = [float(bits_per_dim(s, n_dims)) for s in scores]
        echo(f"{label}: held-out log-likelihood {fmt_pm(scores)} nats/image, {fmt_pm(bpd)} bits/dim")
        echo("    folds: " + "  ".join(f"{s:.2f}" for s in scores))
        results.append({"params": point, "fold_scores": scores, "mean": float(np.mean(scores)), "std": float(np.std(scores, ddof=1)), "bits_per_dim": float(np.mean(bpd))})
    best = max(results, key=lambda r: r["mean"])
    result = CVResult(model_name, data_spec, folds, base, results, best)
    if json_out is not None:
        from ..io import write_json

        write_json(json_out, result.to_dict())
    return result


def fmt_pm(values) -> str:
    """'mean ± std' (sample std, ddof=1) with 4 decimals."""
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"
