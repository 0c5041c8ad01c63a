"""Pixel-value statistics, KID and bootstrap intervals against float64 NumPy oracles."""

import numpy as np
import pytest
import torch

from genlab.errors import GenlabError
from genlab.metrics.frechet import frechet_distance
from genlab.metrics.kid import _mmd2_from_counts, bootstrap_intervals, kernel_distance, mmd2_unbiased, polynomial_kernel
from genlab.metrics.pixels import pixel_histogram, pixel_metrics, total_variation
from genlab.metrics.prdc import prdc


def _kid_reference(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² formula term by term, float64, explicit i != j sums."""
    d = x.shape[1]
    m, n = len(x), len(y)
    sxx = sum((x[i] @ x[j] / d + 1) ** 3 for i in range(m) for j in range(m) if i != j)
    syy = sum((y[i] @ y[j] / d + 1) ** 3 for i in range(n) for j in range(n) if i != j)
    sxy = sum((x[i] @ y[j] / d + 1) ** 3 for i in range(m) for j in range(n))
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)


def test_pixel_metrics_match_numpy():
    g = np.random.default_rng(0)
    a = g.choice([0, 0, 0, 3, 200, 255], size=(50, 1, 6, 6)).astype(np.uint8)
    b = g.choice([0, 0, 5, 128, 255], size=(40, 1, 6, 6)).astype(np.uint8)
    pa = np.bincount(a.ravel(), minlength=256) / a.size
    pb = np.bincount(b.ravel(), minlength=256) / b.size
    out = pixel_metrics(torch.from_numpy(a), torch.from_numpy(b))
    assert out["pixel_tv"] == pytest.approx(0.5 * np.abs(pa - pb).sum(), abs=1e-12)
    assert out["zero_share"] == pytest.approx((a == 0).mean())
    assert out["faint_share"] == pytest.approx(((a >= 1) & (a <= 7)).mean())
    assert pixel_metrics(torch.from_numpy(a), torch.from_numpy(a))["pixel_tv"] == 0.0
    assert total_variation(np.eye(256)[0], np.eye(256)[1]) == 1.0
    assert pixel_histogram(torch.from_numpy(b)).sum() == pytest.approx(1.0)
    with pytest.raises(GenlabError, match="uint8"):
        pixel_metrics(torch.zeros(2, 1, 2, 2), torch.from_numpy(b))


def test_kid_matches_the_formula_in_float64():
    g = np.random.default_rng(1)
    x = g.normal(size=(23, 5)).astype(np.float32)
    y = (g.normal(size=(17, 5)) * 1.3 + 0.2).astype(np.float32)
    ref = _kid_reference(x.astype(np.float64), y.astype(np.float64))
    assert mmd2_unbiased(x, y) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    # one subset of the whole sets is the plain estimate (its spread is 0)
    out = kernel_distance(x, y, n_subsets=1, subset_size=17)
    assert set(out) == {"kid", "kid_std"} and out["kid_std"] == 0.0
    # unbiased: for equal distributions the mean over many draws is ~0, and can be negative
    vals = [mmd2_unbiased(g.normal(size=(30, 4)), g.normal(size=(30, 4))) for _ in range(200)]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(len(vals)) and min(vals) < 0
    with pytest.raises(GenlabError, match="subset_size"):
        kernel_distance(x, y, subset_size=100)


def test_mmd_of_a_resampled_multiset_from_counts():
    """The count formula equals the unbiased formula applied to the expanded resample (duplicates kept)."""
    g = np.random.default_rng(2)
    x, y = g.normal(size=(9, 3)), g.normal(size=(7, 3)) + 0.5
    ix, iy = g.integers(0, 9, size=9), g.integers(0, 7, size=7)
    wx = torch.from_numpy(np.bincount(ix, minlength=9).astype(np.float64))[None]
    wy = torch.from_numpy(np.bincount(iy, minlength=7).astype(np.float64))[None]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    got = _mmd2_from_counts(polynomial_kernel(xt, xt), polynomial_kernel(yt, yt), polynomial_kernel(xt, yt), wx, wy)
    assert float(got[0]) == pytest.approx(_kid_reference(x[ix], y[iy]), rel=1e-9)


def test_bootstrap_intervals_hold_the_estimate_and_shrink_with_n():
    g = np.random.default_rng(3)
    widths = []
    for n in (100, 800):
        x, y = g.normal(size=(n, 8)), g.normal(size=(n, 8)) + 0.2
        ind: dict = {}
        point = prdc(x, y, k=5, indicators=ind)
        point["fd"] = frechet_distance(x, y)
        ci = bootstrap_intervals(x, y, ind, k=5, point=point, seed=0)
        assert set(ci) == {"fd", "kid", "precision", "recall", "density", "coverage"}
        for name, (lo, hi) in ci.items():
            if name in point:
                assert lo <= point[name] <= hi, name
        widths.append({name: hi - lo for name, (lo, hi) in ci.items()})
    # about 1/sqrt(n): 8x the samples, under half the width
    for name in ("fd", "precision", "recall", "coverage", "kid"):
        assert widths[1][name] < 0.6 * widths[0][name], name
    # the precision interval is the bootstrap of the mean of per-fake indicators: about ±2 binomial sd
    p = point["precision"]
    half = (ci["precision"][1] - ci["precision"][0]) / 2
    assert half == pytest.approx(1.96 * np.sqrt(p * (1 - p) / 800), rel=0.3)


def _row(metrics: dict, intervals: dict | None = None) -> dict:
    return {"metrics": {k: (v, 0.0) for k, v in metrics.items()}, "n": 2, "errors": [], "intervals": intervals or {}}


def test_compare_flags_ranking_flips_between_feature_spaces_and_ties():
    from genlab.compare import REAL_ROW, markdown_table, rankings

    summary = {
        "data": "digits",
        "folds": 2,
        "n_samples": 100,
        "evaluator": {
            "spaces": {
                "conv": {"describe": "conv", "accuracy": (0.98, 0.0)},
                "mlp": {"describe": "mlp", "accuracy": (0.95, 0.0)},
            }
        },
        "rows": {
            REAL_ROW: _row(
                {
                    "fd": 1.0,
                    "fd_mlp": 1.0,
                    "precision": 0.95,
                    "recall": 0.95,
                    "pixel_tv": 0.01,
                    "zero_share": 0.8,
                    "faint_share": 0.005,
                }
            ),
            "a": _row(
                {"fd": 10.0, "fd_mlp": 30.0, "precision": 0.90, "precision_mlp": 0.90},
                {"fd": 1.0, "fd_mlp": 1.0, "precision": 0.03},
            ),
            "b": _row(
                {"fd": 20.0, "fd_mlp": 20.0, "precision": 0.91, "precision_mlp": 0.91},
                {"fd": 1.0, "fd_mlp": 1.0, "precision": 0.03},
            ),
        },
    }
    lines, flips = rankings(summary)
    assert "- fd: a > b" in lines and "- fd (mlp): b > a" in lines
    assert "- precision: b ≈ a" in lines  # 0.01 apart, interval ±0.03: a tie
    assert (
        len(flips) == 1
        and "a vs b on fd" in flips[0]
        and "a ahead in the conv space" in flips[0]
        and "b ahead in the mlp space" in flips[0]
    )
    table = markdown_table(summary)
    assert (
        "Ranking flips between feature spaces" in table
        and "FD (mlp) ↓" in table
        and "(CI ±1.00)" in table
        and "0.50% faint" in table
    )
