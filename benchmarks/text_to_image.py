"""Text-to-image with genlab's diffusion model: do prompts in unseen wording work?

    python benchmarks/text_to_image.py --data digits              # quick preset, minutes
    python benchmarks/text_to_image.py --data mnist10k            # quick preset, ~25 min on one core

Trains ``diffusion`` with ``condition="text"`` on the train split (captions written by
genlab from each digit's label and measured thickness / slant / size), or reuses the run in
``--run-dir``, then measures with the dataset's evaluator network:

* held-out prompts (:data:`genlab.text.captions.HELD_OUT_PROMPTS`, wording that no training
  caption uses, e.g. "the number five, drawn with a heavy pen"): share of samples the
  evaluator classifies as the named digit (target >= 90%);
* "a thick SEVEN" vs "a thin SEVEN" for every digit: mean measured stroke thickness of the
  thick samples over that of the thin ones (target >= 1.3), and the same in held-out
  wording ("the number SEVEN, drawn with a heavy pen" / "..., sketched with a fine-tipped pen");
* sample quality for the held-out images' own captions: Fréchet distance etc. against the
  test images, and the share of samples of the caption's digit.

Prints markdown tables and writes ``benchmarks/results/text-to-image-DATA.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, table  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.metrics.evaluate import sample_metrics  # noqa: E402
from genlab.metrics.evaluator import get_evaluator  # noqa: E402
from genlab.models import GenerativeModel, make_model  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402
from genlab.text.captions import HELD_OUT_TARGETS, NUMBER_WORDS, measure_digit_attributes  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SPECS = {"digits": "digits", "mnist10k": f"npz:{SHARED_DATA / 'mnist10k.npz'}"}


def fit_or_load(run_dir: Path, train, max_steps: int | None, seed: int) -> tuple[GenerativeModel, float | None]:
    if (run_dir / "config.json").is_file():
        print(f"reusing the model in {run_dir}")
        return GenerativeModel.load(run_dir), None
    model = make_model(
        "diffusion",
        condition="text",
        max_steps=max_steps,
        random_state=seed,
        checkpoint_dir=str(run_dir / "checkpoints"),
    )
    start = time.perf_counter()
    # an interrupted benchmark continues from its last checkpoint (the fit time then counts only this part)
    model.fit(train.images, train.captions, resume=(run_dir / "checkpoints").is_dir())
    seconds = time.perf_counter() - start
    model.save(run_dir)
    (run_dir / "fit.json").write_text(
        json.dumps({"fit_seconds": seconds, "training": model.training_summary_}, indent=1)
    )
    return model, seconds


def prompt_metrics(model, evaluator, n_per_prompt: int, guidance: float | None, seed: int) -> tuple[list[dict], dict]:
    rows = []
    for i, (prompt, target) in enumerate(HELD_OUT_TARGETS.items()):
        images = model.sample(n_per_prompt, prompt=prompt, guidance=guidance, seed=seed + i)
        predicted = evaluator.predict(images).numpy()
        attrs = measure_digit_attributes(images)
        rows.append(
            {
                "prompt": prompt,
                "digit": target["digit"],
                "accuracy": float(np.mean(predicted == target["digit"])),
                "thickness_px": float(np.nanmean(attrs["thickness"])),
                "wanted": ", ".join(f"{k}={v}" for k, v in target.items() if k != "digit"),
            }
        )
    # thick vs thin for every digit: in the captions' own words, and in held-out wording
    n = max(10, n_per_prompt // 2)
    wordings = {
        "plain": ("a thick {}", "a thin {}"),
        "held_out": ("the number {}, drawn with a heavy pen", "the number {}, sketched with a fine-tipped pen"),
    }
    ratios: dict[str, list[float]] = {}
    for kind, (thick_text, thin_text) in wordings.items():
        ratios[kind] = []
        for d, word in enumerate(NUMBER_WORDS):
            thick = measure_digit_attributes(
                model.sample(n, prompt=thick_text.format(word), guidance=guidance, seed=seed + 100 + d)
            )["thickness"]
            thin = measure_digit_attributes(
                model.sample(n, prompt=thin_text.format(word), guidance=guidance, seed=seed + 200 + d)
            )["thickness"]
            ratios[kind].append(float(np.nanmean(thick) / np.nanmean(thin)))
    summary = {
        "held_out_accuracy": float(np.mean([r["accuracy"] for r in rows])),
        "held_out_accuracy_min": float(np.min([r["accuracy"] for r in rows])),
        "thick_thin_ratio_per_digit": ratios["plain"],
        "thick_thin_ratio_mean": float(np.mean(ratios["plain"])),
        "held_out_thick_thin_ratio_per_digit": ratios["held_out"],
        "held_out_thick_thin_ratio": float(np.mean(ratios["held_out"])),
    }
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(SPECS), default="digits")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="Where the model is saved / reused (default /tmp/genlab-bench/text-DATA).",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="Training steps (default: the quick preset's).")
    parser.add_argument(
        "--guidance", type=float, nargs="*", default=[None], help="Guidance scales to evaluate (default: the model's)."
    )
    parser.add_argument("--n-per-prompt", type=int, default=100)
    parser.add_argument("--n-samples", type=int, default=1000, help="Samples for the Fréchet distance.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--captions-only",
        action="store_true",
        help="Only (re)measure the held-out-caption samples; keep the prompt results already in the JSON.",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_quiet(True)

    data = load_dataset(SPECS[args.data], captions="auto")
    train, test = data.split(0.2, 0)
    run_dir = args.run_dir or Path("/tmp/genlab-bench") / f"text-{args.data}"
    run_dir.mkdir(parents=True, exist_ok=True)
    model, fit_seconds = fit_or_load(run_dir, train, args.max_steps, args.seed)
    evaluator = get_evaluator(train, test, seed=0)
    print(f"evaluator: {evaluator.describe()}")

    out = RESULTS / f"text-to-image-{args.data}.json"
    previous = (
        {g["guidance"]: g for g in json.loads(out.read_text())["by_guidance"]}
        if args.captions_only and out.is_file()
        else {}
    )
    results = {
        "data": args.data,
        "threads": args.threads,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "fit_seconds": fit_seconds,
        "training": getattr(model, "training_summary_", None),
        "by_guidance": [],
    }
    if args.captions_only and out.is_file():
        old = json.loads(out.read_text())
        results.update(fit_seconds=old.get("fit_seconds"), training=old.get("training"))
    for guidance in args.guidance:
        start = time.perf_counter()
        if args.captions_only:
            if guidance not in previous:
                raise SystemExit(f"--captions-only: no earlier prompt results for guidance {guidance} in {out}")
            kept = previous[guidance]
            rows = kept["prompts"]
            summary = {k: v for k, v in kept.items() if k not in ("guidance", "prompts", "caption_samples")}
        else:
            rows, summary = prompt_metrics(model, evaluator, args.n_per_prompt, guidance, args.seed)
        # captions spread evenly over the held-out set (it is sorted by label: its first rows are all zeros)
        index = (
            (torch.arange(args.n_samples) * len(test)) // args.n_samples
            if args.n_samples <= len(test)
            else torch.arange(args.n_samples) % len(test)
        )
        captions = [test.captions[int(i)] for i in index]
        requested = test.labels[index]
        samples = model.sample(args.n_samples, prompt=captions, guidance=guidance, seed=args.seed)
        quality = sample_metrics(samples, train, test, evaluator, requested_labels=requested).metrics
        label = "model default" if guidance is None else f"{guidance}"
        print(f"\n## guidance {label} ({time.perf_counter() - start:.0f} s)\n")
        print(table(rows, ["prompt", "digit", "wanted", "accuracy", "thickness_px"]))
        print(
            f"\nheld-out prompts: accuracy {summary['held_out_accuracy']:.3f} (min {summary['held_out_accuracy_min']:.2f}); "
            f"thick/thin thickness ratio {summary['thick_thin_ratio_mean']:.2f} ('a thick seven' / 'a thin seven'), "
            f"{summary['held_out_thick_thin_ratio']:.2f} (held-out wording)"
        )
        print(
            f"held-out captions: FD {quality['fd']:.2f}, precision {quality['precision']:.3f}, recall {quality['recall']:.3f}, "
            f"digit of the caption {quality.get('conditional_accuracy', float('nan')):.3f}, copies {quality['copies']:.3f}"
        )
        results["by_guidance"].append({"guidance": guidance, "prompts": rows, **summary, "caption_samples": quality})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
