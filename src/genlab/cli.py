"""The ``genlab`` command line: thin over the library.

Every command parses its options, calls the library and prints. Bad input raises
:class:`GenlabError`; :func:`main` turns it (and click's usage errors) into one line on
stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import click

from .errors import GenlabError
from .service.fitting import DEFAULT_SCORE_IMAGES
from .service.manipulation import REGIONS

DEFAULT_DATA = "digits"
#: seeds: what numpy and torch generators accept
SEED = click.IntRange(0, 2**63 - 1)


# ---------------------------------------------------------------------- helpers
def parse_value(text: str) -> Any:
    """'3' -> 3, '1e-3' -> 0.001, 'true' -> True, 'none' -> None, '[1,2]' -> [1, 2], else the
    string (without surrounding spaces)."""
    text = text.strip()
    lowered = text.lower()
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
        key = key.strip()
        if not sep or not key:
            raise GenlabError(f"{option} {pair!r}: expected NAME=VALUE")
        if key in params:
            raise GenlabError(f"{option}: {key} given twice")
        params[key] = parse_value(value)
    return params


def parse_grid(pairs: tuple[str, ...]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise GenlabError(f"--grid {pair!r}: expected NAME=V1,V2,...")
        grid[key.strip()] = [parse_value(v) for v in _split_top_level(values, f"--grid {pair!r}")]
    return grid


def _split_top_level(text: str, where: str = "value") -> list[str]:
    """Split on commas outside brackets, braces and quoted values ('[1,2],"a,b"' -> two values);
    unbalanced brackets or quotes raise a GenlabError naming ``where``."""
    parts, current, closers, quote = [], [], [], None
    pairs = {"[": "]", "(": ")", "{": "}"}
    escaped = False
    for ch in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "'\"" and (closers or not "".join(current).strip()):
            quote = ch  # inside brackets, or at the start of a value (so a word like "it's" stays a word)
        elif ch in pairs:
            closers.append(pairs[ch])
        elif ch in ")]}":
            if not closers or closers.pop() != ch:
                raise GenlabError(f"{where}: unbalanced {ch!r}")
        elif ch == "," and not closers:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if quote is not None or closers:
        raise GenlabError(f"{where}: unclosed {quote or 'bracket'}")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def echo(text: str = "") -> None:
    click.echo(text)


def _set_quiet(quiet: bool) -> None:
    from .progress import set_quiet

    set_quiet(quiet)


data_option = click.option(
    "--data",
    "data_spec",
    default=DEFAULT_DATA,
    show_default=True,
    metavar="SPEC",
    help="Dataset: digits, mnist, fashion-mnist, npz:PATH or folder:PATH.",
)
size_option = click.option(
    "--size",
    type=click.IntRange(min=1),
    default=None,
    help="Resize images to SIZE x SIZE (needed for folders of mixed sizes).",
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace output files that exist (never a run's own files)."
)
param_option = click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Model hyper-parameter (repeatable), e.g. -p n_components=50.",
)


# ---------------------------------------------------------------------- commands
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="genlab")
def cli() -> None:
    """genlab: learn the distribution of an image dataset, generate new images, and evaluate generators honestly.

    Start with 'genlab demo', then 'genlab fit gmm --data digits --out runs/gmm'.
    """


@cli.command()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print names, docs, likelihood kinds, capabilities, conditionings, parameter schemas and sample options as JSON.",
)
def models(as_json) -> None:
    """List the available models."""
    from .models import get_model_class, list_models

    if as_json:
        from .models.registry import describe_models

        echo(json.dumps(describe_models(), indent=2))
        return
    for name, doc in list_models().items():
        kind = get_model_class(name).likelihood
        echo(f"{name:14s} [likelihood: {kind:8s}] {doc}")


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
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory to write."
)
@param_option
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for the model's randomness.")
@click.option("--test-fraction", type=float, default=0.2, show_default=True, help="Held-out share of the data.")
@click.option("--split-seed", type=SEED, default=0, show_default=True, help="Seed of the train/test split.")
@size_option
@click.option(
    "-n", "n_samples", type=click.IntRange(min=1), default=64, show_default=True, help="Images in samples.png."
)
@click.option(
    "--condition",
    type=click.Choice(["none", "label", "text"]),
    default=None,
    help="Conditioning (models that support it): class labels or captions.",
)
@click.option(
    "--captions",
    default=None,
    metavar="auto|FILE",
    help="--condition text: 'auto' (default; genlab describes each digit: identity, thickness, slant, size) or a CSV/JSONL caption file for folder:PATH data.",
)
@click.option(
    "--preset",
    type=click.Choice(["auto", "quick", "full"]),
    default=None,
    help="Neural models: size of network and training (auto = full on a GPU, quick on a CPU).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Neural models: training epochs (default: the preset's)."
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Neural models: optimiser steps (default: the preset's).",
)
@click.option("--device", default=None, help="Neural models: auto, cpu, cuda, cuda:1, mps.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default=None,
    help="Neural models: bf16 autocast (auto = on CUDA).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=None,
    help="Neural models: also checkpoint every N steps (always at each epoch end).",
)
@click.option(
    "--sample-every",
    type=click.IntRange(min=1),
    default=None,
    help="Neural models: write a sample grid every N epochs into RUN_DIR/checkpoints/samples.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Neural models: continue from the last checkpoint in RUN_DIR/checkpoints (same command otherwise).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace what --out holds (another run, other files) with the new run, as a whole.",
)
@click.option(
    "--score-images",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help=f"Held-out images to score at the end, a fixed-seed subset under a progress bar (default: all for classical models, {DEFAULT_SCORE_IMAGES:,} for neural ones, whose likelihood bounds are slow; 0 skips the scoring). metrics.json records the bound (score_images) and how many were scored (n_scored).",
)
@quiet_option
def fit(
    model_name,
    data_spec,
    out_dir,
    params,
    seed,
    test_fraction,
    split_seed,
    size,
    n_samples,
    condition,
    captions,
    preset,
    epochs,
    max_steps,
    device,
    precision,
    checkpoint_every,
    sample_every,
    resume,
    overwrite,
    score_images,
    quiet,
) -> None:
    """Train MODEL on the training split of --data and write a run directory.

    The run directory gets config.json + model.safetensors (the model), run.json (data and
    split), metrics.json (held-out log-likelihood, bits/dim, timings) and samples.png; neural
    models also checkpoint into RUN_DIR/checkpoints (metrics.csv, crash-safe checkpoints),
    so an interrupted run continues with --resume. Under torchrun every process trains and
    rank 0 writes.
    """
    from .service import fit_run

    _set_quiet(quiet)
    result = fit_run(
        model_name,
        data_spec,
        out_dir,
        params=parse_params(params),
        seed=seed,
        test_fraction=test_fraction,
        split_seed=split_seed,
        size=size,
        n_samples=n_samples,
        condition=condition,
        captions=captions,
        preset=preset,
        epochs=epochs,
        max_steps=max_steps,
        device=device,
        precision=precision,
        checkpoint_every=checkpoint_every,
        sample_every=sample_every,
        resume=resume,
        overwrite=overwrite,
        score_images=score_images,
        echo=echo,
    )
    if not result.wrote:
        return
    metrics = result.metrics
    echo(f"fit in {result.fit_seconds:.1f} s")
    if "test_bits_per_dim" in metrics:
        scored = (
            ""
            if metrics["n_scored"] == metrics["n_test"]
            else f" on {metrics['n_scored']} of {metrics['n_test']} images"
        )
        echo(
            f"held-out log-likelihood{scored}: {metrics['test_log_likelihood_nats']:.2f} nats/image ({metrics['likelihood']}), {metrics['test_bits_per_dim']:.4f} bits/dim"
        )
    echo(f"wrote {result.out_dir}/ ({', '.join(result.files)})")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-n", "n_samples", type=click.IntRange(min=1), default=64, show_default=True, help="How many images.")
@click.option(
    "-o",
    "--out",
    "out_png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG grid to write (at most 1,024 images; default: the next free RUN_DIR/samples-K.png, none when only --npy is given).",
)
@click.option(
    "--npy",
    "out_npy",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write all the uint8 images (n, C, H, W) as .npy, streamed in chunks.",
)
@click.option("--seed", type=SEED, default=None, help="Seed for reproducible samples.")
@click.option(
    "--label",
    type=int,
    default=None,
    help="Class label (class-conditional models; default: labels drawn from the training class frequencies).",
)
@click.option(
    "--prompt",
    default=None,
    help="Text description (text-conditional models; default: prompts drawn from the training captions).",
)
@click.option(
    "--unconditional",
    is_flag=True,
    help="Conditional models: sample the unconditional (null) branch instead (diffusion, flow matching).",
)
@click.option("--guidance", type=float, default=None, help="Classifier-free guidance scale (diffusion, flow matching).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Sampling steps (diffusion, flow matching).")
@click.option(
    "--sampler",
    default=None,
    help="Sampler: ddpm, ddim, dpm++ (diffusion); euler, heun, dpm++ (flow matching); prior or gmm (autoencoders).",
)
@click.option("--temperature", type=float, default=None, help="Latent temperature (autoencoders, flows).")
@click.option(
    "--truncation",
    type=float,
    default=None,
    help="Truncation psi in [0, inf) (GANs): latents drawn from N(0, 1) restricted to [-psi, psi].",
)
@click.option(
    "--no-tone-curve",
    "no_tone_curve",
    is_flag=True,
    help="Neural models: round outputs to the nearest pixel level instead of mapping them through the tone curve fitted after training.",
)
@click.option("--ncols", type=click.IntRange(min=1), default=None, help="Columns in the grid.")
@overwrite_option
def sample(
    run_dir,
    n_samples,
    out_png,
    out_npy,
    seed,
    label,
    prompt,
    unconditional,
    guidance,
    steps,
    sampler,
    temperature,
    truncation,
    no_tone_curve,
    ncols,
    overwrite,
) -> None:
    """Draw images from a trained run and write them as a PNG grid (and .npy)."""
    from .service import sample_run

    given = {
        "prompt": prompt,
        "guidance": guidance,
        "steps": steps,
        "sampler": sampler,
        "temperature": temperature,
        "truncation": truncation,
        "unconditional": unconditional or None,
        "tone_curve": False if no_tone_curve else None,
    }
    options = {k: v for k, v in given.items() if v is not None}  # the model validates them (and names the valid ones)
    result = sample_run(
        run_dir,
        n_samples,
        out_png=out_png,
        out_npy=out_npy,
        seed=seed,
        y=label,
        ncols=ncols,
        overwrite=overwrite,
        echo=echo,
        **options,
    )
    shown = "" if result.n_grid in (0, result.n) else f" (the first {result.n_grid:,})"
    echo(
        f"{result.n} samples in {result.seconds:.2f} s ({result.images_per_second:.0f} images/s)"
        + (f" -> {result.png}{shown}" if result.png else "")
    )
    if result.npy is not None:
        echo(f"-> {result.npy}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--data", "data_spec", default=None, metavar="SPEC", help="Dataset to score (default: the run's own data)."
)
@click.option(
    "--split",
    type=click.Choice(["test", "train", "all"]),
    default=None,
    help="Which part; default 'test' for the run's own data, 'all' for other data.",
)
@size_option
def score(run_dir, data_spec, split, size) -> None:
    """Held-out log-likelihood (nats/image) and bits/dim of a trained run."""
    from .service import score_run

    result = score_run(run_dir, data_spec=data_spec, split=split, size=size)
    echo(f"{result.model} on {result.data} [{result.split}]: {result.n} images")
    echo(f"log-likelihood: {result.mean:.3f} ± {result.standard_error:.3f} nats/image ({result.likelihood})")
    echo(f"bits/dim:       {result.bits_per_dim:.4f}")


@cli.command()
@click.argument("model_name", metavar="MODEL")
@data_option
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Number of folds k.")
@param_option
@click.option(
    "--grid",
    "grid",
    multiple=True,
    metavar="NAME=V1,V2,...",
    help="Hyper-parameter values to compare (repeatable: a product grid).",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the fold assignment and the model.")
@click.option(
    "--test-fraction", type=float, default=0.2, show_default=True, help="Test split kept out of the cross-validation."
)
@size_option
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write all results as JSON.",
)
@overwrite_option
@quiet_option
def cv(model_name, data_spec, folds, params, grid, seed, test_fraction, size, json_out, overwrite, quiet) -> None:
    """k-fold cross-validation of held-out log-likelihood (on the training split).

    Prints each fold's held-out log-likelihood and mean ± std for every grid point, and
    the best grid point.
    """
    from .service import cross_validate

    _set_quiet(quiet)
    result = cross_validate(
        model_name,
        data_spec,
        folds=folds,
        params=parse_params(params),
        grid=parse_grid(grid),
        seed=seed,
        test_fraction=test_fraction,
        size=size,
        json_out=json_out,
        overwrite=overwrite,
        echo=echo,
    )
    best = result.best
    if len(result.results) > 1:
        echo(
            f"best: {', '.join(f'{k}={v!r}' for k, v in best['params'].items())} ({best['mean']:.3f} nats/image, {best['bits_per_dim']:.4f} bits/dim)"
        )
    if json_out is not None:
        echo(f"-> {json_out}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_spec",
    default=None,
    metavar="SPEC",
    help="Dataset to evaluate against (default: the run's own data; split like the run).",
)
@click.option(
    "-n",
    "n_samples",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Samples to draw (at least 21: the metrics' nearest-neighbour statistics need them).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the metrics to this JSON file.",
)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option(
    "--inception-weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Also compute the standard FID (fid_inception) with this FID Inception-v3 weights file (weights-inception-2015-12-05-6726825d.pth); needs genlab[fid], never downloads.",
)
@click.option(
    "--no-tone-curve",
    "no_tone_curve",
    is_flag=True,
    help="Neural models: sample with plain rounding to pixel levels instead of the tone curve fitted after training.",
)
@overwrite_option
@quiet_option
def evaluate(run_dir, data_spec, n_samples, json_out, seed, inception_weights, no_tone_curve, overwrite, quiet) -> None:
    """Evaluate a trained run on held-out data: FD, precision/recall, density/coverage,
    memorisation, likelihood, class coverage, intrinsic dimension and sampling speed.

    Prints a table (with real data scored the same way, as the reference) and writes
    the metrics into RUN_DIR/metrics.json.
    """
    from .metrics.evaluate import evaluation_lines
    from .service import evaluate_run

    _set_quiet(quiet)
    result = evaluate_run(
        run_dir,
        data_spec=data_spec,
        n_samples=n_samples,
        seed=seed,
        inception_weights=inception_weights,
        json_out=json_out,
        overwrite=overwrite,
        echo=echo,
        tone_curve=not no_tone_curve,
    )
    echo(
        f"{result.model} on {result.data}: {result.n_samples} samples vs {result.n_test} held-out images; {result.evaluator}"
    )
    echo(f"pixel levels: {result.record['pixel_levels']}")
    for line in evaluation_lines(result.metrics, result.real_data, result.intervals):
        echo(line)
    echo(f"(evaluated in {result.seconds:.1f} s)")
    echo(f"-> {Path(run_dir) / 'metrics.json'}" + (f", {json_out}" if json_out else ""))


@cli.command()
@click.option(
    "--models",
    "models_csv",
    required=True,
    metavar="M1,M2,...",
    help="Models to compare, e.g. uniform,gaussian,gmm,kde; LABEL:MODEL adds a variant, e.g. narrow:kde with -p narrow.bandwidth=0.02.",
)
@data_option
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (rerunning resumes).",
)
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="MODEL.NAME=VALUE",
    help="Per-model hyper-parameter, e.g. -p gmm.n_components=50.",
)
@click.option(
    "-n",
    "n_samples",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Samples per model and fold (at least 21).",
)
@click.option("--seed", type=SEED, default=0, show_default=True)
@size_option
@click.option(
    "--evaluator-epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Epochs for the evaluator classifier (default: about 2,000 steps).",
)
@click.option(
    "--inception-weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Also compute the standard FID (fid_inception) with this FID Inception-v3 weights file (weights-inception-2015-12-05-6726825d.pth); needs genlab[fid], never downloads.",
)
@quiet_option
def compare(
    models_csv, data_spec, folds, out_dir, params, n_samples, seed, size, evaluator_epochs, inception_weights, quiet
) -> None:
    """k-fold comparison of models: a markdown table (mean ± std over folds, with the
    real-vs-real spread) and a self-contained HTML report. Rerunning skips finished cells."""
    from .compare import CompareConfig, parse_model_entries, parse_model_params, run_compare

    _set_quiet(quiet)
    entries = parse_model_entries(models_csv)
    labels = list(entries)
    config = CompareConfig(
        models=labels,
        data=data_spec,
        folds=folds,
        n_samples=n_samples,
        seed=seed,
        size=size,
        params=parse_model_params(params, labels, parse_value),
        evaluator_epochs=evaluator_epochs,
        model_names=entries,
        inception_weights=None if inception_weights is None else str(inception_weights),
    )
    run_compare(config, out_dir, echo=echo)


@cli.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Where to write the picture and metrics.",
)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option(
    "--model",
    "demo_model",
    type=click.Choice(["text", "gmm"]),
    default="text",
    show_default=True,
    help="text: text-to-image diffusion, genlab's best model on digits (about 4-5 minutes on 2 CPU cores); gmm: the classical model chosen by 5-fold CV (seconds).",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="text: shorten the training (default: the quick preset's 3,000 steps).",
)
@quiet_option
def demo(out_dir, seed, demo_model, max_steps, quiet) -> None:
    """The main job: on the bundled digits, train genlab's best model and show it beside real data and uniform noise."""
    from .demo import run_demo

    _set_quiet(quiet)
    if max_steps is not None and demo_model != "text":
        raise GenlabError("--max-steps applies to --model text")
    run_demo(out_dir, seed=seed, echo=echo, model=demo_model, max_steps=max_steps)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_spec",
    default=None,
    metavar="SPEC",
    help="Where the two images come from (default: the run's data).",
)
@click.option("--from-index", type=int, default=None, help="Index of the first image in --data.")
@click.option("--to-index", type=int, default=None, help="Index of the second image in --data.")
@click.option("--from-label", type=int, default=None, help="Use the first image with this label instead of an index.")
@click.option("--to-label", type=int, default=None, help="Use the first image with this label instead of an index.")
@click.option(
    "--steps", type=click.IntRange(min=2), default=10, show_default=True, help="Images in the strip, ends included."
)
@click.option(
    "--mode",
    type=click.Choice(["linear", "slerp"]),
    default="linear",
    show_default=True,
    help="Autoencoders: straight line or great circle between the two codes (diffusion always uses slerp between inverted noises).",
)
@click.option(
    "--inversion-steps",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Models that invert (diffusion: DDIM steps each way; GAN: optimisation steps of the inversion).",
)
@click.option("--prompt", default=None, help="Diffusion, text-conditional: condition the whole path on this text.")
@click.option(
    "-o", "--out", "out_png", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG strip to write."
)
@overwrite_option
def interpolate(
    run_dir,
    data_spec,
    from_index,
    to_index,
    from_label,
    to_label,
    steps,
    mode,
    inversion_steps,
    prompt,
    out_png,
    overwrite,
) -> None:
    """Walk from one real image to another through a model's latent space.

    Autoencoders (vae, wae) interpolate the two images' codes; diffusion models DDIM-invert
    both images to noise and decode the spherical interpolation of the noises. Writes a strip:
    the first image, the interpolation (its ends are the model's reconstructions), the second.
    """
    from .service import interpolate_run

    result = interpolate_run(
        run_dir,
        out_png,
        data_spec=data_spec,
        from_index=from_index,
        to_index=to_index,
        from_label=from_label,
        to_label=to_label,
        steps=steps,
        mode=mode,
        inversion_steps=inversion_steps,
        prompt=prompt,
        overwrite=overwrite,
    )
    echo(f"{steps}-image {result.how} interpolation -> {result.out} (first and last: the real images)")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_spec",
    default=None,
    metavar="SPEC",
    help="Images to reconstruct (default: the run's held-out test images).",
)
@click.option("-n", "n_images", type=click.IntRange(min=1), default=32, show_default=True, help="How many images.")
@click.option(
    "-o",
    "--out",
    "out_png",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="PNG grid to write: rows of originals above rows of reconstructions.",
)
@overwrite_option
def reconstruct(run_dir, data_spec, n_images, out_png, overwrite) -> None:
    """Encode and decode real images with an autoencoder run: originals above reconstructions."""
    from .service import reconstruct_run

    result = reconstruct_run(run_dir, out_png, data_spec=data_spec, n_images=n_images, overwrite=overwrite)
    echo(
        f"{result.n} images and their reconstructions -> {result.out} (mean absolute error {result.mean_absolute_error:.4f} of full scale)"
    )


editing_options = [
    click.argument("run_dir", type=click.Path(path_type=Path)),
    click.option(
        "--data",
        "data_spec",
        default=None,
        metavar="SPEC",
        help="Where the images come from (default: the run's held-out test images).",
    ),
    click.option(
        "--index",
        "indices",
        type=int,
        multiple=True,
        help="Image index in --data (repeatable; default: the first -n images).",
    ),
    click.option(
        "-n",
        "n_images",
        type=click.IntRange(min=1),
        default=8,
        show_default=True,
        help="How many images when no --index is given.",
    ),
    click.option("--label", type=int, default=None, help="Class-conditional models: steer towards this class."),
    click.option("--prompt", default=None, help="Text-conditional models: steer towards this text."),
    click.option(
        "--guidance",
        type=click.FloatRange(min=0),
        default=None,
        help="Classifier-free guidance scale (default: the model's).",
    ),
    click.option("--steps", type=click.IntRange(min=1), default=None, help="Sampler steps (default: the model's)."),
    click.option("--seed", type=SEED, default=0, show_default=True),
    click.option(
        "-o",
        "--out",
        "out_png",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        help="PNG grid to write.",
    ),
    overwrite_option,
]


def with_editing_options(fn):
    for option in reversed(editing_options):
        fn = option(fn)
    return fn


@cli.command()
@with_editing_options
@click.option(
    "--strength",
    "strengths",
    default="0.3,0.5,0.7,0.9",
    show_default=True,
    help="Comma-separated noise levels in (0, 1]: 0 keeps the image, 1 is a fresh sample.",
)
def edit(
    run_dir, data_spec, indices, n_images, label, prompt, guidance, steps, seed, out_png, overwrite, strengths
) -> None:
    """Image-to-image (SDEdit) with a diffusion run: one row per image, the original then one
    edit per --strength, optionally steered by --label or --prompt."""
    from .service import edit_run

    try:
        levels = [float(v) for v in strengths.split(",") if v.strip()]
    except ValueError:
        raise GenlabError(f"--strength {strengths!r}: expected comma-separated numbers such as 0.3,0.6") from None
    result = edit_run(
        run_dir,
        out_png,
        strengths=levels,
        data_spec=data_spec,
        indices=indices,
        n_images=n_images,
        label=label,
        prompt=prompt,
        guidance=guidance,
        steps=steps,
        seed=seed,
        overwrite=overwrite,
    )
    echo(
        f"{result.n_images} images edited at strengths {', '.join(f'{s:g}' for s in result.strengths)} -> {result.out} (first column: the originals)"
    )


@cli.command()
@with_editing_options
@click.option(
    "--region", type=click.Choice(REGIONS), default="right", show_default=True, help="Part of each image to regenerate."
)
@click.option(
    "--mask-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A grayscale PNG of the image size instead of --region: white = regenerate.",
)
@click.option("--variants", type=click.IntRange(min=1), default=4, show_default=True, help="Completions per image.")
def inpaint(
    run_dir,
    data_spec,
    indices,
    n_images,
    label,
    prompt,
    guidance,
    steps,
    seed,
    out_png,
    overwrite,
    region,
    mask_file,
    variants,
) -> None:
    """Regenerate part of real images with a diffusion run: one row per image, the original,
    the image with the region blanked, then --variants completions."""
    from .service import inpaint_run

    result = inpaint_run(
        run_dir,
        out_png,
        region=region,
        mask_file=mask_file,
        variants=variants,
        data_spec=data_spec,
        indices=indices,
        n_images=n_images,
        label=label,
        prompt=prompt,
        guidance=guidance,
        steps=steps,
        seed=seed,
        overwrite=overwrite,
    )
    h, w = result.mask.shape
    echo(
        f"{result.n_images} images, {int(result.mask.sum())} of {h * w} pixels regenerated, {variants} variants each -> {result.out}"
    )


@cli.command()
@click.argument("runs_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (anything but loopback is reachable from other machines).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0 picks a free one)."
)
@click.option(
    "--data-root",
    "data_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder whose npz:/folder: data the train page may use (repeatable; default: none, only named datasets and uploads).",
)
def serve(runs_dir, host, port, data_roots) -> None:
    """A local web app over RUNS_DIR (default: runs): browse, compare, train, generate, edit and evaluate."""
    from .ui.server import serve as run_server

    run_server(runs_dir, host=host, port=port, data_roots=list(data_roots))


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
        hint = (
            f" (see 'genlab {exc.ctx.command_path.split(' ', 1)[1]} --help')"
            if exc.ctx and " " in exc.ctx.command_path
            else " (see 'genlab --help')"
        )
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
