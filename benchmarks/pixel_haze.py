"""Where does the grey haze of generated images come from, and is it gone? (issue #14)

Trains the quick diffusion model on the shared digits split once per data space (``linear``:
the old ``x = 2u - 1``; ``histogram``: the default since issue #14, cells sized by the
training pixel histogram, see :mod:`genlab.diffusion.pixel_space`), then the quick VAE and
(``--families``) other families at the same step budget, and prints, per sampler /
sampling setting, the share of exact-background (0) and faint (1-7) pixels, the
pixel-histogram TV distance and FD in the evaluator's features against the held-out images,
plus each diffusion model's held-out bits/dim:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/pixel_haze.py --diffusion-steps 1500

``--dpm-end`` varies where the DPM-Solver++ grid ends before its final jump to the
denoised prediction (if the last step were at fault, this would move the haze);
the VAE is sampled at several latent temperatures, with its near-copy rate beside.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _common import load_shared  # noqa: E402

from genlab.data.dataset import Dataset  # noqa: E402
from genlab.diffusion import samplers as diffusion_samplers  # noqa: E402
from genlab.diffusion.pixel_space import DATA_SPACES  # noqa: E402
from genlab.metrics.evaluate import unit_flat  # noqa: E402
from genlab.metrics.evaluator import get_evaluator  # noqa: E402
from genlab.metrics.frechet import frechet_distance  # noqa: E402
from genlab.metrics.memorization import memorization  # noqa: E402
from genlab.metrics.pixels import pixel_metrics  # noqa: E402
from genlab.models import make_model  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402


def row(tag: str, samples: torch.Tensor, test: Dataset, evaluator) -> str:
    p = pixel_metrics(samples, test.images)
    fd = frechet_distance(evaluator.features(test.images), evaluator.features(samples))
    return f"| {tag} | {100 * p['zero_share']:.1f}% | {100 * p['faint_share']:.1f}% | {p['pixel_tv']:.3f} | {fd:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffusion-steps", type=int, default=1500)
    parser.add_argument("--vae-steps", type=int, default=None, help="default: the quick preset's")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--dpm-end", type=float, nargs="*", default=[], help="extra DPM-Solver++ grid ends to try")
    parser.add_argument("--data-spaces", nargs="*", default=list(DATA_SPACES[::-1]), choices=DATA_SPACES)
    parser.add_argument(
        "--families",
        nargs="*",
        default=["flow-matching", "flow", "gan"],
        help="further families (quick preset, --diffusion-steps steps) to check through the same uint8 path",
    )
    args = parser.parse_args()
    set_quiet(True)
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    xtr, xte, ytr, yte = load_shared("digits")
    train, test = Dataset(xtr, ytr, name="digits"), Dataset(xte, yte, name="digits")
    evaluator = get_evaluator(train, test, seed=0)
    print(f"evaluator held-out accuracy {100 * evaluator.test_accuracy:.2f}%")
    print("| samples | zero px | faint px (1-7) | pixel TV | FD |\n|---|---|---|---|---|")
    print(row("real held-out vs itself", test.images, test, evaluator))
    print(row("real training subset", train.images[: args.n], test, evaluator))
    for space in args.data_spaces:
        t0 = time.perf_counter()
        diffusion = make_model(
            "diffusion",
            preset="quick",
            max_steps=args.diffusion_steps,
            random_state=0,
            device="cpu",
            data_space=space,
        ).fit(train.images)
        print(f"(diffusion, data_space={space}: {args.diffusion_steps} steps in {time.perf_counter() - t0:.0f} s)")
        default_end = diffusion_samplers.LOGSNR_SPACING_END_TIME
        for end in args.dpm_end:
            diffusion_samplers.LOGSNR_SPACING_END_TIME = end
            print(
                row(
                    f"diffusion {space} dpm++ 20 steps, grid ends at t={end:g}",
                    diffusion.sample(args.n, seed=1, sampler="dpm++", steps=20),
                    test,
                    evaluator,
                )
            )
        diffusion_samplers.LOGSNR_SPACING_END_TIME = default_end
        for sampler, steps in (("dpm++", 20), ("ddim", 50), ("ddpm", 250)):
            print(
                row(
                    f"diffusion {space} {sampler} {steps} steps",
                    diffusion.sample(args.n, seed=1, sampler=sampler, steps=steps),
                    test,
                    evaluator,
                )
            )
        print(f"(diffusion, data_space={space}: held-out bits/dim {diffusion.bits_per_dim(test.images):.3f})")
    for family in args.families:
        t0 = time.perf_counter()
        model = make_model(family, preset="quick", max_steps=args.diffusion_steps, random_state=0, device="cpu")
        model.fit(train.images)
        print(f"({family}: {args.diffusion_steps} steps in {time.perf_counter() - t0:.0f} s)")
        print(row(f"{family} (quick preset's sampler)", model.sample(args.n, seed=1), test, evaluator))
    t0 = time.perf_counter()
    vae = make_model(
        "vae", preset="quick", random_state=0, device="cpu", **({"max_steps": args.vae_steps} if args.vae_steps else {})
    ).fit(train.images)
    print(f"(vae: {time.perf_counter() - t0:.0f} s)")
    for temperature in (0.5, 0.7, 1.0, 1.2):
        s = vae.sample(args.n, seed=1, temperature=temperature)
        mem = memorization(unit_flat(s), unit_flat(train.images), unit_flat(test.images), quantile=0.05)
        print(
            row(
                f"vae T={temperature} (near-copies {100 * mem.copy_fraction:.1f}% vs held-out real {100 * mem.reference_fraction:.0f}%)",
                s,
                test,
                evaluator,
            )
        )


if __name__ == "__main__":
    main()
