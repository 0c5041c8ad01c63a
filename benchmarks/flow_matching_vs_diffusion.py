"""Flow matching against diffusion at the same CPU budget, and few-step sampling, in one run.

    OMP_NUM_THREADS=1 python benchmarks/flow_matching_vs_diffusion.py               # 4 CPU-minutes each
    OMP_NUM_THREADS=1 python benchmarks/flow_matching_vs_diffusion.py --budget 2    # shorter
    OMP_NUM_THREADS=1 python benchmarks/flow_matching_vs_diffusion.py --data mnist10k --budget 15

Both families are trained on the train split of ``--data`` (``digits``: the bundled 8x8 digits;
``mnist10k``: ``../shared/data/mnist10k.npz``; both ``.split(0.2, 0)``),
sequentially, on one thread, with the quick preset's network and recipe, for the same
*CPU time* (``--budget`` minutes of process CPU time, not wall-clock, so that other work on
the machine does not tilt the comparison): each family's CPU seconds per optimiser step
are measured first (two short fits, 10 and 60 steps, the difference over 50 steps), and
the real fit gets ``max_steps = budget / seconds-per-step`` (the learning-rate schedule then
ends where training ends). Then 1,000 samples per setting (seed 0) are scored with genlab's
evaluator network (Fréchet distance against the held-out images):

* flow matching: Euler 100 steps, Heun 50 steps (100 network calls), Euler 10, Heun 10
  (20 calls), Heun 5 (10 calls), and DPM-Solver++(2M) on the rectified-flow log-SNR grid
  with 100, 20, 10 and 8 steps (one call each);
* diffusion: DPM-Solver++(2M) 100, 10 and 5 steps (one call each).

On mnist10k (28x28: each network call costs about twelve times as much) a shorter list:
flow matching Heun 50, Euler 10, Heun 5 and DPM-Solver++ 10; diffusion DPM-Solver++ 100 and 10.

Prints the table and the ratios (few-step FD over the same solver's 100-call FD; flow
matching over diffusion at 100 and 10 network calls) and writes
``benchmarks/results/flow-matching-vs-diffusion-DATA.json`` (and ``.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_split, table, threads  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.metrics.evaluate import real_data_metrics, sample_metrics  # noqa: E402
from genlab.metrics.evaluator import get_evaluator  # noqa: E402
from genlab.models import make_model  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ["family", "sampler", "steps", "network_calls", "fd", "precision", "recall", "sample_cpu_s"]
#: (solver, steps) per family and dataset; 28x28 calls cost ~12x as much, hence the shorter list
SETTINGS = {
    "digits": {
        "flow-matching": [
            ("euler", 100),
            ("heun", 50),
            ("euler", 10),
            ("heun", 10),
            ("heun", 5),
            ("dpm++", 100),
            ("dpm++", 20),
            ("dpm++", 10),
            ("dpm++", 8),
        ],
        "diffusion": [("dpm++", 100), ("dpm++", 10), ("dpm++", 5)],
    },
    "mnist10k": {
        "flow-matching": [("heun", 50), ("euler", 10), ("heun", 5), ("dpm++", 10)],
        "diffusion": [("dpm++", 100), ("dpm++", 10)],
    },
}
CALLS_PER_STEP = {"euler": 1, "heun": 2, "dpm++": 1}  # dpm++ is a multistep solver: one call per step


def make(family: str, max_steps: int):
    return make_model(family, preset="quick", device="cpu", random_state=0, max_steps=max_steps, sample_every=None)


def cpu_fit(family: str, images: torch.Tensor, max_steps: int):
    """(fitted model, process CPU seconds of its fit)."""
    model = make(family, max_steps)
    start = time.process_time()
    model.fit(images)
    return model, time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", choices=sorted(SETTINGS))
    ap.add_argument("--budget", type=float, default=4.0, help="CPU minutes of training per family")
    ap.add_argument("--n-samples", type=int, default=1000)
    args = ap.parse_args()
    set_quiet(True)
    train, test = load_dataset("digits").split(0.2, 0) if args.data == "digits" else load_split(args.data)
    settings = SETTINGS[args.data]
    evaluator = get_evaluator(train, test, seed=0)
    rows, fits = [], {}
    with threads(1):
        for family in settings:
            _, short = cpu_fit(family, train.images, 10)
            _, longer = cpu_fit(family, train.images, 60)
            per_step = max(longer - short, 1e-3) / 50
            steps = max(1, int(args.budget * 60 / per_step))
            model, fit_cpu = cpu_fit(family, train.images, steps)
            fits[family] = {
                "cpu_s_per_step": per_step,
                "max_steps": steps,
                "fit_cpu_s": fit_cpu,
                "steps": model.training_summary_["steps"],
                "resolved": model.resolved_params_,
            }
            print(f"{family}: {per_step:.3f} CPU-s/step -> {steps} steps, fit {fit_cpu:.0f} CPU-s", flush=True)
            for sampler, n_steps in settings[family]:
                start = time.process_time()
                samples = model.sample(args.n_samples, seed=0, sampler=sampler, steps=n_steps)
                cpu = time.process_time() - start
                m = sample_metrics(samples, train, test, evaluator).metrics
                rows.append(
                    {
                        "family": family,
                        "sampler": sampler,
                        "steps": n_steps,
                        "network_calls": n_steps * CALLS_PER_STEP[sampler],
                        "fd": m["fd"],
                        "precision": m["precision"],
                        "recall": m["recall"],
                        "sample_cpu_s": cpu,
                    }
                )
                print(f"  {sampler} {n_steps}: FD {m['fd']:.2f}", flush=True)
        real = real_data_metrics(train, test, evaluator, n_samples=args.n_samples, seed=0)
    rows.append(
        {"family": "real (train subset)", "fd": real["fd"], "precision": real["precision"], "recall": real["recall"]}
    )
    print()
    print(table(rows, COLUMNS))
    fd = {(r["family"], r.get("sampler"), r.get("steps")): r["fd"] for r in rows}
    fm, df = "flow-matching", "diffusion"
    pairs = {
        "fm euler10 / fm euler100": ((fm, "euler", 10), (fm, "euler", 100)),
        "fm heun5 / fm heun50": ((fm, "heun", 5), (fm, "heun", 50)),
        "fm heun10 / fm heun50": ((fm, "heun", 10), (fm, "heun", 50)),
        "fm euler10 / fm heun50": ((fm, "euler", 10), (fm, "heun", 50)),
        "fm dpm++10 / fm dpm++100": ((fm, "dpm++", 10), (fm, "dpm++", 100)),
        "fm dpm++10 / fm heun50": ((fm, "dpm++", 10), (fm, "heun", 50)),
        "fm dpm++8 / fm heun50": ((fm, "dpm++", 8), (fm, "heun", 50)),
        "diffusion dpm++10 / dpm++100": ((df, "dpm++", 10), (df, "dpm++", 100)),
        "fm heun50 / diffusion dpm++100 (100 calls)": ((fm, "heun", 50), (df, "dpm++", 100)),
        "fm heun5 / diffusion dpm++10 (10 calls)": ((fm, "heun", 5), (df, "dpm++", 10)),
        "fm euler10 / diffusion dpm++10 (10 calls)": ((fm, "euler", 10), (df, "dpm++", 10)),
        "fm dpm++10 / diffusion dpm++10 (10 calls)": ((fm, "dpm++", 10), (df, "dpm++", 10)),
    }
    # only the ratios whose two rows this run's settings produced
    ratios = {k: fd[a] / fd[b] for k, (a, b) in pairs.items() if a in fd and b in fd}
    print()
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    out = RESULTS / f"flow-matching-vs-diffusion-{args.data}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": "OMP_NUM_THREADS=1 python benchmarks/flow_matching_vs_diffusion.py "
                + " ".join(sys.argv[1:]),
                "budget_cpu_min": args.budget,
                "n_samples": args.n_samples,
                "torch": torch.__version__,
                "date": time.strftime("%Y-%m-%d"),
                "evaluator": evaluator.describe(),
                "fits": fits,
                "rows": rows,
                "ratios": ratios,
            },
            indent=1,
        )
    )
    command = "OMP_NUM_THREADS=1 python benchmarks/flow_matching_vs_diffusion.py " + " ".join(sys.argv[1:])
    budgets = ", ".join(f"{f} {v['steps']} steps / {v['fit_cpu_s']:.0f} CPU-s" for f, v in fits.items())
    out.with_suffix(".md").write_text(
        f"`{command}`\n\nTraining: {budgets}. {args.n_samples} samples per row, seed 0.\n\n"
        + table(rows, COLUMNS)
        + "\n\n"
        + "\n".join(f"- {k}: {v:.3f}" for k, v in ratios.items())
        + "\n"
    )
    print(f"\nwrote {out} and {out.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
