"""``genlab compare``: k-fold comparison of several models on one dataset.

For each fold (stratified when labels exist) every model is trained on the fold's
training part and evaluated on its held-out part with :func:`genlab.metrics.evaluate.evaluate_model`;
the evaluator classifier is trained on the same training part (cached). A random subset
of *real* training images goes through the same metrics for several seeds — the
real-vs-real spread, printed beside every table so nobody ranks models on noise.

Each finished (model, fold) cell is stored as JSON under ``OUT/cells/``; a rerun skips
it (unless its parameters changed), so an interrupted comparison resumes. A model that
fails is recorded with its error and the comparison goes on; a rerun tries it again.
"""

from __future__ import annotations

import json
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .data import Dataset, load_dataset
from .errors import GenlabError
from .images import save_grid, save_png
from .io import read_json, write_json
from .metrics.evaluate import (
    HIGHER_IS_BETTER,
    evaluate_model,
    real_data_metrics,
    summarize,
    uniform_noise_intrinsic_dimension,
)
from .metrics.evaluator import get_evaluators
from .models import make_model

REAL_ROW = "real data"
REAL_SEEDS = (0, 1, 2)
#: table columns (metric key, title, format); a column no row has is not shown
TABLE_COLUMNS = [
    ("fd", "FD ↓", "{:.2f}"),
    ("kid", "KID ↓", "{:.4f}"),
    ("fid_inception", "FID Inception ↓", "{:.2f}"),  # only with --inception-weights
    ("precision", "precision ↑", "{:.3f}"),
    ("recall", "recall ↑", "{:.3f}"),
    ("density", "density ↑", "{:.3f}"),
    ("coverage", "coverage ↑", "{:.3f}"),
    ("fd_mlp", "FD (mlp) ↓", "{:.2f}"),  # the second, independent feature space
    ("kid_mlp", "KID (mlp) ↓", "{:.4f}"),
    ("precision_mlp", "precision (mlp) ↑", "{:.3f}"),
    ("recall_mlp", "recall (mlp) ↑", "{:.3f}"),
    ("coverage_mlp", "coverage (mlp) ↑", "{:.3f}"),
    ("class_entropy", "class entropy ↑", "{:.3f}"),
    ("pixel_tv", "pixel TV ↓", "{:.3f}"),
    ("zero_share", "zero px", "{:.3f}"),
    ("faint_share", "faint px", "{:.3f}"),
    ("copies", "copies ↓", "{:.3f}"),
    ("test_log_likelihood_nats", "test LL (nats) ↑", "{:.1f}"),
    ("test_bits_per_dim", "bits/dim ↓", "{:.3f}"),
    ("likelihood_gap_nats", "train−test LL ↓", "{:.1f}"),
    ("id_mle", "ID (MLE)", "{:.1f}"),
    ("fit_seconds", "fit s", "{:.1f}"),
    ("sampling_images_per_s", "sample img/s", "{:.0f}"),
]


def parse_model_entries(text: str) -> dict[str, str]:
    """``"gmm,kde,narrow:kde"`` -> ``{"gmm": "gmm", "kde": "kde", "narrow": "kde"}`` (label -> model).

    A label lets one model appear twice with different parameters, e.g. a KDE with a
    cross-validated bandwidth beside a narrow one that copies its training images.
    """
    entries: dict[str, str] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        label, _, model = item.partition(":")
        label, model = label.strip(), (model.strip() or label.strip())
        if not label or "." in label or "=" in label:
            raise GenlabError(f"--models: {item!r} is not NAME or LABEL:NAME")
        if label in entries:
            raise GenlabError(f"--models: {label!r} is listed twice (give one a label, e.g. {label}2:{model})")
        entries[label] = model
    if not entries:
        raise GenlabError("--models: give at least one model")
    return entries


def parse_model_params(
    pairs: list[str] | tuple[str, ...], models: list[str], parse_value: Callable[[str], Any]
) -> dict[str, dict[str, Any]]:
    """``["gmm.n_components=50"]`` -> ``{"gmm": {"n_components": 50}}``."""
    out: dict[str, dict[str, Any]] = {m: {} for m in models}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        model, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise GenlabError(f"--param {pair!r}: expected MODEL.NAME=VALUE, e.g. gmm.n_components=50")
        if model not in out:
            raise GenlabError(f"--param {pair!r}: {model!r} is not among --models ({', '.join(models)})")
        out[model][name] = parse_value(value)
    return out


@dataclass
class CompareConfig:
    models: list[str]  # labels, in table order
    data: str
    folds: int = 5
    n_samples: int = 1000
    seed: int = 0
    size: int | None = None
    params: dict[str, dict[str, Any]] | None = None
    evaluator_epochs: int | None = None
    model_names: dict[str, str] | None = None  # label -> registry name (default: the label itself)
    inception_weights: str | None = None  # FID Inception-v3 weights file: adds the standard FID, fid_inception

    def model_name(self, label: str) -> str:
        return (self.model_names or {}).get(label, label)


def run_compare(config: CompareConfig, out_dir: Path, echo: Callable[[str], None] = print) -> dict:
    out_dir = Path(out_dir)
    cells = out_dir / "cells"
    params = config.params or {m: {} for m in config.models}
    for label in config.models:  # fail fast on unknown models / parameters
        make_model(config.model_name(label), **params.get(label, {}))
    if config.inception_weights is not None:
        from .metrics.inception import check_inception_backend

        check_inception_backend(config.inception_weights)
    from .service.common import check_compare_dir, check_eval_samples

    check_eval_samples(config.n_samples)
    check_compare_dir(out_dir)
    data = load_dataset(config.data, size=config.size)
    folds = data.kfold(config.folds, config.seed)
    echo(
        f"comparing {', '.join(config.models)} on {config.data} ({len(data)} images {data.image_shape}), {config.folds} folds, {config.n_samples} samples per model"
    )
    start = time.perf_counter()
    write_json(
        out_dir / "compare.json",
        {
            "models": config.models,
            "model_names": {m: config.model_name(m) for m in config.models},
            "data": config.data,
            "folds": config.folds,
            "n_samples": config.n_samples,
            "seed": config.seed,
            "size": config.size,
            "params": params,
            "inception_weights": config.inception_weights,
        },
    )
    for i, (train, test) in enumerate(folds):
        evaluators = get_evaluators(train, test, seed=config.seed, epochs=config.evaluator_epochs, echo=echo)
        evaluator = evaluators[0]
        ev_cell = cells / "_evaluator" / f"fold{i}.json"
        write_json(
            ev_cell,
            {
                "kind": evaluator.kind,
                "test_accuracy": evaluator.test_accuracy,
                "describe": evaluator.describe(),
                "spaces": {
                    ev.space: {"test_accuracy": ev.test_accuracy, "describe": ev.describe()} for ev in evaluators
                },
            },
        )
        real_cell = cells / "_real" / f"fold{i}.json"
        needed = _needed_keys(config, evaluators)
        if not real_cell.is_file() or not needed <= set(read_json(real_cell)["runs"][0]):
            runs = [
                real_data_metrics(
                    train,
                    test,
                    evaluators,
                    n_samples=config.n_samples,
                    seed=s,
                    inception_weights=config.inception_weights,
                )
                for s in REAL_SEEDS
            ]
            write_json(real_cell, {"fold": i, "runs": runs})
            save_grid(test.images[:64], cells / "_real" / f"fold{i}_samples.png", ncols=8)
        for label in config.models:
            _run_cell(label, params.get(label, {}), i, train, test, evaluators, config, cells, echo)
    summary = collect(out_dir)
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_json(out_dir / "summary.json", summary)
    from .report.html import write_report

    markdown = markdown_table(summary)
    (out_dir / "results.md").write_text(markdown + "\n", encoding="utf-8")
    report = write_report(out_dir, summary, markdown, REAL_ROW)
    echo(markdown)
    echo(f"\nwrote {out_dir / 'results.md'} and {report} in {summary['wall_seconds']:.0f} s")
    return summary


def _needed_keys(config: CompareConfig, evaluators) -> set[str]:
    """Metrics a finished cell must hold to be reused: FD in every feature space (and the standard FID when asked)."""
    keys = {"fd" + ("" if i == 0 else f"_{ev.space}") for i, ev in enumerate(evaluators)}
    return keys | ({"fid_inception"} if config.inception_weights is not None else set())


def _run_cell(
    name: str,
    model_params: dict,
    fold: int,
    train: Dataset,
    test: Dataset,
    evaluators,
    config: CompareConfig,
    cells: Path,
    echo,
) -> None:
    cell = cells / name / f"fold{fold}.json"
    if cell.is_file():
        old = read_json(cell)
        same = (
            old.get("params") == json.loads(json.dumps(model_params))
            and old.get("n_samples") == config.n_samples
            and old.get("model") == config.model_name(name)
        )
        same = same and _needed_keys(config, evaluators) <= set(old.get("metrics", {}))
        if same and "metrics" in old:  # failed cells are tried again
            echo(f"fold {fold + 1}/{config.folds} {name}: done before, skipped")
            return
    record: dict[str, Any] = {
        "model": config.model_name(name),
        "label": name,
        "fold": fold,
        "params": model_params,
        "n_samples": config.n_samples,
    }
    try:
        model = make_model(config.model_name(name), **model_params)
        if "random_state" in model.get_params() and "random_state" not in model_params:
            model.set_params(random_state=config.seed + fold)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(train.images, train.labels if model.conditional else None)
        fit_seconds = time.perf_counter() - t0
        evaluation = evaluate_model(
            model,
            train,
            test,
            evaluators,
            n_samples=config.n_samples,
            seed=config.seed + fold,
            inception_weights=config.inception_weights,
        )
        record["metrics"] = dict(evaluation.metrics, fit_seconds=fit_seconds)
        record["intervals"] = evaluation.extras.get("ci", {})
        record["n"] = evaluation.extras.get("n", {})
        save_grid(evaluation.samples[:64], cells / name / f"fold{fold}_samples.png", ncols=8)
        strip = memorization_strip(evaluation.samples, train.images, evaluation.memorization, n=8)
        save_png(strip, cells / name / f"fold{fold}_memorization.png")
        record["memorization"] = {
            "threshold": evaluation.memorization.threshold,
            "worst_distances": [
                float(evaluation.memorization.sample_nn_distance[j]) for j in evaluation.memorization.worst(8)
            ],
        }
        m = record["metrics"]
        echo(
            f"fold {fold + 1}/{config.folds} {name}: FD {m['fd']:.2f}, precision {m['precision']:.3f}, recall {m['recall']:.3f}, copies {m['copies']:.3f}, fit {fit_seconds:.1f} s"
        )
    except (Exception, torch.cuda.OutOfMemoryError) as exc:  # noqa: BLE001 - recorded, the comparison goes on
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=5)
        echo(f"fold {fold + 1}/{config.folds} {name}: FAILED ({record['error']})")
    write_json(cell, record)


def memorization_strip(samples: torch.Tensor, train_images: torch.Tensor, mem, n: int = 8):
    """Top row: the ``n`` samples closest to the training set; bottom row: their nearest training images."""
    from .images import array_to_pil, auto_scale, make_grid

    worst = mem.worst(n)
    pairs = torch.cat([samples[torch.as_tensor(worst)], train_images[torch.as_tensor(mem.sample_nn_index[worst])]])
    grid = make_grid(pairs, ncols=len(worst))
    return array_to_pil(grid, auto_scale(samples.shape[2], target=48))


def collect(out_dir: Path) -> dict:
    """Aggregate the cells into mean ± std per model and metric."""
    out_dir = Path(out_dir)
    meta = read_json(out_dir / "compare.json")
    cells = out_dir / "cells"
    rows: dict[str, dict] = {}
    real_runs = []
    for f in sorted((cells / "_real").glob("fold*.json")):
        real_runs += read_json(f)["runs"]
    keys = sorted({k for r in real_runs for k in r})
    rows[REAL_ROW] = {
        "metrics": {k: summarize([r.get(k) for r in real_runs]) for k in keys},
        "n": len(real_runs),
        "errors": [],
    }
    for name in meta["models"]:
        records = [read_json(f) for f in sorted((cells / name).glob("fold*.json"))] if (cells / name).is_dir() else []
        ok = [r for r in records if "metrics" in r]
        keys = sorted({k for r in ok for k in r["metrics"]})
        rows[name] = {
            "metrics": {k: summarize([r["metrics"].get(k) for r in ok]) for k in keys},
            "n": len(ok),
            "errors": [f"fold {r['fold']}: {r['error']}" for r in records if "error" in r],
            "intervals": _mean_half_widths([r.get("intervals", {}) for r in ok]),
        }
    evaluators = [read_json(f) for f in sorted((cells / "_evaluator").glob("fold*.json"))]
    accs = [e["test_accuracy"] for e in evaluators if e.get("test_accuracy") is not None]
    data = load_dataset(meta["data"], size=meta.get("size"))
    noise_id = uniform_noise_intrinsic_dimension(data.image_shape, seed=meta["seed"])
    from .metrics.evaluate import unit_flat
    from .metrics.intrinsic_dim import mle_intrinsic_dimension, pca_dimension

    real_sub = data.images[torch.randperm(len(data), generator=torch.Generator().manual_seed(meta["seed"]))[:1000]]
    real_id = {
        "id_mle": mle_intrinsic_dimension(unit_flat(real_sub)),
        "id_pca95": float(pca_dimension(unit_flat(real_sub))),
    }
    return {
        **meta,
        "rows": rows,
        "evaluator": {
            "accuracy": summarize(accs) if accs else None,
            "describe": evaluators[0]["describe"] if evaluators else "",
            "kind": evaluators[0]["kind"] if evaluators else None,
            "spaces": {
                space: {
                    "accuracy": summarize(
                        [
                            e["spaces"][space]["test_accuracy"]
                            for e in evaluators
                            if e.get("spaces", {}).get(space, {}).get("test_accuracy") is not None
                        ]
                    ),
                    "describe": evaluators[0]["spaces"][space]["describe"],
                }
                for space in (evaluators[0].get("spaces", {}) if evaluators else {})
            },
        },
        "intrinsic_dimension": {"real": real_id, "uniform noise": noise_id, "pixels": int(np.prod(data.image_shape))},
    }


#: metrics ranked in every feature space (the table flags pairs whose order flips between spaces)
RANKED = ("fd", "kid", "precision", "recall", "coverage")


def _mean_half_widths(intervals: list[dict]) -> dict[str, float]:
    """Mean half-width over folds of each metric's bootstrap interval."""
    keys = sorted({k for ci in intervals for k in ci})
    return {k: float(np.mean([(ci[k][1] - ci[k][0]) / 2 for ci in intervals if k in ci])) for k in keys}


def _uncertainty(row: dict, key: str) -> float:
    """Half-width used for ties: the larger of the per-fold bootstrap half-width and the spread over folds."""
    std = row["metrics"][key][1]
    return max(row.get("intervals", {}).get(key, 0.0), 0.0 if std is None or np.isnan(std) else std)


def rankings(summary: dict) -> tuple[list[str], list[str]]:
    """Per ranked metric and feature space, the models best first (``≈``: the difference is
    within the uncertainty of either, a tie), and the pairs of models whose order flips
    between feature spaces. Returns (ranking lines, flip lines)."""
    rows = {name: row for name, row in summary["rows"].items() if name != REAL_ROW and row["n"] > 0}
    suffixes = [""] + sorted({k[len("fd") :] for row in rows.values() for k in row["metrics"] if k.startswith("fd_")})
    primary = next(iter((summary.get("evaluator") or {}).get("spaces") or {"primary": None}))
    ranking_lines, flips = [], []
    for base in RANKED:
        order: dict[str, dict[str, float]] = {}
        for suffix in suffixes:
            key = base + suffix
            have = {
                name: row
                for name, row in rows.items()
                if key in row["metrics"] and not np.isnan(row["metrics"][key][0])
            }
            if len(have) < 2:
                continue
            sign = -1.0 if base in HIGHER_IS_BETTER else 1.0  # sort best first
            names = sorted(have, key=lambda n: sign * have[n]["metrics"][key][0])
            text = names[0]
            for prev, name in zip(names, names[1:]):
                diff = abs(have[name]["metrics"][key][0] - have[prev]["metrics"][key][0])
                tie = diff < max(_uncertainty(have[name], key), _uncertainty(have[prev], key))
                text += (" ≈ " if tie else " > ") + name
            ranking_lines.append(f"- {base}{' (' + suffix[1:] + ')' if suffix else ''}: {text}")
            order[suffix] = {name: sign * have[name]["metrics"][key][0] for name in have}
        spaces = list(order)
        for i, s1 in enumerate(spaces):
            for s2 in spaces[i + 1 :]:
                common = sorted(set(order[s1]) & set(order[s2]))
                for a_i, a in enumerate(common):
                    for b in common[a_i + 1 :]:
                        d1, d2 = order[s1][a] - order[s1][b], order[s2][a] - order[s2][b]
                        if d1 * d2 < 0:
                            better1, better2 = (a, b) if d1 < 0 else (b, a)
                            flips.append(
                                f"- **{a} vs {b} on {base}**: {better1} ahead in the {s1[1:] or primary} space, {better2} ahead in the {s2[1:]} space"
                            )
    return ranking_lines, flips


def _fmt_cell(stat, fmt: str, half_width: float | None = None) -> str:
    """``mean ± std`` over folds, and the mean 95% bootstrap half-width per fold when there is one."""
    mean, std = stat
    if mean is None or np.isnan(mean):
        return "—"
    ci = "" if half_width is None else f" (CI ±{fmt.format(half_width)})"
    return f"{fmt.format(mean)} ± {fmt.format(std)}{ci}"


def markdown_table(summary: dict) -> str:
    """The results table (mean ± std over folds) with the real-vs-real spread beside it."""
    lines = [
        f"**{summary['data']}**, {summary['folds']}-fold comparison, {summary['n_samples']} samples per model and fold against the fold's held-out images; "
        "cells: mean ± std over folds (CI ±: mean half-width of the 95% bootstrap interval over the samples within a fold)"
    ]
    ev = summary.get("evaluator") or {}
    if ev.get("spaces"):
        for space, info in ev["spaces"].items():
            acc = info.get("accuracy") or (float("nan"), float("nan"))
            lines.append(
                f"Feature space {space}: {info['describe'].split(', test accuracy')[0]}; held-out accuracy {100 * acc[0]:.2f} ± {100 * acc[1]:.2f}%."
                + (" BELOW THE ACCURACY FLOOR: its metrics are not trustworthy." if "BELOW" in info["describe"] else "")
            )
    elif ev.get("accuracy"):
        lines.append(
            f"Evaluator: {ev['describe'].split(', test accuracy')[0]}; held-out accuracy {100 * ev['accuracy'][0]:.2f} ± {100 * ev['accuracy'][1]:.2f}%."
        )
    elif ev.get("describe"):
        lines.append(f"Evaluator: {ev['describe']}.")
    lines.append("")
    columns = [c for c in TABLE_COLUMNS if any(c[0] in row["metrics"] for row in summary["rows"].values())]
    header = ["model"] + [title for _, title, _ in columns]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for name, row in summary["rows"].items():
        label = f"{name} (train subset, {row['n']} draws)" if name == REAL_ROW else name
        cells = [
            _fmt_cell(row["metrics"].get(key, (None, None)), fmt, row.get("intervals", {}).get(key))
            for key, _, fmt in columns
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    real = summary["rows"][REAL_ROW]["metrics"]
    if "fd" in real:
        lines.append("")
        lines.append(
            f"Real-vs-real spread (noise floor): FD {real['fd'][0]:.2f} ± {real['fd'][1]:.2f}, "
            + (
                f"FID Inception {real['fid_inception'][0]:.2f} ± {real['fid_inception'][1]:.2f}, "
                if "fid_inception" in real
                else ""
            )
            + f"precision {real['precision'][0]:.3f} ± {real['precision'][1]:.3f}, "
            f"recall {real['recall'][0]:.3f} ± {real['recall'][1]:.3f} between {summary['n_samples']} real training images and the held-out fold "
            f"({summary['folds']} folds × {len(REAL_SEEDS)} seeds). Differences smaller than this spread are noise."
            + (
                f" Pixel values of real images: TV distance {real['pixel_tv'][0]:.3f}, {100 * real['zero_share'][0]:.1f}% exactly 0, {100 * real['faint_share'][0]:.2f}% faint (1-7)."
                if "pixel_tv" in real
                else ""
            )
        )
    idd = summary.get("intrinsic_dimension")
    if idd:
        lines.append(
            f"Intrinsic dimension (MLE / PCA-95%) of {idd['pixels']}-pixel images: real data {idd['real']['id_mle']:.1f} / {idd['real']['id_pca95']:.0f}, "
            f"uniform noise {idd['uniform noise']['id_mle']:.1f} / {idd['uniform noise']['id_pca95']:.0f}."
        )
    ranking_lines, flips = rankings(summary)
    if ranking_lines:
        lines += [
            "",
            "Rankings, best first (≈: a tie — the difference is within the 95% bootstrap interval over the samples or the spread over folds):",
        ] + ranking_lines
    if flips:
        lines += [
            "",
            "**Ranking flips between feature spaces** (a ranking that holds in one network's features only is not an honest ranking):",
        ] + flips
    elif ranking_lines:
        lines += ["", "No ranking flips between feature spaces."]
    errors = [f"- {name}: {e}" for name, row in summary["rows"].items() for e in row["errors"]]
    if errors:
        lines += ["", "Failures:"] + errors
    return "\n".join(lines)
