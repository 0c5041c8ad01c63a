"""Precision, recall, density and coverage of generated samples from k-NN balls.

Both pairs of metrics approximate a set's support by the union of balls around its
points, each ball reaching to the point's k-th nearest neighbour in the same set (the
point itself excluded; an exact duplicate of it counts, at distance 0). With real
points X (N, F), fake points Y (M, F), radii r_k(x) and r_k(y), and ``d`` the L2
distance, a point is inside a ball when ``d <= radius`` (closed balls):

* precision = (1/M) Σ_j 1[∃ i : d(y_j, x_i) <= r_k(x_i)]   — fakes that look real
* recall    = (1/N) Σ_i 1[∃ j : d(x_i, y_j) <= r_k(y_j)]   — reals the fakes reach

  (Kynkäänniemi, Karras, Laine, Lehtinen & Aila 2019, "Improved precision and recall
  metric for assessing generative models", NeurIPS.)

* density   = 1/(kM) Σ_j Σ_i 1[d(y_j, x_i) <= r_k(x_i)]     — ~1 when fakes are
  distributed like reals, > 1 when they crowd dense real regions
* coverage  = (1/N) Σ_i 1[min_j d(x_i, y_j) <= r_k(x_i)]    — real balls holding a fake

  (Naeem, Oh, Uh, Choi & Yoo 2020, "Reliable fidelity and diversity metrics for
  generative models", ICML.) Density and coverage use only real balls, so they are
  robust to fake outliers that inflate fake radii.

All distances are exact (float32 GEMM, float64 re-check of every comparison within
rounding distance of a radius; see ``_neighbours``); the real x fake matrix is
computed once, in row chunks, for all four numbers. The reference implementation of
Naeem et al. compares with ``<``; the difference matters only for exact ties.
"""

from __future__ import annotations

from typing import Any

import torch

from ._neighbours import as_features, check_k, check_same_width, knn, prepare, radius_matches


def _validated(real: Any, fake: Any, k: Any, *, fake_needs_radius: bool) -> tuple[int, torch.Tensor, torch.Tensor]:
    k = check_k(k)
    why = f"the k={k}-th nearest neighbour of each row, itself excluded"
    real_t = as_features(real, "real", min_rows=k + 1, why=why)
    fake_t = as_features(fake, "fake", min_rows=k + 1 if fake_needs_radius else 1, why=why, device=real_t.device)
    check_same_width(real_t, fake_t, "real", "fake")
    return k, real_t, fake_t


def _compute(
    real: torch.Tensor, fake: torch.Tensor, k: int, with_recall: bool, indicators: dict | None = None
) -> dict[str, float]:
    real_rows, fake_rows = prepare(real, fake, names=("real", "fake"))
    real_r2 = knn(real_rows, real_rows, k, exclude_self=True)[0][:, -1]
    fake_r2 = knn(fake_rows, fake_rows, k, exclude_self=True)[0][:, -1] if with_recall else None
    matches = radius_matches(real_rows, fake_rows, real_r2, fake_r2)
    out = {
        "precision": float((matches.fake_count > 0).double().mean()),
        "density": float(matches.fake_count.double().sum() / (k * fake_rows.n)),
        "coverage": float(matches.real_covered.double().mean()),
    }
    if with_recall:
        out["recall"] = float(matches.real_in_fake.double().mean())
    if indicators is not None:  # per-point values, for bootstrap intervals
        indicators["fake_count"] = matches.fake_count.cpu().numpy()
        indicators["real_covered"] = matches.real_covered.cpu().numpy()
        if with_recall:
            indicators["real_in_fake"] = matches.real_in_fake.cpu().numpy()
    return out


def prdc(real: Any, fake: Any, k: int = 5, *, indicators: dict | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` (M, F) against ``real`` (N, F).

    Needs N > k and M > k. Returns ``{"precision", "recall", "density", "coverage"}``:
    precision, recall and coverage in [0, 1], density in [0, N/k]. Features can be
    anything in which L2 distance is meaningful (evaluator features, or flattened pixels).
    A dict passed as ``indicators`` receives the per-point values the four are means of:
    ``fake_count`` (M,) real balls holding each fake, ``real_in_fake`` (N,) and
    ``real_covered`` (N,) booleans (for :func:`genlab.metrics.kid.bootstrap_intervals`).
    """
    k, real_t, fake_t = _validated(real, fake, k, fake_needs_radius=True)
    out = _compute(real_t, fake_t, k, with_recall=True, indicators=indicators)
    return {name: out[name] for name in ("precision", "recall", "density", "coverage")}


def precision_recall(real: Any, fake: Any, k: int = 5) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``fake`` (M, F)
    against ``real`` (N, F) with k-NN radius balls; needs N > k and M > k.

    Returns ``{"precision", "recall"}``, each in [0, 1].
    """
    out = prdc(real, fake, k)
    return {"precision": out["precision"], "recall": out["recall"]}


def density_coverage(real: Any, fake: Any, k: int = 5) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020) of ``fake`` (M, F) against ``real``
    (N, F); needs N > k (no fake radii are computed, so any M >= 1 works).

    Returns ``{"density", "coverage"}``: density >= 0 (1 for matching distributions),
    coverage in [0, 1].
    """
    k, real_t, fake_t = _validated(real, fake, k, fake_needs_radius=False)
    out = _compute(real_t, fake_t, k, with_recall=False)
    return {"density": out["density"], "coverage": out["coverage"]}
