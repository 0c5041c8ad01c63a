"""Near-copies of training images by the autoencoders, against the latent sampler that makes them.

    OMP_NUM_THREADS=1 python benchmarks/vae_memorisation.py                  # digits, VAE (minutes)
    OMP_NUM_THREADS=1 python benchmarks/vae_memorisation.py --data mnist10k  # ~15 min of one core
    OMP_NUM_THREADS=1 python benchmarks/vae_memorisation.py --family cvae

Issue #14 asks the autoencoders to copy no more often than held-out real images do (the
pixel-L2 test of :func:`genlab.metrics.memorization`: a sample is a near-copy when it lies
closer to a training image than 95 % of held-out real images; 5 % by construction for
them) and to measure which remedy works. The network is fitted once (quick preset, seed 0,
the train split of ``split(0.2, 0)``); then only the latent sampler varies — it is refitted
on the same training codes for each setting, which costs seconds:

* the fitted GMM on the codes (the preset: ``latent_components`` K, ``latent_temperature`` T),
  with fewer components and higher temperatures;
* the prior N(0, I) (the textbook VAE sampler) at T = 1.

Each setting: 1,000 samples (seed 0) scored with genlab's evaluator against the held-out
images: FD, precision, recall, coverage, near-copies (and the held-out reference rate).
Writes ``benchmarks/results/vae-memorisation-DATA-FAMILY.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, table, threads  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.metrics.evaluate import sample_metrics  # noqa: E402
from genlab.metrics.evaluator import get_evaluator  # noqa: E402
from genlab.models import make_model  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402
from genlab.samplers import make_latent_sampler  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SPECS = {"digits": "digits", "mnist10k": f"npz:{SHARED_DATA / 'mnist10k.npz'}"}
#: label -> (registry name, parameters), as in autoencoders.py
FAMILIES = {
    "vae": ("vae", {}),
    "cvae": ("vae", {"condition": "label"}),
    "wae_mmd": ("wae", {"divergence": "mmd"}),
    "wae_sliced": ("wae", {"divergence": "sliced"}),
    "wae_cw": ("wae", {"divergence": "cw"}),
}
COLUMNS = ["sampler", "K", "T", "fd", "precision", "recall", "coverage", "copies", "copies_reference"]


def refit_sampler(model, kind: str, components: int | None, codes: torch.Tensor, labels) -> None:
    """Replace the fitted latent sampler of ``model`` by ``kind`` fitted on ``codes``."""
    if model.conditional:
        sampler = make_latent_sampler("per_class", base=kind, n_components=components or 1, random_state=0)
    elif kind == "gmm":
        sampler = make_latent_sampler("gmm", n_components=components, random_state=0)
    else:
        sampler = make_latent_sampler("prior")
    model.latent_sampler_state_ = sampler.fit(codes, labels).get_state()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=sorted(SPECS), default="digits")
    ap.add_argument("--family", default="vae", choices=sorted(FAMILIES))
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--temperatures", type=float, nargs="*", default=None, help="default: preset T, 1.0, 1.2, 1.5")
    ap.add_argument("--components", type=int, nargs="*", default=None, help="default: preset K, K/4, 10, 1")
    args = ap.parse_args()
    set_quiet(True)
    train, test = load_dataset(SPECS[args.data]).split(0.2, 0)
    name, extra = FAMILIES[args.family]
    with threads(1):
        evaluator = get_evaluator(train, test, seed=0)
        model = make_model(name, preset="quick", device="cpu", random_state=0, **extra)
        start = time.perf_counter()
        model.fit(train.images, train.labels if model.conditional else None)
        fit_s = time.perf_counter() - start
        labels = train.labels if model.conditional else None
        codes = model._encode_tensor(train.images, labels)
        k_preset = int(model.resolved_params_["latent_components"])
        t_preset = float(model.resolved_params_["latent_temperature"])
        temps = args.temperatures or sorted({t_preset, 1.0, 1.2, 1.5})
        comps = args.components or sorted({k_preset, max(1, k_preset // 4), 10, 1}, reverse=True)
        settings = [("gmm", k, t) for k in comps for t in temps] + [("prior", None, 1.0)]
        rows = []
        for kind, k, t in settings:
            refit_sampler(model, kind, k, codes, labels)
            y = None
            if model.conditional:  # the training class frequencies, as `genlab sample` does by default
                y = train.labels[torch.randint(len(train), (args.n,), generator=torch.Generator().manual_seed(0))]
            samples = model.sample(args.n, y=y, seed=0, temperature=t)
            m = sample_metrics(samples, train, test, evaluator).metrics
            row = {"sampler": kind, "K": k if kind == "gmm" else "", "T": t, **m}
            rows.append(row)
            print(
                f"{kind} K={k} T={t}: FD {m['fd']:.2f} precision {m['precision']:.3f} "
                f"recall {m['recall']:.3f} copies {m['copies']:.3f}",
                flush=True,
            )
    command = "OMP_NUM_THREADS=1 python benchmarks/vae_memorisation.py " + " ".join(sys.argv[1:])
    head = (
        f"`{command}`\n\n{args.family} quick preset on {args.data} (fit {fit_s:.0f} s, "
        f"{model.training_summary_['steps']} steps; preset K = {k_preset}, T = {t_preset}); "
        f"{args.n} samples per row against {len(test)} held-out images.\n\n"
    )
    out = RESULTS / f"vae-memorisation-{args.data}-{args.family}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(head + table(rows, COLUMNS) + "\n")
    keep = [c for c in COLUMNS] + ["coverage", "kid", "class_entropy", "pixel_tv", "faint_share"]
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "command": command,
                "fit_s": fit_s,
                "preset": {"latent_components": k_preset, "latent_temperature": t_preset},
                "rows": [{c: r.get(c) for c in keep} for r in rows],
                "date": time.strftime("%Y-%m-%d"),
            },
            indent=1,
        )
    )
    print(table(rows, COLUMNS))


if __name__ == "__main__":
    main()
