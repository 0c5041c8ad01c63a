"""The ``genlab`` command line: thin over the library.

Every command parses its options, calls the library and prints. Bad input raises
:class:`GenlabError`; :func:`main` turns it (and click's usage errors) into one line on
stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import ast
import itertools
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from .errors import GenlabError

DEFAULT_DATA = "digits"


# ---------------------------------------------------------------------- helpers
def parse_value(text: str) -> Any:
    """'3' -> 3, '1e-3' -> 0.001, 'true' -> True, 'none' -> None, '[1,2]' -> [1, 2], else the string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return text


def parse_params(pairs: tuple[str, ...], option: str = "--param") -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise GenlabError(f"{option} {pair!r}: expected NAME=VALUE")
        params[key.strip()] = parse_value(value)
    return params


def parse_grid(pairs: tuple[str, ...]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise GenlabError(f"--grid {pair!r}: expected NAME=V1,V2,...")
        grid[key.strip()] = [parse_value(v) for v in _split_top_level(values)]
    return grid


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets ('[1,2],[3]' -> two values)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def echo(text: str = "") -> None:
    click.echo(text)


def fmt_pm(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def _load_data(spec: str, size: int | None):
    from .data import load_dataset

    return load_dataset(spec, size=size)


def _set_quiet(quiet: bool) -> None:
    from .progress import set_quiet

    set_quiet(quiet)


data_option = click.option("--data", "data_spec", default=DEFAULT_DATA, show_default=True, metavar="SPEC", help="Dataset: digits, mnist, fashion-mnist, npz:PATH or folder:PATH.")
size_option = click.option("--size", type=click.IntRange(min=1), default=None, help="Resize images to SIZE x SIZE (needed for folders of mixed sizes).")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
param_option = click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="Model hyper-parameter (repeatable), e.g. -p n_components=50.")


# ---------------------------------------------------------------------- commands
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="genlab")
def cli() -> None:
    """genlab: learn the distribution of an image dataset, generate new images, and evaluate generators honestly.

    Start with 'genlab demo', then 'genlab fit gmm --data digits --out runs/gmm'.
    """


@cli.command()
def models() -> None:
    """List the available models."""
    from .models import get_model_class, list_models

    for name, doc in list_models().items():
        kind = get_model_class(name).likelihood
        echo(f"{name:10s} [likelihood: {kind:5s}] {doc}")


@cli.command()
def datasets() -> None:
    """List the dataset specs genlab can load."""
    from .data import cache_dir, list_datasets

    for spec, doc in list_datasets().items():
        echo(f"{spec:14s} {doc}")
    echo(f"\ndownload cache: {cache_dir()}  (set GENLAB_DATA to move it)")


@cli.command()
@click.argument("model_name", metavar="MODEL")
@data_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory to write.")
@param_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the model's randomness.")
@click.option("--test-fraction", type=float, default=0.2, show_default=True, help="Held-out share of the data.")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the train/test split.")
@size_option
@click.option("-n", "n_samples", type=click.IntRange(min=1), default=64, show_default=True, help="Images in samples.png.")
@click.option("--condition", type=click.Choice(["none", "label", "text"]), default=None, help="Conditioning (models that support it): class labels or captions.")
@click.option("--captions", default=None, metavar="auto|FILE", help="--condition text: 'auto' (default; genlab describes each digit: identity, thickness, slant, size) or a CSV/JSONL caption file for folder:PATH data.")
@click.option("--preset", type=click.Choice(["auto", "quick", "full"]), default=None, help="Neural models: size of network and training (auto = full on a GPU, quick on a CPU).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Neural models: training epochs (default: the preset's).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Neural models: optimiser steps (default: the preset's).")
@click.option("--device", default=None, help="Neural models: auto, cpu, cuda, cuda:1, mps.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=None, help="Neural models: bf16 autocast (auto = on CUDA).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None, help="Neural models: also checkpoint every N steps (always at each epoch end).")
@click.option("--sample-every", type=click.IntRange(min=1), default=None, help="Neural models: write a sample grid every N epochs into RUN_DIR/checkpoints/samples.")
@click.option("--resume", is_flag=True, help="Neural models: continue from the last checkpoint in RUN_DIR/checkpoints (same command otherwise).")
@quiet_option
def fit(model_name, data_spec, out_dir, params, seed, test_fraction, split_seed, size, n_samples, condition, captions, preset, epochs, max_steps, device, precision, checkpoint_every, sample_every, resume, quiet) -> None:
    """Train MODEL on the training split of --data and write a run directory.

    The run directory gets config.json + model.safetensors (the model), run.json (data and
    split), metrics.json (held-out log-likelihood, bits/dim, timings) and samples.png; neural
    models also checkpoint into RUN_DIR/checkpoints (metrics.csv, crash-safe checkpoints),
    so an interrupted run continues with --resume. Under torchrun every process trains and
    rank 0 writes.
    """
    from .images import save_grid
    from .models import make_model
    from .runs import RunInfo, now, update_metrics

    _set_quiet(quiet)
    kwargs = parse_params(params)
    flags = {"condition": condition, "preset": preset, "epochs": epochs, "max_steps": max_steps, "device": device, "precision": precision, "checkpoint_every": checkpoint_every, "sample_every": sample_every}
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
    if text:
        from .data import load_dataset

        data = load_dataset(data_spec, size=size, captions=captions or "auto")
    else:
        data = _load_data(data_spec, size)
    if model.conditional and data.labels is None:
        raise GenlabError(f"--condition label: {data_spec} has no labels")
    train, test = data.split(test_fraction, split_seed)
    from .training import is_main_process

    main_process = is_main_process()
    if main_process:
        echo(f"fitting {model_name} on {len(train)} images of {data_spec} (shape {train.image_shape}); {len(test)} held out")
    start = time.perf_counter()
    fit_kwargs = {"resume": True} if resume else {}
    targets = train.captions if text else (train.labels if model.conditional else None)
    model.fit(train.images, targets, **fit_kwargs)
    fit_seconds = time.perf_counter() - start
    if not main_process:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir)
    RunInfo(model=model_name, data=data_spec, size=size, captions=(captions or "auto") if text else None, test_fraction=test_fraction, split_seed=split_seed, seed=seed, created=now()).save(out_dir)
    metrics: dict[str, Any] = {"model": model_name, "fit_seconds": round(fit_seconds, 3), "n_train": len(train), "n_test": len(test)}
    summary = getattr(model, "training_summary_", None)
    if summary:
        metrics["training"] = summary
    if model.likelihood != "none":
        ll = model.score_samples(test.images)
        metrics.update(test_log_likelihood_nats=float(ll.mean()), test_bits_per_dim=model.bits_per_dim(test.images), likelihood=model.likelihood)
    update_metrics(out_dir, **metrics)
    labels = (torch.arange(n_samples) % int(model.n_classes_)) if model.conditional and getattr(model, "n_classes_", None) else None
    if text:  # samples for the held-out images' captions (sentences the model did not train on)
        prompts = [test.captions[i % len(test)] for i in range(n_samples)]
        save_grid(model.sample(n_samples, prompt=prompts, seed=seed), out_dir / "samples.png")
        (out_dir / "samples-prompts.txt").write_text("\n".join(prompts) + "\n")
    else:
        save_grid(model.sample(n_samples, y=labels, seed=seed), out_dir / "samples.png", ncols=int(model.n_classes_) if labels is not None and model.n_classes_ <= 16 else None)
    echo(f"fit in {fit_seconds:.1f} s")
    if "test_bits_per_dim" in metrics:
        echo(f"held-out log-likelihood: {metrics['test_log_likelihood_nats']:.2f} nats/image ({model.likelihood}), {metrics['test_bits_per_dim']:.4f} bits/dim")
    echo(f"wrote {out_dir}/ (config.json, model.safetensors, run.json, metrics.json, samples.png{', checkpoints/' if neural else ''})")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-n", "n_samples", type=click.IntRange(min=1), default=64, show_default=True, help="How many images.")
@click.option("-o", "--out", "out_png", type=click.Path(dir_okay=False, path_type=Path), default=None, help="PNG grid to write (default RUN_DIR/samples.png).")
@click.option("--npy", "out_npy", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the uint8 images (n, C, H, W) as .npy.")
@click.option("--seed", type=int, default=None, help="Seed for reproducible samples.")
@click.option("--label", type=int, default=None, help="Class label (class-conditional models).")
@click.option("--prompt", default=None, help="Text description (text-conditional models).")
@click.option("--guidance", type=float, default=None, help="Classifier-free guidance scale (diffusion).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Sampling steps (diffusion).")
@click.option("--sampler", default=None, help="Sampler: ddpm, ddim, dpm++ (diffusion); prior or gmm (autoencoders).")
@click.option("--ncols", type=click.IntRange(min=1), default=None, help="Columns in the grid.")
def sample(run_dir, n_samples, out_png, out_npy, seed, label, prompt, guidance, steps, sampler, ncols) -> None:
    """Draw images from a trained run and write them as a PNG grid (and .npy)."""
    from .images import save_grid
    from .io import atomic_write
    from .models import GenerativeModel

    model = GenerativeModel.load(run_dir)
    # the model validates its own options (unknown ones are named with the valid ones)
    options = {k: v for k, v in {"prompt": prompt, "guidance": guidance, "steps": steps, "sampler": sampler}.items() if v is not None}
    start = time.perf_counter()
    images = model.sample(n_samples, y=label, seed=seed, **options)
    elapsed = time.perf_counter() - start
    out_png = out_png or Path(run_dir) / "samples.png"
    save_grid(images, out_png, ncols=ncols)
    echo(f"{n_samples} samples in {elapsed:.2f} s ({n_samples / max(elapsed, 1e-9):.0f} images/s) -> {out_png}")
    if out_npy is not None:
        def write_npy(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a path
                np.save(f, images.numpy())

        atomic_write(out_npy, write_npy)
        echo(f"-> {out_npy}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_spec", default=None, metavar="SPEC", help="Dataset to score (default: the run's own data).")
@click.option("--split", type=click.Choice(["test", "train", "all"]), default=None, help="Which part; default 'test' for the run's own data, 'all' for other data.")
@size_option
def score(run_dir, data_spec, split, size) -> None:
    """Held-out log-likelihood (nats/image) and bits/dim of a trained run."""
    from .models import GenerativeModel
    from .runs import RunInfo

    info = RunInfo.load(run_dir)
    model = GenerativeModel.load(run_dir)
    same_data = data_spec is None or (data_spec == info.data and (size or info.size) == info.size)
    split = split or ("test" if same_data else "all")
    if same_data:
        train, test = info.load_split()
        data = {"test": test, "train": train}.get(split) or _load_data(info.data, info.size)
    else:
        if split != "all":
            raise GenlabError(f"--split {split} needs the run's own data ({info.data}); other data is scored whole")
        data = _load_data(data_spec, size if size is not None else (info.size or None))
    ll = model.score_samples(data.images)
    bpd = model.bits_per_dim(data.images)
    echo(f"{model.name} on {data_spec or info.data} [{split}]: {len(data)} images")
    echo(f"log-likelihood: {ll.mean():.3f} ± {ll.std(ddof=1) / np.sqrt(len(ll)) if len(ll) > 1 else 0:.3f} nats/image ({model.likelihood})")
    echo(f"bits/dim:       {bpd:.4f}")


@cli.command()
@click.argument("model_name", metavar="MODEL")
@data_option
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Number of folds k.")
@param_option
@click.option("--grid", "grid", multiple=True, metavar="NAME=V1,V2,...", help="Hyper-parameter values to compare (repeatable: a product grid).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fold assignment and the model.")
@click.option("--test-fraction", type=float, default=0.2, show_default=True, help="Test split kept out of the cross-validation.")
@size_option
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write all results as JSON.")
@quiet_option
def cv(model_name, data_spec, folds, params, grid, seed, test_fraction, size, json_out, quiet) -> None:
    """k-fold cross-validation of held-out log-likelihood (on the training split).

    Prints each fold's held-out log-likelihood and mean ± std for every grid point, and
    the best grid point.
    """
    from .io import write_json
    from .likelihood import bits_per_dim
    from .models import make_model

    _set_quiet(quiet)
    base = parse_params(params)
    grid_values = parse_grid(grid)
    overlap = sorted(set(base) & set(grid_values))
    if overlap:
        raise GenlabError(f"{', '.join(overlap)} given both as --param and --grid")
    make_model(model_name, **base, **{k: v[0] for k, v in grid_values.items()})  # validates names early
    train, _ = _load_data(data_spec, size).split(test_fraction, seed)
    fold_pairs = train.kfold(folds, seed)
    points = [dict(zip(grid_values, combo)) for combo in itertools.product(*grid_values.values())] or [{}]
    n_dims = train.n_dims
    echo(f"{folds}-fold cross-validation of {model_name} on {len(train)} training images of {data_spec}")
    results = []
    for point in points:
        scores = []
        for i, (fold_train, fold_test) in enumerate(fold_pairs):
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
    if len(points) > 1:
        echo(f"best: {', '.join(f'{k}={v!r}' for k, v in best['params'].items())} ({best['mean']:.3f} nats/image, {best['bits_per_dim']:.4f} bits/dim)")
    if json_out is not None:
        write_json(json_out, {"model": model_name, "data": data_spec, "folds": folds, "base_params": base, "results": results, "best": best})
        echo(f"-> {json_out}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_spec", default=None, metavar="SPEC", help="Dataset to evaluate against (default: the run's own data; split like the run).")
@click.option("-n", "n_samples", type=click.IntRange(min=10), default=1000, show_default=True, help="Samples to draw.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the metrics to this JSON file.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--inception-weights", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH", help="Also compute the standard FID (fid_inception) with this FID Inception-v3 weights file (weights-inception-2015-12-05-6726825d.pth); needs genlab[fid], never downloads.")
@quiet_option
def evaluate(run_dir, data_spec, n_samples, json_out, seed, inception_weights, quiet) -> None:
    """Evaluate a trained run on held-out data: FD, precision/recall, density/coverage,
    memorisation, likelihood, class coverage, intrinsic dimension and sampling speed.

    Prints a table (with real data scored the same way, as the reference) and writes
    the metrics into RUN_DIR/metrics.json.
    """
    from .data import load_dataset
    from .io import write_json
    from .metrics.evaluate import evaluate_model, real_data_metrics
    from .metrics.evaluator import get_evaluator
    from .models import GenerativeModel
    from .runs import RunInfo, update_metrics

    _set_quiet(quiet)
    info = RunInfo.load(run_dir)
    model = GenerativeModel.load(run_dir)
    if inception_weights is not None:
        from .metrics.inception import check_inception_backend

        check_inception_backend(inception_weights)
    if data_spec is None or data_spec == info.data:
        train, test = info.load_split()
    else:
        train, test = load_dataset(data_spec, size=info.size).split(info.test_fraction, info.split_seed)
    if tuple(test.image_shape) != tuple(model.image_shape_):
        raise GenlabError(f"--data {data_spec}: images of shape {test.image_shape}, but the model makes {tuple(model.image_shape_)}")
    start = time.perf_counter()
    evaluator = get_evaluator(train, test, seed=seed, echo=echo)
    evaluation = evaluate_model(model, train, test, evaluator, n_samples=n_samples, seed=seed, inception_weights=inception_weights)
    real = real_data_metrics(train, test, evaluator, n_samples=n_samples, seed=seed, inception_weights=inception_weights)
    echo(f"{model.name} on {data_spec or info.data}: {n_samples} samples vs {len(test)} held-out images; {evaluator.describe()}")
    echo(f"{'metric':28s} {'model':>12s} {'real data':>12s}")
    for key, value in evaluation.metrics.items():
        ref = real.get(key)
        echo(f"{key:28s} {value:12.4f} {'' if ref is None else f'{ref:12.4f}'}")
    echo(f"(evaluated in {time.perf_counter() - start:.1f} s)")
    record = {"n_samples": n_samples, "data": data_spec or info.data, "evaluator": evaluator.describe(), "evaluator_accuracy": evaluator.test_accuracy, "metrics": evaluation.metrics, "real_data": real}
    update_metrics(run_dir, evaluation=record)
    if json_out is not None:
        write_json(json_out, record)
    echo(f"-> {Path(run_dir) / 'metrics.json'}" + (f", {json_out}" if json_out else ""))


@cli.command()
@click.option("--models", "models_csv", required=True, metavar="M1,M2,...", help="Models to compare, e.g. uniform,gaussian,gmm,kde; LABEL:MODEL adds a variant, e.g. narrow:kde with -p narrow.bandwidth=0.02.")
@data_option
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder (rerunning resumes).")
@click.option("--param", "-p", "params", multiple=True, metavar="MODEL.NAME=VALUE", help="Per-model hyper-parameter, e.g. -p gmm.n_components=50.")
@click.option("-n", "n_samples", type=click.IntRange(min=10), default=1000, show_default=True, help="Samples per model and fold.")
@click.option("--seed", type=int, default=0, show_default=True)
@size_option
@click.option("--evaluator-epochs", type=click.IntRange(min=1), default=None, help="Epochs for the evaluator classifier (default: about 2,000 steps).")
@click.option("--inception-weights", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH", help="Also compute the standard FID (fid_inception) with this FID Inception-v3 weights file (weights-inception-2015-12-05-6726825d.pth); needs genlab[fid], never downloads.")
@quiet_option
def compare(models_csv, data_spec, folds, out_dir, params, n_samples, seed, size, evaluator_epochs, inception_weights, quiet) -> None:
    """k-fold comparison of models: a markdown table (mean ± std over folds, with the
    real-vs-real spread) and a self-contained HTML report. Rerunning skips finished cells."""
    from .compare import CompareConfig, parse_model_entries, parse_model_params, run_compare

    _set_quiet(quiet)
    entries = parse_model_entries(models_csv)
    labels = list(entries)
    config = CompareConfig(
        models=labels, data=data_spec, folds=folds, n_samples=n_samples, seed=seed, size=size,
        params=parse_model_params(params, labels, parse_value), evaluator_epochs=evaluator_epochs, model_names=entries,
        inception_weights=None if inception_weights is None else str(inception_weights),
    )
    run_compare(config, out_dir, echo=echo)


@cli.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True, help="Where to write the picture and metrics.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", "demo_model", type=click.Choice(["text", "gmm"]), default="text", show_default=True,
              help="text: text-to-image diffusion, genlab's best model on digits (about 4-5 minutes on 2 CPU cores); gmm: the classical model chosen by 5-fold CV (seconds).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="text: shorten the training (default: the quick preset's 3,000 steps).")
@quiet_option
def demo(out_dir, seed, demo_model, max_steps, quiet) -> None:
    """The main job: on the bundled digits, train genlab's best model and show it beside real data and uniform noise."""
    from .demo import run_demo

    _set_quiet(quiet)
    if max_steps is not None and demo_model != "text":
        raise GenlabError("--max-steps applies to --model text")
    run_demo(out_dir, seed=seed, echo=echo, model=demo_model, max_steps=max_steps)


def _images_for_manipulation(run_dir: Path, data_spec: str | None, *, needs: tuple[str, ...] = ("encode", "decode"), what: str = "an autoencoder run (vae, wae)"):
    """(model, dataset) for the manipulation commands: ``--data`` or the run's data. The model
    must have the methods ``needs``."""
    from .models import GenerativeModel
    from .runs import RunInfo

    model = GenerativeModel.load(run_dir)
    if not all(hasattr(model, m) for m in needs):
        raise GenlabError(f"{model.name} cannot do this ({'/'.join(needs)}); this command needs {what}")
    if data_spec is None:
        info = RunInfo.load(run_dir)
        data = _load_data(info.data, info.size)
        data_spec = info.data
    else:
        data = _load_data(data_spec, None)
    if tuple(data.image_shape) != tuple(model.image_shape_):
        raise GenlabError(f"--data {data_spec}: images of shape {data.image_shape}, but the model works on {tuple(model.image_shape_)}")
    return model, data


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_spec", default=None, metavar="SPEC", help="Where the two images come from (default: the run's data).")
@click.option("--from-index", type=int, default=None, help="Index of the first image in --data.")
@click.option("--to-index", type=int, default=None, help="Index of the second image in --data.")
@click.option("--from-label", type=int, default=None, help="Use the first image with this label instead of an index.")
@click.option("--to-label", type=int, default=None, help="Use the first image with this label instead of an index.")
@click.option("--steps", type=click.IntRange(min=2), default=10, show_default=True, help="Images in the strip, ends included.")
@click.option("--mode", type=click.Choice(["linear", "slerp"]), default="linear", show_default=True, help="Autoencoders: straight line or great circle between the two codes (diffusion always uses slerp between inverted noises).")
@click.option("--inversion-steps", type=click.IntRange(min=1), default=50, show_default=True, help="Diffusion: DDIM steps of the inversion and of the decoding.")
@click.option("--prompt", default=None, help="Diffusion, text-conditional: condition the whole path on this text.")
@click.option("-o", "--out", "out_png", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG strip to write.")
def interpolate(run_dir, data_spec, from_index, to_index, from_label, to_label, steps, mode, inversion_steps, prompt, out_png) -> None:
    """Walk from one real image to another through a model's latent space.

    Autoencoders (vae, wae) interpolate the two images' codes; diffusion models DDIM-invert
    both images to noise and decode the spherical interpolation of the noises. Writes a strip:
    the first image, the interpolation (its ends are the model's reconstructions), the second.
    """
    from .images import save_grid
    from .manipulate import interpolate as interpolate_images
    from .manipulate import pick_image

    if (from_index is None) == (from_label is None) or (to_index is None) == (to_label is None):
        raise GenlabError("give --from-index or --from-label, and --to-index or --to-label")
    model, data = _images_for_manipulation(run_dir, data_spec, needs=())
    if not (hasattr(model, "invert") or hasattr(model, "encode")):
        raise GenlabError(f"{model.name} has no latent space to walk through; interpolate needs an autoencoder (vae, wae) or diffusion run")
    a, label_a = pick_image(data, index=from_index, label=from_label)
    b, label_b = pick_image(data, index=to_index, label=to_label)
    conditional = bool(model.conditional)
    if hasattr(model, "invert"):  # diffusion: through DDIM inversion
        if conditional and label_a != label_b:
            raise GenlabError("a class-conditional diffusion model interpolates within one class: pick two images with the same label")
        strip = model.interpolate(a, b, steps, y=label_a if conditional else None, prompt=prompt, steps=inversion_steps)
        how = f"DDIM inversion ({inversion_steps} steps) + slerp"
    else:
        if prompt is not None:
            raise GenlabError("--prompt applies to text-conditional diffusion models")
        strip = interpolate_images(model, a, b, steps, mode, y_a=label_a if conditional else None, y_b=label_b if conditional else None)
        how = mode
    save_grid(torch.cat([a, strip, b]), out_png, ncols=steps + 2)
    echo(f"{steps}-image {how} interpolation -> {out_png} (first and last: the real images)")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_spec", default=None, metavar="SPEC", help="Images to reconstruct (default: the run's held-out test images).")
@click.option("-n", "n_images", type=click.IntRange(min=1), default=32, show_default=True, help="How many images.")
@click.option("-o", "--out", "out_png", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG grid to write: rows of originals above rows of reconstructions.")
def reconstruct(run_dir, data_spec, n_images, out_png) -> None:
    """Encode and decode real images with an autoencoder run: originals above reconstructions."""
    from .images import save_grid
    from .runs import RunInfo

    model, data = _images_for_manipulation(run_dir, data_spec)
    if data_spec is None:
        _, data = RunInfo.load(run_dir).load_split()  # held-out images: reconstructions the model did not train on
    n = min(n_images, len(data))
    ncols = min(n, 16)
    n -= n % ncols  # whole rows, so each row of originals sits above its reconstructions
    images = data.images[:n]
    labels = data.labels[:n] if model.conditional else None
    if model.conditional and labels is None:
        raise GenlabError(f"{model.name} is class-conditional and the data has no labels")
    recon = model.reconstruct(images, y=labels)
    rows = []
    for start in range(0, n, ncols):
        rows += [images[start : start + ncols], recon[start : start + ncols]]
    save_grid(torch.cat(rows), out_png, ncols=ncols)
    err = (images.float() - recon.float()).abs().mean() / 255
    echo(f"{n} images and their reconstructions -> {out_png} (mean absolute error {err:.4f} of full scale)")


def _edit_inputs(data, indices: tuple[int, ...], n_images: int):
    """Images picked by --index (repeatable), else the first n of the data."""
    from .manipulate import pick_image

    if indices:
        return torch.cat([pick_image(data, index=i)[0] for i in indices])
    return data.images[: min(n_images, len(data))]


editing_options = [
    click.argument("run_dir", type=click.Path(path_type=Path)),
    click.option("--data", "data_spec", default=None, metavar="SPEC", help="Where the images come from (default: the run's held-out test images)."),
    click.option("--index", "indices", type=int, multiple=True, help="Image index in --data (repeatable; default: the first -n images)."),
    click.option("-n", "n_images", type=click.IntRange(min=1), default=8, show_default=True, help="How many images when no --index is given."),
    click.option("--label", type=int, default=None, help="Class-conditional models: steer towards this class."),
    click.option("--prompt", default=None, help="Text-conditional models: steer towards this text."),
    click.option("--guidance", type=click.FloatRange(min=0), default=None, help="Classifier-free guidance scale (default: the model's)."),
    click.option("--steps", type=click.IntRange(min=1), default=None, help="Sampler steps (default: the model's)."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("-o", "--out", "out_png", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG grid to write."),
]


def with_editing_options(fn):
    for option in reversed(editing_options):
        fn = option(fn)
    return fn


def _diffusion_and_images(run_dir, data_spec, indices, n_images, method):
    from .runs import RunInfo

    model, data = _images_for_manipulation(run_dir, data_spec, needs=(method,), what="a diffusion run")
    if data_spec is None and not indices:
        _, data = RunInfo.load(run_dir).load_split()  # held-out images: the model never saw them
    return model, _edit_inputs(data, indices, n_images)


@cli.command()
@with_editing_options
@click.option("--strength", "strengths", default="0.3,0.5,0.7,0.9", show_default=True, help="Comma-separated noise levels in (0, 1]: 0 keeps the image, 1 is a fresh sample.")
def edit(run_dir, data_spec, indices, n_images, label, prompt, guidance, steps, seed, out_png, strengths) -> None:
    """Image-to-image (SDEdit) with a diffusion run: one row per image, the original then one
    edit per --strength, optionally steered by --label or --prompt."""
    from .images import save_grid

    try:
        levels = [float(v) for v in strengths.split(",") if v.strip()]
    except ValueError:
        raise GenlabError(f"--strength {strengths!r}: expected comma-separated numbers such as 0.3,0.6") from None
    if not levels:
        raise GenlabError("--strength: give at least one level")
    model, images = _diffusion_and_images(run_dir, data_spec, indices, n_images, "edit")
    target = label if label is not None else None
    columns = [images] + [model.edit(images, s, y=target, prompt=prompt, guidance=guidance, steps=steps, seed=seed) for s in levels]
    grid = torch.stack(columns, dim=1).reshape(-1, *images.shape[1:])
    save_grid(grid, out_png, ncols=len(columns))
    echo(f"{len(images)} images edited at strengths {', '.join(f'{s:g}' for s in levels)} -> {out_png} (first column: the originals)")


REGIONS = ("left", "right", "top", "bottom", "center")


def _region_mask(region: str, h: int, w: int) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    if region == "left":
        mask[:, : w // 2] = True
    elif region == "right":
        mask[:, w // 2 :] = True
    elif region == "top":
        mask[: h // 2] = True
    elif region == "bottom":
        mask[h // 2 :] = True
    else:
        mask[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    return mask


@cli.command()
@with_editing_options
@click.option("--region", type=click.Choice(REGIONS), default="right", show_default=True, help="Part of each image to regenerate.")
@click.option("--mask-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="A grayscale PNG of the image size instead of --region: white = regenerate.")
@click.option("--variants", type=click.IntRange(min=1), default=4, show_default=True, help="Completions per image.")
def inpaint(run_dir, data_spec, indices, n_images, label, prompt, guidance, steps, seed, out_png, region, mask_file, variants) -> None:
    """Regenerate part of real images with a diffusion run: one row per image, the original,
    the image with the region blanked, then --variants completions."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from .images import save_grid

    model, images = _diffusion_and_images(run_dir, data_spec, indices, n_images, "inpaint")
    _, h, w = images.shape[1:]
    if mask_file is not None:
        try:
            arr = np.asarray(Image.open(mask_file).convert("L"))
        except (OSError, UnidentifiedImageError) as exc:
            raise GenlabError(f"--mask-file {mask_file}: cannot read it as an image ({exc})") from None
        if arr.shape != (h, w):
            raise GenlabError(f"--mask-file {mask_file}: {arr.shape[1]}x{arr.shape[0]} pixels, the images are {w}x{h}")
        mask = torch.from_numpy(arr >= 128)
    else:
        mask = _region_mask(region, h, w)
    blanked = images.clone()
    blanked[:, :, mask] = 128
    columns = [images, blanked] + [model.inpaint(images, mask, y=label, prompt=prompt, guidance=guidance, steps=steps, seed=seed + v) for v in range(variants)]
    grid = torch.stack(columns, dim=1).reshape(-1, *images.shape[1:])
    save_grid(grid, out_png, ncols=len(columns))
    echo(f"{len(images)} images, {int(mask.sum())} of {h * w} pixels regenerated, {variants} variants each -> {out_png}")


# ---------------------------------------------------------------------- entry point
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2

def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2."""
    try:
        cli.main(args=argv, prog_name="genlab", standalone_mode=False)
    except GenlabError as exc:
        click.echo(f"genlab: error: {exc}", err=True)
        return 2
    except _NO_ARGS_IS_HELP as exc:  # bare 'genlab': show the help, not an error
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 0
    except click.UsageError as exc:
        hint = f" (see 'genlab {exc.ctx.command_path.split(' ', 1)[1]} --help')" if exc.ctx and " " in exc.ctx.command_path else " (see 'genlab --help')"
        click.echo(f"genlab: error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"genlab: error: {exc.format_message()}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("genlab: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("genlab: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: still one line
        from sklearn.exceptions import NotFittedError

        if isinstance(exc, (NotFittedError, FileNotFoundError, PermissionError, IsADirectoryError)):
            click.echo(f"genlab: error: {exc}", err=True)
            return 2
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
