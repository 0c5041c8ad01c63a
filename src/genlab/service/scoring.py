"""Judging a trained run: :func:`score_run` (likelihood) and :func:`evaluate_run` (sample quality)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import GenlabError
from .common import Echo, check_eval_samples, check_output_file, load_data, silent


@dataclass
class ScoreResult:
    """Log-likelihood of each scored image and its summary."""

    model: str
    #: "exact" or "bound" (a lower bound)
    likelihood: str
    data: str
    split: str
    #: log-likelihood of each image, nats, (N,)
    log_likelihood: np.ndarray
    bits_per_dim: float

    @property
    def n(self) -> int:
        return len(self.log_likelihood)

    @property
    def mean(self) -> float:
        return float(self.log_likelihood.mean())

    @property
    def standard_error(self) -> float:
        ll = self.log_likelihood
        return float(ll.std(ddof=1) / np.sqrt(len(ll))) if len(ll) > 1 else 0.0


def score_run(
    run_dir: str | Path, *, data_spec: str | None = None, split: str | None = None, size: int | None = None
) -> ScoreResult:
    """Log-likelihood (nats/image) and bits/dim of a run on ``split`` ("test", "train" or
    "all") of its own data (default "test"), or on all of ``data_spec``."""
    from ..models import GenerativeModel
    from ..runs import RunInfo

    info = RunInfo.load(run_dir)
    model = GenerativeModel.load(run_dir)
    same_data = data_spec is None or (data_spec == info.data and (size or info.size) == info.size)
    split = split or ("test" if same_data else "all")
    if same_data:
        train, test = info.load_split()
        data = {"test": test, "train": train}.get(split) or load_data(info.data, info.size)
    else:
        if split != "all":
            raise GenlabError(f"--split {split} needs the run's own data ({info.data}); other data is scored whole")
        data = load_data(data_spec, size if size is not None else (info.size or None))
    from ..likelihood import bits_per_dim
    from .fitting import score_images_in_chunks

    ll = score_images_in_chunks(model, data.images)
    return ScoreResult(
        model.name, model.likelihood, data_spec or info.data, split, ll, float(bits_per_dim(ll.mean(), model.n_dims_))
    )


@dataclass
class EvaluateResult:
    """The metrics of a run's samples beside the same metrics of real data."""

    model: str
    data: str
    n_samples: int
    n_test: int
    evaluator: str
    #: metric name -> value for the model's samples
    metrics: dict[str, float]
    #: metric name -> value for real training images (the reference)
    real_data: dict[str, float]
    #: what was merged into metrics.json under "evaluation"
    record: dict[str, Any]
    seconds: float
    #: metric name -> (low, high) 95% bootstrap interval over the samples (feature-space metrics)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


def evaluate_run(
    run_dir: str | Path,
    *,
    data_spec: str | None = None,
    n_samples: int = 1000,
    seed: int = 0,
    inception_weights: str | Path | None = None,
    json_out: str | Path | None = None,
    overwrite: bool = False,
    echo: Echo = silent,
    inspect: Callable[[Any, Any, Any], None] | None = None,
    tone_curve: bool = True,
) -> EvaluateResult:
    """Evaluate a run on held-out data (FD, precision/recall, density/coverage, memorisation,
    likelihood, class coverage, intrinsic dimension, sampling speed) with ``n_samples``
    samples, beside real data scored the same way; merges the record into the run's
    metrics.json under "evaluation" (and writes it to ``json_out`` when given).

    ``inspect(evaluation, train, test)``: called with the model's
    :class:`~genlab.metrics.evaluate.Evaluation` (its samples and memorisation result) and the
    split, for front ends that draw figures of them (the web app's memorisation strip).
    ``tone_curve=False``: neural models round their outputs instead of using their tone curve
    (:mod:`genlab.tone_curve`); the record's ``pixel_levels`` says which was used."""
    from ..io import write_json
    from ..metrics.evaluate import evaluate_model, real_data_metrics
    from ..metrics.evaluator import get_evaluators
    from ..models import GenerativeModel
    from ..runs import RunInfo, update_metrics

    check_output_file(json_out, "--json", overwrite=overwrite)
    info = RunInfo.load(run_dir)
    model = GenerativeModel.load(run_dir)
    if inception_weights is not None:
        from ..metrics.inception import check_inception_backend

        check_inception_backend(inception_weights)
    check_eval_samples(n_samples)
    if data_spec is None or data_spec == info.data:
        train, test = info.load_split()
    else:
        train, test = load_data(data_spec, info.size).split(info.test_fraction, info.split_seed)
    if tuple(test.image_shape) != tuple(model.image_shape_):
        raise GenlabError(
            f"--data {data_spec}: images of shape {test.image_shape}, but the model makes {tuple(model.image_shape_)}"
        )
    start = time.perf_counter()
    evaluators = get_evaluators(train, test, seed=seed, echo=echo)
    evaluator = evaluators[0]
    has_tone_curve = getattr(model, "tone_thresholds_", None) is not None
    options = {"tone_curve": False} if has_tone_curve and not tone_curve else {}
    evaluation = evaluate_model(
        model,
        train,
        test,
        evaluators,
        n_samples=n_samples,
        seed=seed,
        inception_weights=inception_weights,
        sample_options=options,
    )
    if inspect is not None:
        inspect(evaluation, train, test)
    real = real_data_metrics(
        train, test, evaluators, n_samples=n_samples, seed=seed, inception_weights=inception_weights
    )
    intervals = evaluation.extras.get("ci", {})
    record = {
        "n_samples": n_samples,
        "data": data_spec or info.data,
        "evaluator": evaluator.describe(),
        "evaluator_accuracy": evaluator.test_accuracy,
        "evaluators": {ev.space: {"describe": ev.describe(), "accuracy": ev.test_accuracy} for ev in evaluators},
        "metrics": evaluation.metrics,
        "intervals": intervals,
        "n": evaluation.extras.get("n", {}),
        "real_data": real,
        "pixel_levels": "tone curve" if has_tone_curve and tone_curve else "rounded",
    }
    update_metrics(run_dir, evaluation=record)
    if json_out is not None:
        write_json(json_out, record)
    return EvaluateResult(
        model.name,
        data_spec or info.data,
        n_samples,
        len(test),
        "; ".join(ev.describe() for ev in evaluators),
        evaluation.metrics,
        real,
        record,
        time.perf_counter() - start,
        intervals,
    )
