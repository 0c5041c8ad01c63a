"""Evaluate one generator honestly: sample metrics in the evaluator's feature space,
memorisation against the training set, held-out likelihood, class coverage, intrinsic
dimension and sampling speed — all against real images the model never saw.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..data.dataset import Dataset
from ..errors import GenlabError
from ..likelihood import bits_per_dim
from .classes import class_entropy, class_histogram, conditional_accuracy
from .evaluator import Evaluator
from .frechet import frechet_distance
from .kid import bootstrap_intervals, kernel_distance
from .intrinsic_dim import mle_intrinsic_dimension, pca_dimension
from .memorization import MemorizationResult, memorization
from .pixels import pixel_metrics
from .prdc import prdc

#: metrics where higher is better (the rest: lower is better, or neither)
HIGHER_IS_BETTER = {
    "precision",
    "recall",
    "density",
    "coverage",
    "class_entropy",
    "conditional_accuracy",
    "test_log_likelihood_nats",
    "sampling_images_per_s",
}
#: metrics where lower is better
LOWER_IS_BETTER = {"fd", "kid", "fid_inception", "copies", "test_bits_per_dim", "likelihood_gap_nats", "pixel_tv"}


def unit_flat(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, D) in [0, 1]: the pixel space for memorisation and intrinsic dimension."""
    return images.reshape(len(images), -1).float() / 255.0


@dataclass
class Evaluation:
    """Metrics of one set of samples (``metrics``) plus what the report shows beside them."""

    metrics: dict[str, float]
    samples: torch.Tensor
    memorization: MemorizationResult | None = None
    extras: dict = field(default_factory=dict)


def feature_space_metrics(
    feats_real: torch.Tensor, feats_fake: torch.Tensor, *, k: int = 5, seed: int = 0, suffix: str = ""
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """FD, KID (± its spread over subsets), precision/recall/density/coverage of ``feats_fake``
    (M, F) against ``feats_real`` (N, F), and their bootstrap intervals; every key gets ``suffix``."""
    metrics: dict[str, float] = {"fd": frechet_distance(feats_real, feats_fake)}
    metrics.update(kernel_distance(feats_real, feats_fake, seed=seed))
    indicators: dict = {}
    metrics.update(prdc(feats_real, feats_fake, k=k, indicators=indicators))
    ci = bootstrap_intervals(feats_real, feats_fake, indicators, k=k, point=metrics, seed=seed)
    return {key + suffix: v for key, v in metrics.items()}, {key + suffix: v for key, v in ci.items()}


def space_suffix(evaluator: Evaluator, primary: bool) -> str:
    """Metric-name suffix of a feature space: none for the primary one, ``_mlp`` etc. for the others."""
    return "" if primary else f"_{evaluator.space}"


def sample_metrics(
    samples: torch.Tensor,
    train: Dataset,
    test: Dataset,
    evaluator: Evaluator | Sequence[Evaluator],
    *,
    k: int = 5,
    requested_labels: torch.Tensor | None = None,
    intrinsic_k: int = 20,
    inception_weights: str | Path | None = None,
    seed: int = 0,
) -> Evaluation:
    """Metrics of ``samples`` (uint8 (N, C, H, W)) against held-out ``test`` and the ``train`` set.

    ``evaluator``: one evaluator or several (independent feature spaces, the first primary).
    In the primary space (no suffix) and in every further one (suffix ``_<space>``, e.g. ``fd_mlp``):

    * ``fd``: Fréchet distance between Gaussian fits of evaluator features (samples vs test).
    * ``kid``, ``kid_std``: kernel distance (unbiased MMD², cubic kernel) and its spread over subsets.
    * ``precision``, ``recall`` (Kynkäänniemi et al. 2019), ``density``, ``coverage`` (Naeem et al. 2020), k = ``k``.

    ``extras["ci"]`` holds 95% bootstrap intervals (over the samples) of fd, kid and the four
    k-NN metrics in every space; ``extras["n"]`` the sample sizes (``samples``, ``real``).
    Further (primary space / pixels):

    * ``class_entropy``: entropy of the evaluator's predicted classes, normalised (1 = all classes equally often);
      ``conditional_accuracy`` when ``requested_labels`` were asked for.
    * ``pixel_tv``, ``zero_share``, ``faint_share``: the pixel-value histogram against the
      held-out images (:mod:`.pixels`).
    * ``copies``: share of samples closer to a training image (pixel L2) than 95% of held-out real
      images are; ``copies_reference`` is the held-out images' own rate (5% by construction).
    * ``id_mle``, ``id_pca95``: intrinsic dimension of the samples in pixel space.
    * ``fid_inception`` (only with ``inception_weights``, the FID Inception-v3 weights file):
      the standard FID of the samples against ``test``, via torch-fidelity (:mod:`.inception`).
    """
    if tuple(samples.shape[1:]) != tuple(test.image_shape):
        raise GenlabError(f"samples have shape {tuple(samples.shape[1:])}, the data {tuple(test.image_shape)}")
    evaluators = [evaluator] if isinstance(evaluator, Evaluator) else list(evaluator)
    evaluator = evaluators[0]
    metrics: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    for i, ev in enumerate(evaluators):
        m, ci = feature_space_metrics(
            ev.features(test.images), ev.features(samples), k=k, seed=seed, suffix=space_suffix(ev, i == 0)
        )
        metrics.update(m)
        intervals.update(ci)
    metrics.update(pixel_metrics(samples, test.images))
    if inception_weights is not None:
        from .inception import inception_fid

        metrics["fid_inception"] = inception_fid(samples, test.images, inception_weights)
    if evaluator.network is not None:
        predicted = evaluator.predict(samples)
        n_classes = len(evaluator.class_names or []) or int(predicted.max()) + 1
        metrics["class_entropy"] = class_entropy(class_histogram(predicted, n_classes), normalized=True)
        if requested_labels is not None:
            metrics["conditional_accuracy"] = conditional_accuracy(predicted, requested_labels)
    mem = memorization(unit_flat(samples), unit_flat(train.images), unit_flat(test.images), quantile=0.05)
    metrics["copies"] = mem.copy_fraction
    metrics["copies_reference"] = mem.reference_fraction
    x = unit_flat(samples)
    metrics["id_mle"] = mle_intrinsic_dimension(x, k=intrinsic_k)
    metrics["id_pca95"] = float(pca_dimension(x, variance=0.95))
    return Evaluation(
        metrics=metrics,
        samples=samples,
        memorization=mem,
        extras={
            "ci": intervals,
            "n": {"samples": len(samples), "real": len(test)},
            "spaces": [ev.space for ev in evaluators],
        },
    )


def evaluate_model(
    model,
    train: Dataset,
    test: Dataset,
    evaluator: Evaluator | Sequence[Evaluator],
    *,
    n_samples: int = 1000,
    seed: int = 0,
    k: int = 5,
    inception_weights: str | Path | None = None,
    sample_options: Mapping[str, Any] | None = None,
    likelihood: bool = True,
) -> Evaluation:
    """Sample ``n_samples`` images from a fitted model and compute every metric.

    ``sample_options``: per-call options of ``model.sample`` (e.g. ``{"tone_curve": False}``);
    ``likelihood=False`` skips the held-out scoring (slow for diffusion's bound).

    Conditional models are asked for a balanced set of labels and also get
    ``conditional_accuracy``. Models with a likelihood get held-out
    ``test_log_likelihood_nats`` and ``test_bits_per_dim``. With ``inception_weights`` also
    the standard FID, ``fid_inception``.
    """
    requested = None
    start = time.perf_counter()
    if getattr(model, "conditional", False) and getattr(model, "n_classes_", None):
        requested = torch.arange(n_samples) % int(model.n_classes_)
        samples = model.sample(n_samples, y=requested, seed=seed, **dict(sample_options or {}))
    else:
        samples = model.sample(n_samples, seed=seed, **dict(sample_options or {}))
    sample_seconds = time.perf_counter() - start
    evaluation = sample_metrics(
        samples, train, test, evaluator, k=k, requested_labels=requested, inception_weights=inception_weights, seed=seed
    )
    evaluation.metrics["sampling_images_per_s"] = n_samples / max(sample_seconds, 1e-9)
    if likelihood and getattr(model, "likelihood", "none") != "none":
        ll = model.score_samples(test.images)
        evaluation.metrics["test_log_likelihood_nats"] = float(np.mean(ll))
        evaluation.metrics["test_bits_per_dim"] = float(bits_per_dim(float(np.mean(ll)), test.n_dims))
        # the overfitting signal: how much more likely the training images are than unseen ones
        g = torch.Generator().manual_seed(seed)
        train_subset = train.images[torch.randperm(len(train), generator=g)[: max(len(test), 1000)]]
        train_ll = float(np.mean(model.score_samples(train_subset)))
        evaluation.metrics["train_log_likelihood_nats"] = train_ll
        evaluation.metrics["likelihood_gap_nats"] = train_ll - float(np.mean(ll))
    return evaluation


def real_data_metrics(
    train: Dataset,
    test: Dataset,
    evaluator: Evaluator | Sequence[Evaluator],
    *,
    n_samples: int,
    seed: int,
    k: int = 5,
    inception_weights: str | Path | None = None,
) -> dict[str, float]:
    """The noise floor: a random subset of *real* training images scored like samples.

    Their Fréchet distance, precision, ... against the held-out images show how far two
    real sets of this size already differ. (Their ``copies`` is 1 by construction — they
    are training images — so it is dropped.)
    """
    g = torch.Generator().manual_seed(seed)
    n = min(n_samples, len(train))
    idx = torch.randperm(len(train), generator=g)[:n]
    subset = train.images[idx]
    ev = sample_metrics(subset, train, test, evaluator, k=k, inception_weights=inception_weights, seed=seed)
    metrics = {k_: v for k_, v in ev.metrics.items() if k_ not in ("copies", "copies_reference")}
    return metrics


def uniform_noise_intrinsic_dimension(
    image_shape: tuple[int, int, int], n: int = 1000, seed: int = 0, k: int = 20
) -> dict[str, float]:
    """Intrinsic dimension of uniform noise images: what "filling pixel space" looks like."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (n, *image_shape), generator=g, dtype=torch.uint8)
    x = unit_flat(noise)
    return {"id_mle": mle_intrinsic_dimension(x, k=k), "id_pca95": float(pca_dimension(x, variance=0.95))}


def summarize(values: list[float]) -> tuple[float, float]:
    """(mean, sample std) ignoring NaN; std is 0 for one value."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def evaluation_lines(
    metrics: dict[str, float], real: dict[str, float], intervals: dict[str, tuple[float, float]] | None = None
) -> list[str]:
    """The table ``genlab evaluate`` prints: every metric, its 95% bootstrap interval where
    there is one (``intervals``, from ``Evaluation.extras["ci"]``), and the same metric for
    real training images (the real-vs-real reference)."""
    intervals = intervals or {}
    lines = [f"{'metric':28s} {'model':>12s} {'95% interval':>23s} {'real data':>12s}"]
    for key, value in metrics.items():
        ref = real.get(key)
        interval = f"[{intervals[key][0]:.4g}, {intervals[key][1]:.4g}]" if key in intervals else ""
        lines.append(f"{key:28s} {value:12.4f} {interval:>23s} {'' if ref is None else f'{ref:12.4f}'}")
    if intervals:
        lines.append("(intervals: 95% bootstrap over the samples)")
    return lines
