"""genlab's GMM and KDE against scikit-learn (and an exact NumPy float64 KDE), in one run.

    python benchmarks/classical.py                       # digits + mnist10k, 1 thread and all threads
    python benchmarks/classical.py --datasets digits     # seconds

Fit on the shared train split, score the test split. Prints markdown tables of times,
ratios (reference time / genlab time: >1 means genlab is faster) and held-out
log-likelihoods (nats per image, genlab's dequantisation convention applied to both).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KernelDensity as SkKDE

sys.path.insert(0, str(Path(__file__).resolve().parent))
import genlab  # noqa: E402
from _common import load_shared, table, threads, timed  # noqa: E402
from genlab.likelihood import dequantize, score_generator  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402

warnings.simplefilter("ignore")
set_quiet(True)


def flat(images, generator, dtype=torch.float32):
    return dequantize(images, generator, dtype=dtype).reshape(len(images), -1)


def numpy_kde(Q: np.ndarray, T: np.ndarray, h: float, chunk: int = 500) -> np.ndarray:
    """Exact reference: float64 NumPy distances + SciPy logsumexp."""
    t2 = (T * T).sum(1)
    out = []
    for s in range(0, len(Q), chunk):
        q = Q[s : s + chunk]
        d2 = np.maximum((q * q).sum(1)[:, None] + t2[None] - 2.0 * q @ T.T, 0.0)
        out.append(logsumexp(-d2 / (2 * h * h), axis=1))
    d = T.shape[1]
    return np.concatenate(out) - np.log(len(T)) - 0.5 * d * np.log(2 * np.pi * h * h)


def numpy_kde_cv(X: np.ndarray, grid, folds) -> np.ndarray:
    scores = np.zeros((len(grid), len(folds)))
    for j, (tr, te) in enumerate(folds):
        T, Q = X[tr], X[te]
        t2 = (T * T).sum(1)
        d2 = np.maximum((Q * Q).sum(1)[:, None] + t2[None] - 2.0 * Q @ T.T, 0.0)
        for i, h in enumerate(grid):
            ll = logsumexp(-d2 / (2 * h * h), axis=1) - np.log(len(T)) - 0.5 * X.shape[1] * np.log(2 * np.pi * h * h)
            scores[i, j] = ll.mean()
    return scores


def bench_kde(name, train, test, thread_settings, grid, sk_search: bool):
    rows = []
    T32 = flat(train, torch.Generator().manual_seed(0))
    Q32 = flat(test, score_generator())
    T, Q = T32.double().numpy(), Q32.double().numpy()  # the very same points for every implementation
    h = genlab.make_model("kde", bandwidth="cv", bandwidth_grid=grid).fit(train).bandwidth_
    sk_time = sk_scores = None
    sk_search_time = None
    folds = list(KFold(5, shuffle=True, random_state=0).split(T))
    for n_threads in thread_settings:
        label = "all" if n_threads is None else str(n_threads)
        with threads(n_threads):
            model = genlab.make_model("kde", bandwidth=h).fit(train)
            g_time, ours = timed(lambda: model.score_samples(test), repeat=3)
            ref_time, ref = timed(lambda: numpy_kde(Q, T, h), repeat=2)
            if sk_time is None:  # scikit-learn's tree KDE is single-threaded: measure it once
                sk_time, sk_scores = timed(lambda: SkKDE(bandwidth=h).fit(T).score_samples(Q))
            err = np.abs(ours - ref)
            sk_err = np.abs(sk_scores - ref)
            rows.append(
                {
                    "data": name,
                    "task": f"KDE score {len(Q)} test images (h={h:.3g})",
                    "threads": label,
                    "genlab s": g_time,
                    "sklearn s": sk_time,
                    "numpy f64 s": ref_time,
                    "vs sklearn": sk_time / g_time,
                    "vs numpy": ref_time / g_time,
                    "genlab max err (nats)": float(err.max()),
                    "sklearn max err (nats)": float(sk_err.max()),
                    "sklearn share off >1 nat": float((sk_err > 1).mean()),
                }
            )
            search = genlab.make_model("kde", bandwidth="cv", bandwidth_grid=grid, cv=5, random_state=0)
            s_time, _ = timed(lambda: search.fit(train))
            ref_s_time, ref_scores = timed(lambda: numpy_kde_cv(T, grid, folds))
            if sk_search and sk_search_time is None:
                gs = GridSearchCV(SkKDE(), {"bandwidth": list(grid)}, cv=KFold(5, shuffle=True, random_state=0))
                sk_search_time, _ = timed(lambda: gs.fit(T))
                sk_best = gs.best_params_["bandwidth"]
            default_time, default_model = timed(lambda: genlab.make_model("kde", random_state=0).fit(train))
            rows.append(
                {
                    "data": name,
                    "task": f"KDE 5-fold search, {len(grid)} bandwidths",
                    "threads": label,
                    "genlab s": s_time,
                    "sklearn s": sk_search_time if sk_search else "",
                    "numpy f64 s": ref_s_time,
                    "vs sklearn": (sk_search_time / s_time) if sk_search else "",
                    "vs numpy": ref_s_time / s_time,
                    "genlab max err (nats)": float(
                        np.abs(search.cv_results_["mean_test_score"] - ref_scores.mean(1)).max()
                    ),
                    "note": f"best h genlab {search.bandwidth_:.3g} / numpy {grid[int(np.argmax(ref_scores.mean(1)))]:.3g}"
                    + (f" / sklearn {sk_best:.3g}" if sk_search else "")
                    + f"; genlab's default 42-point search: {default_time:.2f} s -> h={default_model.bandwidth_:.3g}",
                }
            )
    return rows


def bench_gmm(name, train, test, thread_settings, configs):
    rows = []
    T = flat(train, torch.Generator().manual_seed(0), torch.float64).numpy()
    Q = flat(test, score_generator(), torch.float64).numpy()
    for n_threads, k, seeds in configs:
        if n_threads not in thread_settings:
            continue
        label = "all" if n_threads is None else str(n_threads)
        g_times, s_times, g_ll, s_ll, g_med, s_med, g_it, s_it = [], [], [], [], [], [], [], []
        with threads(n_threads):
            for seed in seeds:
                t, model = timed(lambda: genlab.make_model("gmm", n_components=k, random_state=seed).fit(train))
                ll = model.score_samples(test)
                g_times.append(t), g_ll.append(ll.mean()), g_med.append(np.median(ll)), g_it.append(model.n_iter_)
                t, sk = timed(
                    lambda: SkGMM(k, covariance_type="full", reg_covar=1e-6, tol=1e-3, random_state=seed).fit(T)
                )
                ll = sk.score_samples(Q)
                s_times.append(t), s_ll.append(ll.mean()), s_med.append(np.median(ll)), s_it.append(sk.n_iter_)
        rows.append(
            {
                "data": name,
                "task": f"GMM fit, {k} full-covariance components, seeds {list(seeds)}",
                "threads": label,
                "genlab s": float(np.median(g_times)),
                "sklearn s": float(np.median(s_times)),
                "vs sklearn": float(np.median(np.array(s_times) / np.array(g_times))),
                "EM iterations genlab / sklearn": f"{g_it} / {s_it}",
                "held-out LL mean genlab": float(np.mean(g_ll)),
                "held-out LL mean sklearn": float(np.mean(s_ll)),
                "held-out LL median genlab": float(np.mean(g_med)),
                "held-out LL median sklearn": float(np.mean(s_med)),
                "per-seed means genlab / sklearn": f"{[round(v) for v in g_ll]} / {[round(v) for v in s_ll]}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="digits,mnist10k")
    parser.add_argument("--threads", default="1,all", help="comma list of thread counts ('all' = every core)")
    parser.add_argument("--no-sklearn-search", action="store_true", help="skip scikit-learn's (slow) GridSearchCV")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    thread_settings = [None if t == "all" else int(t) for t in args.threads.split(",")]
    print(f"genlab {genlab.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads available")
    all_rows = []
    start = time.perf_counter()
    for name in args.datasets.split(","):
        train, test, _, _ = load_shared(name)
        if name == "digits":
            grid = np.geomspace(0.02, 0.3, 8)
            gmm_configs = [(t, k, range(5)) for t in thread_settings for k in (10, 50)]
        else:
            grid = np.geomspace(0.08, 0.4, 4)
            gmm_configs = [(None, 10, range(3)), (None, 50, range(1)), (1, 10, range(1))]
        kde_rows = bench_kde(name, train, test, thread_settings, grid, not args.no_sklearn_search)
        print(
            table(
                kde_rows,
                [
                    "data",
                    "task",
                    "threads",
                    "genlab s",
                    "sklearn s",
                    "numpy f64 s",
                    "vs sklearn",
                    "vs numpy",
                    "genlab max err (nats)",
                    "sklearn max err (nats)",
                    "sklearn share off >1 nat",
                    "note",
                ],
            ),
            flush=True,
        )
        gmm_rows = bench_gmm(name, train, test, thread_settings, gmm_configs)
        print(
            table(
                gmm_rows,
                [
                    "data",
                    "task",
                    "threads",
                    "genlab s",
                    "sklearn s",
                    "vs sklearn",
                    "EM iterations genlab / sklearn",
                    "held-out LL mean genlab",
                    "held-out LL mean sklearn",
                    "held-out LL median genlab",
                    "held-out LL median sklearn",
                    "per-seed means genlab / sklearn",
                ],
            ),
            flush=True,
        )
        all_rows += kde_rows + gmm_rows
    print(f"\ntotal benchmark time {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=2))


if __name__ == "__main__":
    main()
