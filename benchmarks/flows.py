"""Held-out bits/dim of the ``flow`` family on the shared train/test split (short CPU runs).

    python benchmarks/flows.py                                   # digits, affine, quick preset
    python benchmarks/flows.py --coupling spline --steps 1500    # shorter / other coupling
    python benchmarks/flows.py --data mnist10k --steps 500       # 28x28 (slow on CPU)
    python benchmarks/flows.py --against normflows --budget 2    # genlab vs normflows' Glow, 2 CPU-min each

Fits ``make_model("flow", preset="quick", ...)`` on the train split of
``load_dataset(NAME).split(0.2, 0)`` and prints (and appends to
``benchmarks/results/flows.jsonl``): held-out and train bits/dim (exact, genlab's
convention), fit seconds, seconds per step, the number of non-finite values among 10,000
samples at temperature 1 (before quantisation), whether ``reconstruct`` returns the test
images exactly, and the sample quality of 1,000 of those samples and of a Gaussian mixture's
(50 components, reg_covar 1e-3, as in autoencoders.py) with genlab's evaluator: FD,
precision, recall, coverage, pixel TV and the exact-0 / faint shares — for the flow at T = 1
and at each of ``--temperatures`` (keys ``flow_tT_*``). ``--save DIR`` keeps the fitted flow.

``--against normflows`` instead trains genlab's flow (quick preset) and normflows' Glow
(``normflows`` 1.7.x: ``MultiscaleFlow`` of ``GlowBlock``s with a ``Logit`` transform, as its
Glow example builds it) side by side on the same split, one after the other on one thread,
for the same process CPU time (genlab: its CPU seconds per step measured first, then
``max_steps`` = ``--budget`` minutes / that; normflows: its training loop stops when it has
used as much CPU time as genlab's fit actually took),
with Glow's hidden channels chosen so that its parameter count is the closest to genlab's.
Both are scored in genlab's convention (the fixed-seed uniform dequantisation of
:func:`genlab.likelihood.score_generator`; bits/dim on the 256-level scale) and sampled 10,000
times at temperature 1. Appends one row per model to ``benchmarks/results/flows-vs-normflows.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import genlab  # noqa: E402
from _common import SHARED_DATA, threads  # noqa: E402
from genlab.likelihood import quantize  # noqa: E402
from genlab.metrics.evaluate import sample_metrics  # noqa: E402
from genlab.metrics.evaluator import get_evaluator  # noqa: E402
from genlab.metrics.pixels import pixel_metrics  # noqa: E402

SAMPLE_KEYS = ("fd", "precision", "recall", "coverage", "pixel_tv", "zero_share", "faint_share")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="digits or mnist10k")
    ap.add_argument("--coupling", default="affine", choices=("affine", "spline"))
    ap.add_argument("--mask", default="channel", choices=("channel", "checkerboard"))
    ap.add_argument("--dequantization", default="uniform", choices=("uniform", "variational"))
    ap.add_argument(
        "--data-space", default="histogram", choices=("histogram", "linear"), help="the first layer (model default)"
    )
    ap.add_argument(
        "--histogram-mix",
        type=float,
        default=None,
        help="data space 'histogram': weight of the histogram (model default)",
    )
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the quick preset's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--temperatures",
        type=float,
        nargs="*",
        default=[0.7],
        help="sampling temperatures scored besides T = 1 (flows sample better below 1, Kingma & Dhariwal 2018)",
    )
    ap.add_argument("--save", type=Path, default=None, help="also save the fitted flow to this folder")
    ap.add_argument("--against", choices=("normflows",), default=None, help="compare with another library's Glow")
    ap.add_argument("--budget", type=float, default=2.0, help="--against: CPU minutes of training per model")
    args = ap.parse_args()
    threads(args.threads)
    spec = args.data if args.data == "digits" else f"npz:{SHARED_DATA / (args.data + '.npz')}"
    train, test = genlab.load_dataset(spec).split(0.2, 0)
    if args.against == "normflows":
        with threads(1):
            against_normflows(args.data, train, test, args.budget)
        return
    kw = dict(
        preset="quick",
        device="cpu",
        coupling=args.coupling,
        mask=args.mask,
        dequantization=args.dequantization,
        data_space=args.data_space,
    )
    if args.steps is not None:
        kw["max_steps"] = args.steps
    if args.histogram_mix is not None:
        kw["histogram_mix"] = args.histogram_mix
    model = genlab.make_model("flow", **kw)
    t0 = time.perf_counter()
    model.fit(train.images)
    fit_s = time.perf_counter() - t0
    steps = model.training_summary_["steps"]
    u = model._sample(10_000, None, torch.Generator().manual_seed(0), temperature=1.0)
    raw = model._decode_tensor(torch.randn(10_000, model.n_dims_, generator=torch.Generator().manual_seed(0)), None)
    row = {
        "data": args.data,
        **{k: kw[k] for k in ("coupling", "mask", "dequantization", "data_space")},
        "histogram_mix": model.histogram_mix,
        "likelihood": model.likelihood,
        "resolved": model.resolved_params_,
        "steps": steps,
        "test_bits_per_dim": model.bits_per_dim(test.images),
        "train_bits_per_dim": model.bits_per_dim(train.images),
        "fit_s": round(fit_s, 1),
        "s_per_step": round(fit_s / max(steps, 1), 3),
        "nonfinite_samples_of_10000": int((~torch.isfinite(raw.flatten(1))).any(1).sum()),
        "samples_in_range": bool(((u >= 0) & (u <= 1)).all()),
        "reconstruct_exact": bool(torch.equal(model.reconstruct(test.images), test.images)),
    }
    # sample quality beside the Gaussian mixture (autoencoders.py's GMM), 1,000 samples each,
    # with the pixel-level cleanliness of issue #14 (exact-0 / faint shares, pixel TV)
    evaluator = get_evaluator(train, test, seed=0)
    gmm = genlab.make_model("gmm", n_components=50, reg_covar=1e-3).fit(train.images)
    candidates = [("flow", quantize(u[:1000])), ("gmm", gmm.sample(1000, seed=0))]
    candidates += [(f"flow_t{t:g}", model.sample(1000, seed=0, temperature=t)) for t in args.temperatures]
    for name, samples in candidates:
        m = sample_metrics(samples, train, test, evaluator).metrics
        row.update({f"{name}_{k}": round(float(m[k]), 4) for k in SAMPLE_KEYS})
    if args.save is not None:
        model.save(args.save)
    row.update({f"test_{k}": round(float(v), 4) for k, v in pixel_metrics(test.images, test.images).items()})
    print(json.dumps(row))
    out = Path(__file__).resolve().parent / "results" / "flows.jsonl"
    out.parent.mkdir(exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _glow(shape: tuple[int, int, int], hidden: int, levels: int, blocks: int):
    """normflows' multiscale Glow for images of ``shape`` (its Glow example's layout)."""
    import normflows as nf

    c, h, w = shape
    q0, flows, merges = [], [], []
    for i in range(levels):
        flows.append(
            [
                nf.flows.GlowBlock(c * 2 ** (levels + 1 - i), hidden, split_mode="channel", scale=True)
                for _ in range(blocks)
            ]
            + [nf.flows.Squeeze()]
        )
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (levels - i), h // 2 ** (levels - i), w // 2 ** (levels - i))
        else:
            latent = (c * 2 ** (levels + 1), h // 2**levels, w // 2**levels)
        q0.append(nf.distributions.DiagGaussian(latent))
    return nf.MultiscaleFlow(q0, flows, merges, transform=nf.transforms.Logit(alpha=0.05), class_cond=False)


def against_normflows(data: str, train, test, budget_min: float) -> None:
    from normflows import __version__ as nf_version

    from genlab.likelihood import bits_per_dim, dequantize, score_generator

    budget = budget_min * 60
    d = int(train.images[0].numel())
    rows = []
    # genlab: CPU seconds per step from two short fits, then one fit of budget / that steps
    cpu = []
    for steps in (10, 40):
        m = genlab.make_model("flow", preset="quick", device="cpu", max_steps=steps, random_state=0)
        t0 = time.process_time()
        m.fit(train.images)
        cpu.append(time.process_time() - t0)
    per_step = max(cpu[1] - cpu[0], 1e-3) / 30
    model = genlab.make_model(
        "flow", preset="quick", device="cpu", max_steps=max(1, int(budget / per_step)), random_state=0
    )
    t0 = time.process_time()
    model.fit(train.images)
    fit_cpu = time.process_time() - t0
    n_params = _n_params(model.network_)
    raw = model._decode_tensor(torch.randn(10_000, model.n_dims_, generator=torch.Generator().manual_seed(0)), None)
    rows.append(
        {
            "library": "genlab",
            "model": f"flow quick ({model.coupling} coupling)",
            "params": n_params,
            "steps": model.training_summary_["steps"],
            "fit_cpu_s": round(fit_cpu, 1),
            "test_bits_per_dim": float(model.bits_per_dim(test.images)),
            "nonfinite_samples_of_10000": int((~torch.isfinite(raw.flatten(1))).any(1).sum()),
        }
    )
    print(json.dumps(rows[-1]), flush=True)
    # normflows' Glow: 2 levels of 4 blocks on 8x8 (3 levels on larger images), hidden channels matched
    shape = tuple(int(s) for s in train.images.shape[1:])
    levels = 2 if min(shape[1:]) <= 8 else 3
    hidden = min(range(8, 513, 4), key=lambda hc: abs(_n_params(_glow(shape, hc, levels, 4)) - n_params))
    torch.manual_seed(0)
    glow = _glow(shape, hidden, levels, 4)
    opt = torch.optim.Adam(glow.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    glow_budget = rows[0]["fit_cpu_s"]  # the CPU time genlab's fit really took (its per-step estimate is rough)
    steps, skipped, t0 = 0, 0, time.process_time()
    while time.process_time() - t0 < glow_budget:
        batch = train.images[torch.randint(len(train), (128,), generator=gen)]
        loss = glow.forward_kld(dequantize(batch, gen))
        opt.zero_grad()
        if torch.isfinite(loss):  # normflows' own examples skip non-finite losses the same way
            loss.backward()
            opt.step()
        else:
            skipped += 1
        steps += 1
    fit_cpu = time.process_time() - t0
    glow.eval()
    with torch.no_grad():
        u = dequantize(test.images, score_generator())
        ll = torch.cat([glow.log_prob(u[i : i + 250], None) for i in range(0, len(u), 250)]).double()
        torch.manual_seed(0)
        samples = torch.cat([glow.sample(1000)[0] for _ in range(10)])
    finite_ll = torch.isfinite(ll)
    rows.append(
        {
            "library": f"normflows {nf_version}",
            "model": f"Glow ({levels} levels x 4 blocks, hidden {hidden}, logit transform)",
            "params": _n_params(glow),
            "steps": steps,
            "skipped_nonfinite_losses": skipped,
            "fit_cpu_s": round(fit_cpu, 1),
            "test_bits_per_dim": float(bits_per_dim(ll[finite_ll].mean().item(), d)),
            "test_images_with_nonfinite_log_likelihood": int((~finite_ll).sum()),
            "nonfinite_samples_of_10000": int((~torch.isfinite(samples.flatten(1))).any(1).sum()),
        }
    )
    print(json.dumps(rows[-1]), flush=True)
    out = Path(__file__).resolve().parent / "results" / "flows-vs-normflows.jsonl"
    with out.open("a") as f:
        for row in rows:
            f.write(json.dumps({"data": data, "budget_cpu_min": budget_min, **row}) + "\n")


if __name__ == "__main__":
    main()
