"""Training workflows: :func:`fit_run` (``genlab fit``) and :func:`cross_validate` (``genlab cv``)."""

from __future__ import annotations

import itertools
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import GenlabError
from ..runs import CHECKPOINTS, METRICS_FILE, RunInfo, now
from .common import Echo, check_output_file, load_data, silent

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
    overwrite: bool = False,
    score_images: int | None = None,
    echo: Echo = silent,
) -> FitResult:
    """Train ``model_name`` on the training split of ``data_spec`` and write a run folder.

    The run folder ``out_dir`` gets config.json + model.safetensors (the model), run.json
    (data and split), metrics.json (held-out log-likelihood in nats/image and bits/dim,
    timings) and samples.png (``n_samples`` images); neural models also checkpoint into
    ``out_dir/checkpoints`` so that ``resume=True`` continues an interrupted run.

    Nothing of the user's is destroyed: a non-empty ``out_dir`` must be a finished run of
    the same model without checkpoints (replaced), or ``resume`` (continue its checkpoints)
    or ``overwrite`` (replace it whole) must be given. The run is written into a hidden
    sibling folder and swapped into place in one rename, so a kill at any moment leaves the
    old run or the new one. run.json records the data with absolute paths and a fingerprint.
    ``params``: hyper-parameters; the keyword flags (``condition`` ... ``sample_every``)
    are neural-model hyper-parameters given separately, None = not given.
    ``score_images``: how many held-out images to score at the end (a fixed-seed random
    subset; recorded in metrics.json as ``n_scored``): None = all for classical models and
    :data:`DEFAULT_SCORE_IMAGES` for neural ones, 0 = skip the scoring.
    """
    from ..models import make_model
    from ..runs import absolute_spec, data_fingerprint, staging_path
    from ..training import is_main_process

    if score_images is not None and score_images < 0:
        raise GenlabError(f"--score-images {score_images}: must be >= 0 (0 skips the held-out scoring)")
    if resume and overwrite:
        raise GenlabError("--resume and --overwrite: choose one (continue the run's training, or replace the run)")
    out_dir = Path(out_dir).expanduser().absolute()
    check_out_dir(out_dir)
    kwargs = dict(params or {})
    flags = {
        "condition": condition,
        "preset": preset,
        "epochs": epochs,
        "max_steps": max_steps,
        "device": device,
        "precision": precision,
        "checkpoint_every": checkpoint_every,
        "sample_every": sample_every,
    }
    model = make_model(model_name, **kwargs)
    valid = model.get_params()
    for name, value in flags.items():
        if value is None:
            continue
        if name not in valid:
            raise GenlabError(
                f"--{name.replace('_', '-')}: {model_name} has no such setting (it is not a neural model, or does not support it)"
            )
        if name in kwargs:
            raise GenlabError(f"{name} given both as --{name.replace('_', '-')} and --param")
        kwargs[name] = value
    neural = "checkpoint_dir" in valid
    if resume and not neural:
        raise GenlabError(f"--resume: {model_name} is not trained in steps, so there is nothing to resume")
    train_dir, carry_over = plan_out_dir(out_dir, model_name, resume=resume, overwrite=overwrite)
    own_checkpoints = neural and kwargs.get("checkpoint_dir") is None
    if own_checkpoints:
        kwargs["checkpoint_dir"] = str(train_dir / CHECKPOINTS)
    elif neural:  # stored absolute, so the run finds its checkpoints from any working folder
        kwargs["checkpoint_dir"] = str(Path(kwargs["checkpoint_dir"]).expanduser().absolute())
    if "random_state" in valid and "random_state" not in kwargs:
        kwargs["random_state"] = seed
    model = make_model(model_name, **kwargs)
    text = bool(getattr(model, "text_conditional", False))
    if captions is not None and not text:
        raise GenlabError("--captions only applies with --condition text")
    if text:
        captions = captions or "auto"
        if captions != "auto":
            captions = str(Path(captions).expanduser().absolute())
    spec = absolute_spec(data_spec)
    _check_out_outside_data(out_dir, spec)
    data = load_data(spec, size, captions=captions if text else None)
    if model.conditional and data.labels is None:
        raise GenlabError(f"--condition label: {data_spec} has no labels")
    train, test = data.split(test_fraction, split_seed)

    main_process = is_main_process()
    if main_process:
        _prepare_train_dir(train_dir, out_dir, fresh=train_dir == staging_path(out_dir) and not resume)
        echo(
            f"fitting {model_name} on {len(train)} images of {data_spec} (shape {train.image_shape}); {len(test)} held out"
        )
    start = time.perf_counter()
    fit_kwargs = {"resume": True} if resume else {}
    # labels go to every model when the data has them: conditional models train on them, the
    # rest ignore them, except the GAN, whose health probe then measures class entropy
    targets = train.captions if text else train.labels
    try:
        model.fit(train.images, targets, **fit_kwargs)
    except BaseException:
        if main_process:
            _remove_if_empty(staging_path(out_dir))
        raise
    fit_seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {
        "model": model_name,
        "fit_seconds": round(fit_seconds, 3),
        "n_train": len(train),
        "n_test": len(test),
    }
    if not main_process:
        return FitResult(out_dir, model, metrics, fit_seconds, wrote=False, train=train, test=test)
    if own_checkpoints:  # where the checkpoints will be once the run is in place
        model.set_params(checkpoint_dir=str(out_dir / CHECKPOINTS))
    summary = getattr(model, "training_summary_", None)
    if summary:
        metrics["training"] = summary
    if model.likelihood != "none":
        limit = (DEFAULT_SCORE_IMAGES if neural else len(test)) if score_images is None else score_images
        metrics.update(score_held_out(model, test, limit, seed=split_seed, echo=echo))
    samples, prompts, ncols = _fit_samples(model, test, n_samples, seed, text)
    info = RunInfo(
        model=model_name,
        data=spec,
        size=size,
        captions=captions if text else None,
        test_fraction=test_fraction,
        split_seed=split_seed,
        seed=seed,
        created=now(),
        data_fingerprint=data_fingerprint(data),
    )
    files = write_run(
        out_dir,
        model,
        info,
        metrics,
        samples,
        ncols=ncols,
        prompts=prompts,
        keep_from=train_dir if own_checkpoints else None,
        carry_over=carry_over,
    )
    return FitResult(out_dir, model, metrics, fit_seconds, wrote=True, files=files, train=train, test=test)


def _fit_samples(model, test, n: int, seed: int, text: bool) -> tuple[torch.Tensor, list[str] | None, int | None]:
    """The images of samples.png: one row per class for class-conditional models, the
    held-out images' captions (sentences the model did not train on) for text models."""
    if text:
        prompts = [test.captions[i % len(test)] for i in range(n)]
        return model.sample(n, prompt=prompts, seed=seed), prompts, None
    labels = (
        (torch.arange(n) % int(model.n_classes_)) if model.conditional and getattr(model, "n_classes_", None) else None
    )
    ncols = int(model.n_classes_) if labels is not None and model.n_classes_ <= 16 else None
    return model.sample(n, y=labels, seed=seed), None, ncols


def write_run(
    out_dir: Path,
    model,
    info,
    metrics: dict[str, Any],
    samples: torch.Tensor,
    *,
    ncols: int | None = None,
    prompts: list[str] | None = None,
    keep_from: Path | None = None,
    carry_over: bool = False,
) -> list[str]:
    """Publish a run folder whole (see :func:`genlab.runs.publish_run`): the model, run.json,
    metrics.json, samples.png (and samples-prompts.txt); returns the names written."""
    from ..images import save_grid
    from ..io import atomic_write_text, write_json
    from ..runs import publish_run

    def write(folder: Path) -> None:
        model.save(folder)
        info.save(folder)
        write_json(folder / METRICS_FILE, metrics)
        save_grid(samples, folder / "samples.png", ncols=ncols)
        if prompts is not None:
            atomic_write_text(folder / "samples-prompts.txt", "\n".join(prompts) + "\n")

    publish_run(out_dir, write, keep_from=keep_from, carry_over=carry_over)
    names = ["config.json", "model.safetensors", "run.json", "metrics.json", "samples.png"] + (
        ["samples-prompts.txt"] if prompts else []
    )
    return names + ([f"{CHECKPOINTS}/"] if (out_dir / CHECKPOINTS).is_dir() else [])


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output folder that cannot be one: an existing file, or a path under a file."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GenlabError(f"--out {out_dir}: is a file, not a folder")
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise GenlabError(f"--out {out_dir}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK) and not out_dir.exists():
                raise GenlabError(f"--out {out_dir}: cannot create it ({parent} is not writable)")
            break


def plan_out_dir(out_dir: Path, model_name: str, *, resume: bool, overwrite: bool) -> tuple[Path, bool]:
    """Where to train (the folder whose checkpoints/ the trainer uses) and whether the user's
    other files in ``out_dir`` are kept. Refuses to touch a folder that is not ours to replace:
    a non-empty ``out_dir`` must be a finished run of the same model without checkpoints,
    or ``resume``/``overwrite`` must say what to do with it."""
    from ..runs import is_run_folder, staging_path

    staging = staging_path(out_dir)
    if overwrite:
        return staging, False  # trained beside the old run, which stays whole until the new one replaces it
    if resume:
        if _has_checkpoints(staging):  # an interrupted --overwrite
            return staging, False
        if not _has_checkpoints(out_dir):
            raise GenlabError(f"--resume: {out_dir} holds no checkpoints to continue from; start without --resume")
        found = _run_model(out_dir)
        if found not in (None, model_name):
            raise GenlabError(f"--resume: {out_dir} holds a {found} run, not {model_name}")
        return out_dir, True
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return out_dir, False
    found = _run_model(out_dir)
    checkpoints = _has_checkpoints(out_dir)
    if found == model_name and not checkpoints and is_run_folder(out_dir):
        return staging, True  # the same command again: the finished run is replaced whole
    if found is not None:
        what = f"holds a finished {found} run" + (" with checkpoints" if checkpoints else "")
    else:
        what = "holds the checkpoints of an unfinished run" if checkpoints else "is not empty and not a genlab run"
    offer = (
        "--resume to continue its training or --overwrite to replace it" if checkpoints else "--overwrite to replace it"
    )
    raise GenlabError(f"--out {out_dir}: {what}; pass {offer}, or choose another folder")


def _run_model(folder: Path) -> str | None:
    """The model named by ``folder/run.json`` (None when there is none or it is unreadable)."""
    try:
        return str(RunInfo.load(folder).model)
    except GenlabError:
        return None


def _has_checkpoints(folder: Path) -> bool:
    ckpt = Path(folder) / CHECKPOINTS
    return ckpt.is_dir() and any(ckpt.iterdir())


def _check_out_outside_data(out_dir: Path, spec: str) -> None:
    """A run inside a folder: dataset would become part of it on the next load."""
    kind, _, root = spec.partition(":")
    if kind == "folder" and root:
        root_path = Path(root).resolve()
        if out_dir.resolve() == root_path or root_path in out_dir.resolve().parents:
            raise GenlabError(f"--out {out_dir}: inside the data folder {root_path}; write the run elsewhere")


def _prepare_train_dir(train_dir: Path, out_dir: Path, *, fresh: bool) -> None:
    """Make the staging folder (the write test: an unwritable --out fails here, before any
    training); a fresh run starts from an empty one."""
    from ..runs import staging_path

    staging = staging_path(out_dir)
    if fresh:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True, exist_ok=True)
        probe = staging / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        if train_dir == out_dir and out_dir.exists() and not os.access(out_dir, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied", str(out_dir))
    except OSError as exc:
        raise GenlabError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def score_held_out(model, test, limit: int, *, seed: int = 0, echo: Echo = silent) -> dict[str, Any]:
    """Mean held-out log-likelihood (nats/image) and bits/dim of at most ``limit`` images of
    ``test`` (a fixed-seed random subset when there are more). Returns the metrics.json
    entries: the figures, ``n_scored`` and the bound ``score_images`` (``limit``); ``limit`` 0
    records that the scoring was skipped."""
    from ..likelihood import bits_per_dim

    n = min(int(limit), len(test))
    if n == 0:
        return {"n_scored": 0, "score_images": int(limit), "likelihood": model.likelihood}
    images = test.images
    if n < len(test):
        images = images[np.sort(np.random.default_rng(seed).choice(len(test), n, replace=False))]
        echo(f"scoring {n} of the {len(test)} held-out images (--score-images N: how many, 0: skip)")
    mean = float(score_images_in_chunks(model, images).mean())
    return {
        "test_log_likelihood_nats": mean,
        "test_bits_per_dim": float(bits_per_dim(mean, model.n_dims_)),
        "likelihood": model.likelihood,
        "n_scored": n,
        "score_images": int(limit),
    }


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
        return {
            "model": self.model,
            "data": self.data,
            "folds": self.folds,
            "base_params": self.base_params,
            "results": self.results,
            "best": self.best,
        }


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
    overwrite: bool = False,
    echo: Echo = silent,
) -> CVResult:
    """k-fold cross-validation of held-out log-likelihood (nats/image) on the training split,
    for every point of the product ``grid`` (name -> values) on top of ``params``.

    ``echo`` gets one line per grid point as it finishes; ``json_out``: also write the
    results there as JSON.
    """
    from ..likelihood import bits_per_dim
    from ..models import make_model

    check_output_file(json_out, "--json", overwrite=overwrite)
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
        results.append(
            {
                "params": point,
                "fold_scores": scores,
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores, ddof=1)),
                "bits_per_dim": float(np.mean(bpd)),
            }
        )
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
