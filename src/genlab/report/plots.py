"""Matplotlib figures for the comparison report, rendered to PNG bytes (Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PLOTTED = [
    ("fd", "Fréchet distance (lower is better)"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("density", "density"),
    ("coverage", "coverage"),
    ("copies", "copies of training images (lower is better)"),
]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def metric_bars(rows: dict[str, dict], real_row: str) -> bytes:
    """One panel per metric: mean ± std over folds for every model; the real-data value as a dashed line."""
    names = [n for n in rows if n != real_row]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, (key, title) in zip(axes.ravel(), PLOTTED):
        means = [rows[n]["metrics"].get(key, (np.nan, np.nan))[0] for n in names]
        stds = [rows[n]["metrics"].get(key, (np.nan, np.nan))[1] for n in names]
        ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="#4c72b0")
        real = rows.get(real_row, {}).get("metrics", {}).get(key)
        if real is not None and not np.isnan(real[0]):
            ax.axhline(real[0], color="#dd8452", ls="--", lw=1.5, label="real data")
            ax.axhspan(real[0] - real[1], real[0] + real[1], color="#dd8452", alpha=0.15)
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(title, fontsize=10)
        if key == "fd" and np.nanmax(means + [0]) > 20 * max(np.nanmin([m for m in means if m > 0] or [1]), 1e-9):
            ax.set_yscale("log")
    fig.tight_layout()
    return _png(fig)


def intrinsic_dimension_plot(rows: dict[str, dict], reference: dict, real_row: str) -> bytes:
    """Intrinsic dimension (MLE and PCA-95%) of real images, uniform noise and each model's samples."""
    labels, mle, pca = [], [], []
    for name, vals in (("real images", reference["real"]), ("uniform noise", reference["uniform noise"])):
        labels.append(name)
        mle.append(vals["id_mle"])
        pca.append(vals["id_pca95"])
    for name, row in rows.items():
        if name == real_row or "id_mle" not in row["metrics"]:
            continue
        labels.append(name)
        mle.append(row["metrics"]["id_mle"][0])
        pca.append(row["metrics"]["id_pca95"][0])
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels)), 3.8))
    ax.bar(x - 0.2, mle, 0.4, label="MLE (Levina-Bickel)", color="#4c72b0")
    ax.bar(x + 0.2, pca, 0.4, label="PCA, 95% variance", color="#55a868")
    ax.axhline(reference["pixels"], color="grey", ls=":", label=f"pixel dimensions ({reference['pixels']})")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("dimension")
    ax.set_title("Real images lie on a low-dimensional manifold; uniform noise fills pixel space")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
