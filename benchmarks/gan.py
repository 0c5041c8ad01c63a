"""The GAN family on the shared splits: sample-quality table, the textbook DCGAN at equal
wall-clock time, and the FD curve with and without differentiable augmentation.

    python benchmarks/gan.py --dataset mnist10k                         # table + DCGAN comparison (~1 h on 2 cores)
    python benchmarks/gan.py --dataset digits --experiments augment     # FD vs images seen, aug on/off
    python benchmarks/gan.py --dataset digits --steps 1500 --threads 1  # a short smoke run
    python benchmarks/gan.py --experiments gan --set clusters=25        # a variant: row "gan,clusters=25"

Every model is fitted on the train split of ``load_dataset(npz:../shared/data/NAME.npz).split(0.2, 0)``
and evaluated with ``evaluate_model(model, train, test, get_evaluator(train, test, seed=0),
n_samples=1000, seed=0)``, beside the real-vs-real noise floor (1,000 real training images
scored like samples, seeds 0, 1, 2).

Experiments (``--experiments``, comma-separated):

* ``table``: ``gan`` (quick preset, unconditional — at 28x28 that is self-conditioned on
  k-means clusters of the images — fitted with the labels so the health probe has a
  classifier) and ``cgan`` (``condition="label"``): FD, precision, recall, density,
  coverage, class entropy, copies, conditional accuracy, fit seconds.
* ``plain``: the unconditional ``gan`` without self-conditioning (``clusters=0``).
* ``dcgan``: the textbook DCGAN recipe (the PyTorch examples' networks and settings: z 100,
  64 base channels, BatchNorm in G and D, BCE, Adam 2e-4 with betas (0.5, 0.999), batch 64;
  the first transposed convolution made 7x7 (28x28) or 4x4 (8x8) instead of 4x4 -> 64x64),
  written here from that description, trained for exactly the wall-clock seconds the genlab
  ``gan`` took, then evaluated the same way.
* ``augment``: the genlab GAN with ``augment="translation,cutout"`` and ``"none"``; FD of
  1,000 samples against the test images every ``--curve-every`` generator steps, as a function
  of the real images D has seen.

Results: ``benchmarks/results/gan-NAME.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, load_split, table, threads  # noqa: E402
from genlab.metrics.evaluate import evaluate_model, real_data_metrics, summarize  # noqa: E402
from genlab.metrics.evaluator import get_evaluator  # noqa: E402
from genlab.metrics.frechet import frechet_distance_from_statistics, gaussian_statistics  # noqa: E402
from genlab.models.gan import GAN  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402
from genlab.training.callbacks import Callback  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
N_SAMPLES, SEED = 1000, 0
COLUMNS = [
    "model",
    "fd",
    "precision",
    "recall",
    "density",
    "coverage",
    "class_entropy",
    "copies",
    "conditional_accuracy",
    "fit_s",
    "steps",
]


def gan_params(steps: int | None, **extra) -> dict:
    params = dict(preset="quick", device="cpu", random_state=SEED)
    if steps is not None:
        params["max_steps"] = steps
    params.update(extra)
    return params


def parse_overrides(pairs: list[str]) -> dict:
    """``["clusters=25", "d_lr=4e-4"]`` -> ``{"clusters": 25, "d_lr": 0.0004}`` (the CLI's ``-p`` parser;
    the GAN validates the values when it is fitted)."""
    from genlab.cli import parse_params

    params = parse_params(tuple(pairs), "--set")
    unknown = sorted(set(params) - set(GAN().get_params()))
    if unknown:
        raise SystemExit(f"--set: unknown GAN parameter(s) {', '.join(unknown)}")
    return params


# ---------------------------------------------------------------------- textbook DCGAN
class TextbookGenerator(nn.Module):
    def __init__(self, size: int, nz: int = 100, ngf: int = 64) -> None:
        super().__init__()
        if size == 28:
            layers = [
                nn.ConvTranspose2d(nz, ngf * 4, 7, 1, 0, bias=False),
                nn.BatchNorm2d(ngf * 4),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * 2),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 2, 1, 4, 2, 1, bias=False),
                nn.Tanh(),
            ]
        elif size == 8:
            layers = [
                nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
                nn.BatchNorm2d(ngf * 2),
                nn.ReLU(True),
                nn.ConvTranspose2d(ngf * 2, 1, 4, 2, 1, bias=False),
                nn.Tanh(),
            ]
        else:
            raise SystemExit(f"the textbook DCGAN here is adapted to 28x28 and 8x8 only, not {size}")
        self.net = nn.Sequential(*layers)
        self.nz = nz

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class TextbookDiscriminator(nn.Module):
    def __init__(self, size: int, ndf: int = 64) -> None:
        super().__init__()
        if size == 28:
            layers = [
                nn.Conv2d(1, ndf, 4, 2, 1, bias=False),
                nn.LeakyReLU(0.2, True),
                nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * 2),
                nn.LeakyReLU(0.2, True),
                nn.Conv2d(ndf * 2, 1, 7, 1, 0, bias=False),
            ]
        else:
            layers = [
                nn.Conv2d(1, ndf, 4, 2, 1, bias=False),
                nn.LeakyReLU(0.2, True),
                nn.Conv2d(ndf, 1, 4, 1, 0, bias=False),
            ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def _weights_init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class TextbookDCGAN:
    """The baseline as a sampler with the ``sample(n, seed=)`` that ``evaluate_model`` uses."""

    likelihood = "none"
    conditional = False

    def __init__(self, size: int) -> None:
        torch.manual_seed(SEED)
        self.G, self.D = TextbookGenerator(size), TextbookDiscriminator(size)
        self.G.apply(_weights_init)
        self.D.apply(_weights_init)
        self.steps = 0

    def fit_for(self, images: torch.Tensor, seconds: float, batch_size: int = 64) -> "TextbookDCGAN":
        opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        bce = nn.BCEWithLogitsLoss()
        g = torch.Generator().manual_seed(SEED)
        x_all = images.float() / 127.5 - 1.0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for idx in torch.randperm(len(x_all), generator=g).split(batch_size):
                real = x_all[idx]
                fake = self.G(torch.randn(len(real), self.G.nz, generator=g))
                d_loss = bce(self.D(real), torch.ones(len(real))) + bce(self.D(fake.detach()), torch.zeros(len(real)))
                opt_d.zero_grad()
                d_loss.backward()
                opt_d.step()
                g_loss = bce(self.D(fake), torch.ones(len(real)))
                opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()
                self.steps += 1
                if time.perf_counter() - start >= seconds:
                    break
        return self

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        self.G.eval()
        z = torch.randn(n, self.G.nz, generator=torch.Generator().manual_seed(seed or 0))
        return ((self.G(z) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------- FD curve
class FDCurve(Callback):
    """FD of 1,000 samples of the kept (EMA) generator against the test features every ``every`` steps."""

    def __init__(self, model: GAN, evaluator, test, every: int) -> None:
        self.model, self.evaluator, self.every = model, evaluator, int(every)
        self.ref = gaussian_statistics(evaluator.features(test.images))
        self.points: list[dict] = []

    def on_step_end(self, trainer) -> None:
        step = trainer.state.step
        if step % self.every:
            return
        with trainer.evaluation("fd-curve"):
            samples = self.model.sample(N_SAMPLES, seed=SEED)
        mu, sigma = gaussian_statistics(self.evaluator.features(samples))
        seen = step * trainer.config.batch_size * int(self.model.network_.n_critic)
        self.points.append(
            {
                "step": step,
                "real_images_seen": seen,
                "fd": float(frechet_distance_from_statistics(mu, sigma, *self.ref)),
            }
        )
        print(f"  step {step}: FD {self.points[-1]['fd']:.2f}", flush=True)


def augment_curve(train, test, evaluator, steps: int | None, every: int, policies: list[str]) -> dict:
    out = {}
    for policy in policies:
        curve: list[FDCurve] = []

        class Curved(GAN):
            def _training_callbacks(self, config):
                cb = FDCurve(self, evaluator, test, every)
                curve.append(cb)
                return [*super()._training_callbacks(config), cb]

        print(f"augment={policy}", flush=True)
        Curved(**gan_params(steps, augment=policy, selection="last")).fit(train.images, train.labels)
        out[policy] = curve[0].points
    return out


# ---------------------------------------------------------------------- main
def evaluate(label: str, model, train, test, evaluator, fit_s: float, steps: int) -> dict:
    metrics = evaluate_model(model, train, test, evaluator, n_samples=N_SAMPLES, seed=SEED).metrics
    return {
        "model": label,
        **{k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "fit_s": fit_s,
        "steps": steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist10k", choices=["mnist10k", "digits"])
    ap.add_argument(
        "--experiments",
        default="table,dcgan",
        help="comma-separated: table (= gan,cgan), gan, cgan, plain, dcgan, augment",
    )
    ap.add_argument("--steps", type=int, default=None, help="generator steps (default: the quick preset's)")
    ap.add_argument("--curve-every", type=int, default=250)
    ap.add_argument(
        "--policies",
        default="translation,cutout;none",
        help="augment experiment: ';'-separated augment values to compare",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a GAN parameter for the genlab rows (repeatable), e.g. --set clusters=25; rows get the values in their key",
    )
    ap.add_argument("--save", type=Path, default=None, help="folder to save each genlab model in (SAVE/KEY)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", type=Path, default=SHARED_DATA, help="folder with NAME.npz (default: ../shared/data)")
    args = ap.parse_args()
    set_quiet(True)
    experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
    if "table" in experiments:
        experiments += ["gan", "cgan"]
    train, test = load_split(args.dataset, args.data_dir)
    out_json = RESULTS / f"gan-{args.dataset}.json"
    results = json.loads(out_json.read_text()) if out_json.is_file() else {}
    with threads(args.threads):
        evaluator = get_evaluator(train, test, seed=0)
        floor = [real_data_metrics(train, test, evaluator, n_samples=N_SAMPLES, seed=s) for s in (0, 1, 2)]
        results["real"] = {k: summarize([r.get(k) for r in floor]) for k in floor[0]}
        rows = results.setdefault("rows", {})
        produced: set[str] = set()
        gan_seconds = None

        overrides = parse_overrides(args.set)
        suffix = "".join(f" {k}={v}" for k, v in overrides.items())

        def fit_row(key: str, label: str, **params) -> float:
            """Fit a genlab GAN, evaluate it into ``rows[key]``; returns its fit seconds."""
            key, label = key + suffix.replace(" ", ","), label + suffix
            start = time.perf_counter()
            model = GAN(**gan_params(args.steps, **{**params, **overrides})).fit(train.images, train.labels)
            seconds = time.perf_counter() - start
            rows[key] = evaluate(label, model, train, test, evaluator, seconds, model.training_summary_["steps"])
            produced.add(key)
            if args.save is not None:
                model.save(args.save / key)
            print(rows[key], flush=True)
            return seconds

        if "gan" in experiments or "dcgan" in experiments:
            gan_seconds = fit_row("gan", "gan (quick)")
        if "cgan" in experiments:
            fit_row("cgan", "cgan (quick)", condition="label")
        if "plain" in experiments:
            fit_row("gan_plain", "gan, clusters=0 (no self-conditioning)", clusters=0)
        if "dcgan" in experiments:
            base = TextbookDCGAN(train.image_shape[1]).fit_for(train.images, gan_seconds)
            rows["dcgan"] = evaluate(
                "textbook DCGAN (equal time)", base, train, test, evaluator, gan_seconds, base.steps
            )
            produced.add("dcgan")
            print(rows["dcgan"], flush=True)
        if "augment" in experiments:
            curves = results.setdefault("augment_curve", {})
            curves.update(augment_curve(train, test, evaluator, args.steps, args.curve_every, args.policies.split(";")))
    results["settings"] = {"steps": args.steps, "threads": args.threads, "n_samples": N_SAMPLES}
    RESULTS.mkdir(parents=True, exist_ok=True)
    if out_json.is_file():  # another run may have written rows meanwhile: keep them, replace only ours
        rows = {**json.loads(out_json.read_text()).get("rows", {}), **{k: rows[k] for k in produced}}
        results["rows"] = rows
    out_json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    real = {k: v[0] for k, v in results["real"].items()}
    md = table([{"model": "real (train vs test, mean of 3)", **real}, *rows.values()], COLUMNS)
    (RESULTS / f"gan-{args.dataset}.md").write_text(md + "\n")
    print(md)
    for policy, points in results.get("augment_curve", {}).items():
        print(f"augment={policy}: " + ", ".join(f"{p['real_images_seen']}: {p['fd']:.2f}" for p in points))


if __name__ == "__main__":
    main()
