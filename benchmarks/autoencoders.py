"""The autoencoder family (VAE, CVAE, WAE-MMD / sliced / Cramér–Wold) against a 50-component
GMM and the KDE, with the quick presets, on the shared train/test split.

    python benchmarks/autoencoders.py                          # mnist10k, every model (~1 h on 1 core)
    python benchmarks/autoencoders.py --datasets digits        # the 8x8 digits (minutes)
    python benchmarks/autoencoders.py --models vae,wae_cw --save-dir /tmp/ae   # a few; keep models + grids

Every model is fitted on the train split of ``load_dataset(npz:../shared/data/NAME.npz).split(0.2, 0)``
(the split shipped with the data files) and evaluated with
``evaluate_model(model, train, test, get_evaluator(train, test, seed=0), n_samples=1000, seed=0)``.
Beside it: the real-vs-real noise floor (1,000 real training images scored like samples,
seeds 0, 1, 2 — as ``genlab compare`` does), fit wall time, and log-likelihoods on a random
subset of test (and train) images: the VAE's IWAE bound (k = 100) next to its ELBO from the
same draws, the GMM's and KDE's exact densities on the very same images.

Models with a bound likelihood (VAE, CVAE) skip ``evaluate_model``'s scoring of all 2,000
test + 2,000 train images (k = 100 decodes per image, ~10 min per model on one core)
unless ``--full-likelihood``; their likelihood numbers come from the subset instead.

Results go to ``benchmarks/results/autoencoders-NAME.json`` (resumable: models already in
it are skipped unless ``--redo``) and ``.md`` (the markdown table, rewritten after every model).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import genlab  # noqa: E402
from _common import SHARED_DATA, threads  # noqa: E402
from genlab.likelihood import bits_per_dim  # noqa: E402
from genlab.metrics.evaluate import evaluate_model, real_data_metrics, summarize  # noqa: E402
from genlab.metrics.evaluator import get_evaluator  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: label -> (registry name, parameters); everything else is the model's default / quick preset
MODELS: dict[str, tuple[str, dict]] = {
    "gmm": ("gmm", {"n_components": 50, "reg_covar": 1e-3}),
    "kde": ("kde", {}),
    "vae": ("vae", {}),
    "cvae": ("vae", {"condition": "label"}),
    "wae_mmd": ("wae", {"divergence": "mmd"}),
    "wae_sliced": ("wae", {"divergence": "sliced"}),
    "wae_cw": ("wae", {"divergence": "cw"}),
}
BASELINES = ("gmm", "kde")
REAL_SEEDS = (0, 1, 2)
N_SAMPLES, SEED = 1000, 0
IWAE_K = 100
#: a model's memorisation rate counts as "near" the held-out set's own if at most this multiple of it
COPIES_TOLERANCE = 2.0
CONDITIONAL_ACCURACY_TARGET = 0.90


class _NoLikelihood:
    """``model`` as ``evaluate_model`` sees it, minus the likelihood (skips scoring 4,000 images)."""

    likelihood = "none"

    def __init__(self, model) -> None:
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)


def load_split(name: str):
    spec = f"npz:{SHARED_DATA / f'{name}.npz'}"
    if not (SHARED_DATA / f"{name}.npz").is_file():
        raise SystemExit(f"{SHARED_DATA / f'{name}.npz'} not found: the benchmarks read the shared data files")
    return spec, genlab.load_dataset(spec).split(0.2, 0)


def git_state() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def read_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def subset_index(n: int, size: int, seed: int) -> torch.Tensor:
    """A random subset: the split is sorted by label, so the first images are all zeros."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(size, n)]


def likelihoods_on_subset(model, train, test, n_images: int) -> dict:
    """Mean log-likelihoods (nats) on ``n_images`` random test and train images."""
    te = test.images[subset_index(len(test), n_images, 0)]
    tr = train.images[subset_index(len(train), n_images, 1)]
    out: dict = {"n_images": len(te)}
    start = time.perf_counter()
    if model.likelihood == "bound":  # VAE / CVAE: IWAE_k and the ELBO from the same draws
        iwae, elbo = model.iwae_bound(te, k=IWAE_K), model.elbo(te, k=IWAE_K)
        out.update(
            k=IWAE_K,
            test_iwae_nats=float(iwae.mean()),
            test_elbo_nats=float(elbo.mean()),
            iwae_minus_elbo_nats=float((iwae - elbo).mean()),
            share_iwae_above_elbo=float((iwae > elbo).mean()),
            test_iwae_bits_per_dim=float(bits_per_dim(float(iwae.mean()), test.n_dims)),
            test_elbo_bits_per_dim=float(bits_per_dim(float(elbo.mean()), test.n_dims)),
        )
        train_ll = float(model.iwae_bound(tr, k=IWAE_K).mean())
        out["train_iwae_nats"] = train_ll
        out["gap_nats"] = train_ll - out["test_iwae_nats"]
        out["test_ll_nats"] = out["test_iwae_nats"]
    elif model.likelihood != "none":
        ll = float(np.mean(model.score_samples(te)))
        out.update(test_ll_nats=ll, test_bits_per_dim=float(bits_per_dim(ll, test.n_dims)))
        out["gap_nats"] = float(np.mean(model.score_samples(tr))) - ll
    else:
        return {}
    out["seconds"] = time.perf_counter() - start
    return out


def run_model(
    label: str, train, test, evaluator, *, ll_images: int, full_likelihood: bool, save_dir: Path | None
) -> dict:
    name, params = MODELS[label]
    model = genlab.make_model(name, **params)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(train.images, train.labels if model.conditional else None)
    fit_seconds = time.perf_counter() - start
    print(f"  {label}: fitted in {fit_seconds:.0f} s", flush=True)
    record: dict = {
        "model": name,
        "params": params,
        "fit_seconds": fit_seconds,
        "load_avg_1min": [load_before, os.getloadavg()[0]],
    }
    if hasattr(model, "resolved_params_"):
        record["resolved"] = {
            k: v for k, v in model.resolved_params_.items() if isinstance(v, (int, float, str, bool)) or v is None
        }
        record["steps"] = int(model.training_summary_.get("steps", 0))
        record["latent_components"] = model._param("latent_components")
        record["latent_temperature"] = model._param("latent_temperature")
    for attr in ("bandwidth_", "n_iter_"):
        if hasattr(model, attr):
            record[attr.rstrip("_")] = float(getattr(model, attr))
    start = time.perf_counter()
    full = full_likelihood or model.likelihood != "bound"
    evaluation = evaluate_model(
        model if full else _NoLikelihood(model), train, test, evaluator, n_samples=N_SAMPLES, seed=SEED
    )
    record["evaluate_seconds"] = time.perf_counter() - start
    record["metrics"] = dict(evaluation.metrics)
    record["likelihood_subset"] = likelihoods_on_subset(model, train, test, ll_images)
    if save_dir is not None:
        from genlab.images import save_grid

        folder = Path(save_dir) / label
        model.save(folder)
        save_grid(evaluation.samples[:100], folder / "samples.png", ncols=10)
    return record


def real_rows(train, test, evaluator) -> dict:
    runs = [real_data_metrics(train, test, evaluator, n_samples=N_SAMPLES, seed=s) for s in REAL_SEEDS]
    keys = sorted({k for r in runs for k in r})
    return {"runs": runs, "summary": {k: summarize([r.get(k) for r in runs]) for k in keys}}


# ---------------------------------------------------------------------- report
COLUMNS = [
    ("fd", "FD ↓", "{:.1f}"),
    ("precision", "precision ↑", "{:.3f}"),
    ("recall", "recall ↑", "{:.3f}"),
    ("density", "density ↑", "{:.3f}"),
    ("coverage", "coverage ↑", "{:.3f}"),
    ("class_entropy", "class entropy ↑", "{:.3f}"),
    ("conditional_accuracy", "cond. acc. ↑", "{:.3f}"),
    ("copies", "copies ↓", "{:.3f}"),
    ("copies_reference", "copies ref.", "{:.3f}"),
]


def _cell(value, fmt: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return f"{fmt.format(value[0])} ± {fmt.format(value[1])}"
    if isinstance(value, float) and np.isnan(value):
        return "—"
    return fmt.format(value)


def markdown(results: dict) -> str:
    ds = results["dataset"]
    lines = [
        f"**{ds['name']}** (`{ds['spec']}`), train {ds['n_train']} / test {ds['n_test']} (`split(0.2, 0)`), "
        f"{N_SAMPLES} samples per model, seed {SEED}; evaluator held-out accuracy {100 * results['evaluator']['test_accuracy']:.2f}%. "
        f"Quick presets, {results['threads']} thread(s), genlab {results['genlab']} ({results['git']}).",
        "",
    ]
    header = (
        ["model"]
        + [t for _, t, _ in COLUMNS]
        + [f"test LL ({results.get('ll_images', '?')} imgs, nats) ↑", "train−test LL ↓", "fit s", "steps", "T", "K"]
    )
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    real = results.get("real", {}).get("summary", {})
    if real:
        lines.append(
            f"| real vs real (1000 train imgs, seeds {', '.join(map(str, REAL_SEEDS))}) | "
            + " | ".join(_cell(real.get(k), f) for k, _, f in COLUMNS)
            + " | — | — | — | — | — | — |"
        )
    for label, rec in results.get("models", {}).items():
        m, ll = rec["metrics"], rec.get("likelihood_subset") or {}
        cells = [_cell(m.get(k), f) for k, _, f in COLUMNS]
        cells += [
            _cell(ll.get("test_ll_nats"), "{:.1f}"),
            _cell(ll.get("gap_nats"), "{:.1f}"),
            _cell(rec["fit_seconds"], "{:.0f}"),
            _cell(rec.get("steps"), "{}"),
            _cell(rec.get("latent_temperature"), "{:g}"),
            _cell(rec.get("latent_components"), "{}"),
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if real:
        lines += [
            "",
            f"Real-vs-real spread (noise floor): FD {real['fd'][0]:.2f} ± {real['fd'][1]:.2f}, precision {real['precision'][0]:.3f} ± {real['precision'][1]:.3f}, recall {real['recall'][0]:.3f} ± {real['recall'][1]:.3f} (3 seeds).",
        ]
    bounds = [
        (label, rec["likelihood_subset"])
        for label, rec in results.get("models", {}).items()
        if "test_iwae_nats" in (rec.get("likelihood_subset") or {})
    ]
    if bounds:
        lines += [
            "",
            f"Likelihood bounds on {bounds[0][1]['n_images']} random test images (same draws for both; k = {IWAE_K}):",
            "",
            "| model | IWAE (nats) | ELBO (nats) | IWAE − ELBO | share of images IWAE > ELBO | IWAE bits/dim | ELBO bits/dim | seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, b in bounds:
            lines.append(
                f"| {label} | {b['test_iwae_nats']:.1f} | {b['test_elbo_nats']:.1f} | {b['iwae_minus_elbo_nats']:.1f} | {b['share_iwae_above_elbo']:.3f} | {b['test_iwae_bits_per_dim']:.3f} | {b['test_elbo_bits_per_dim']:.3f} | {b['seconds']:.0f} |"
            )
    targets = check_targets(results)
    if targets:
        lines += [
            "",
            "Targets (FD and precision better than both the GMM and the KDE; copies ≤ "
            f"{COPIES_TOLERANCE:g} × copies_reference; VAE IWAE > ELBO; CVAE conditional accuracy ≥ {CONDITIONAL_ACCURACY_TARGET:.0%}):",
            "",
        ]
        lines += [f"- {t}" for t in targets]
    return "\n".join(lines) + "\n"


def check_targets(results: dict) -> list[str]:
    models = results.get("models", {})
    base = {b: models[b]["metrics"] for b in BASELINES if b in models}
    out = []
    for label, rec in models.items():
        if label in BASELINES:
            continue
        m, parts = rec["metrics"], []
        if len(base) == len(BASELINES):
            best_fd = min(b["fd"] for b in base.values())
            best_prec = max(b["precision"] for b in base.values())
            parts.append(f"FD {m['fd']:.1f} vs best baseline {best_fd:.1f}: {'met' if m['fd'] < best_fd else 'MISSED'}")
            parts.append(
                f"precision {m['precision']:.3f} vs best baseline {best_prec:.3f}: {'met' if m['precision'] > best_prec else 'MISSED'}"
            )
        ratio = m["copies"] / max(m["copies_reference"], 1e-12)
        parts.append(
            f"copies {m['copies']:.3f} = {ratio:.2f} × reference {m['copies_reference']:.3f}: {'met' if ratio <= COPIES_TOLERANCE else 'MISSED'}"
        )
        ll = rec.get("likelihood_subset") or {}
        if label == "vae" and "test_iwae_nats" in ll:
            parts.append(
                f"IWAE {ll['test_iwae_nats']:.1f} > ELBO {ll['test_elbo_nats']:.1f}: {'met' if ll['test_iwae_nats'] > ll['test_elbo_nats'] else 'MISSED'}"
            )
        if "conditional_accuracy" in m:
            parts.append(
                f"conditional accuracy {m['conditional_accuracy']:.3f}: {'met' if m['conditional_accuracy'] >= CONDITIONAL_ACCURACY_TARGET else 'MISSED'}"
            )
        out.append(f"**{label}**: " + "; ".join(parts))
    return out


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="mnist10k", help="comma list of shared data files (mnist10k, digits)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list from {', '.join(MODELS)}")
    parser.add_argument("--threads", default="1", help="torch/BLAS threads ('all' = every core); default 1")
    parser.add_argument(
        "--ll-images",
        type=int,
        default=300,
        help="random test (and train) images for the IWAE/ELBO and likelihood columns",
    )
    parser.add_argument(
        "--full-likelihood",
        action="store_true",
        help="also let evaluate_model score all test + train images with the IWAE bound (slow)",
    )
    parser.add_argument("--redo", action="store_true", help="refit models already in the results file")
    parser.add_argument(
        "--save-dir", type=Path, default=None, help="save fitted models and sample grids under DIR/DATASET/MODEL"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    labels = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in labels if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    n_threads = None if args.threads == "all" else int(args.threads)
    set_quiet(True)
    total = time.perf_counter()
    with threads(n_threads):
        print(
            f"genlab {genlab.__version__}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True
        )
        for name in (d.strip() for d in args.datasets.split(",") if d.strip()):
            spec, (train, test) = load_split(name)
            json_path = args.out_dir / f"autoencoders-{name}.json"
            results = read_results(json_path)
            results.update(
                dataset={
                    "name": name,
                    "spec": spec,
                    "n_train": len(train),
                    "n_test": len(test),
                    "image_shape": list(train.image_shape),
                },
                threads=torch.get_num_threads(),
                genlab=genlab.__version__,
                torch=torch.__version__,
                git=git_state(),
                ll_images=args.ll_images,
            )
            results.setdefault("models", {})
            evaluator = get_evaluator(train, test, seed=0)
            results["evaluator"] = {"test_accuracy": evaluator.test_accuracy, "describe": evaluator.describe()}
            if "real" not in results:
                print(f"{name}: real vs real", flush=True)
                results["real"] = real_rows(train, test, evaluator)
                write_results(json_path, results)
            for label in labels:
                if label in results["models"] and not args.redo:
                    print(f"{name}: {label} done before, skipped (--redo to refit)", flush=True)
                    continue
                print(f"{name}: {label}", flush=True)
                t0 = time.perf_counter()
                save_dir = None if args.save_dir is None else args.save_dir / name
                record = run_model(
                    label,
                    train,
                    test,
                    evaluator,
                    ll_images=args.ll_images,
                    full_likelihood=args.full_likelihood,
                    save_dir=save_dir,
                )
                record["total_seconds"] = time.perf_counter() - t0
                m = record["metrics"]
                print(
                    f"  {label}: FD {m['fd']:.1f}, precision {m['precision']:.3f}, recall {m['recall']:.3f}, copies {m['copies']:.3f} (ref {m['copies_reference']:.3f}), {record['total_seconds']:.0f} s in all",
                    flush=True,
                )
                results["models"][label] = record
                # keep the table order = MODELS order
                results["models"] = {k: results["models"][k] for k in MODELS if k in results["models"]}
                write_results(json_path, results)
                (args.out_dir / f"autoencoders-{name}.md").write_text(markdown(results))
            write_results(json_path, results)
            md = markdown(results)
            (args.out_dir / f"autoencoders-{name}.md").write_text(md)
            print("\n" + md, flush=True)
    print(f"total benchmark time {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
