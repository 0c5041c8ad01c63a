"""Sample quality of genlab's diffusion model (quick preset) and of its samplers, in one run.

    python benchmarks/diffusion_quality.py --data digits                 # minutes
    python benchmarks/diffusion_quality.py --data mnist10k               # ~30 min on one core
    python benchmarks/diffusion_quality.py --data mnist10k --condition none

Trains ``diffusion`` (class-conditional by default) on the train split, or reuses the model
in ``--run-dir``, then evaluates 1,000 samples against the held-out images with the
dataset's evaluator network (Fréchet distance, precision/recall, copies of training
images, share of samples of the requested class):

* at the default sampler (DPM-Solver++(2M), 20 steps) and guidance, and at other guidance
  scales (``--guidance``; 0 = the unconditional model the label dropout trained);
* DDIM with 50 steps against 1,000-step ancestral DDPM sampling (target: DDIM-50's Fréchet
  distance within 10 % of DDPM-1000's), with sampling images/s for each.

Writes ``benchmarks/results/diffusion-quality-DATA-CONDITION.json``. A reused text-conditional
run (``--run-dir`` of benchmarks/text_to_image.py) is sampled without prompts: its
unconditional model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, table  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.metrics.evaluate import real_data_metrics, sample_metrics  # noqa: E402
from genlab.metrics.evaluator import get_evaluator  # noqa: E402
from genlab.models import GenerativeModel, make_model  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SPECS = {"digits": "digits", "mnist10k": f"npz:{SHARED_DATA / 'mnist10k.npz'}"}
COLUMNS = ["setting", "fd", "precision", "recall", "coverage", "conditional_accuracy", "copies", "images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(SPECS), default="digits")
    parser.add_argument("--condition", choices=["label", "none"], default="label")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="Model folder (default /tmp/genlab-bench/diffusion-DATA-CONDITION); reused when it holds a model.",
    )
    parser.add_argument(
        "--guidance",
        type=float,
        nargs="*",
        default=[0.0, 1.0, 3.0],
        help="Extra guidance scales to evaluate (label models).",
    )
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--skip-ddpm", action="store_true", help="Leave out the slow 1,000-step ancestral sampler.")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_quiet(True)

    train, test = load_dataset(SPECS[args.data]).split(0.2, 0)
    run_dir = args.run_dir or Path("/tmp/genlab-bench") / f"diffusion-{args.data}-{args.condition}"
    fit_seconds = None
    if (run_dir / "config.json").is_file():
        model = GenerativeModel.load(run_dir)
        print(f"reusing the model in {run_dir}")
    else:
        model = make_model(
            "diffusion", condition=args.condition, random_state=0, checkpoint_dir=str(run_dir / "checkpoints")
        )
        start = time.perf_counter()
        model.fit(
            train.images, train.labels if args.condition == "label" else None, resume=(run_dir / "checkpoints").is_dir()
        )
        fit_seconds = time.perf_counter() - start
        model.save(run_dir)
        (run_dir / "fit.json").write_text(json.dumps({"fit_seconds": fit_seconds}))
    evaluator = get_evaluator(train, test, seed=0)
    n = args.n_samples
    requested = torch.arange(n) % int(model.n_classes_) if model.conditional else None

    def evaluate(setting: str, **options) -> dict:
        start = time.perf_counter()
        samples = model.sample(n, y=requested, seed=0, **options)
        seconds = time.perf_counter() - start
        metrics = sample_metrics(
            samples,
            train,
            test,
            evaluator,
            requested_labels=requested if model.conditional and options.get("guidance") != 0.0 else None,
        ).metrics
        row = {"setting": setting, **metrics, "images_per_s": n / seconds, "seconds": seconds}
        print(
            f"  {setting}: FD {metrics['fd']:.2f}, precision {metrics['precision']:.3f}, {n / seconds:.1f} images/s",
            flush=True,
        )
        return row

    rows = [evaluate("default (dpm++ 20 steps, default guidance)")]
    if model.conditional:
        rows += [evaluate(f"guidance {g:g}", guidance=g) for g in args.guidance]
    rows.append(evaluate("ddim 50 steps", sampler="ddim", steps=50))
    if not args.skip_ddpm:
        rows.append(evaluate("ddpm 1000 steps (ancestral)", sampler="ddpm", steps=1000))
    real = real_data_metrics(train, test, evaluator, n_samples=n, seed=0)
    rows.append({"setting": "real vs real (held-out subset)", **real})
    print()
    print(table(rows, COLUMNS))
    fd = {r["setting"]: r["fd"] for r in rows}
    if not args.skip_ddpm:
        ratio = fd["ddim 50 steps"] / fd["ddpm 1000 steps (ancestral)"]
        print(f"\nDDIM-50 / DDPM-1000 Fréchet distance: {ratio:.3f} (target <= 1.10)")
    summary = getattr(model, "training_summary_", None)
    out = RESULTS / f"diffusion-quality-{args.data}-{model.condition}.json"  # a reused run keeps its own condition
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "data": args.data,
                "condition": model.condition,
                "run_dir": str(run_dir),
                "threads": args.threads,
                "torch": torch.__version__,
                "date": time.strftime("%Y-%m-%d"),
                "fit_seconds": fit_seconds,
                "training": summary,
                "evaluator": evaluator.describe(),
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
