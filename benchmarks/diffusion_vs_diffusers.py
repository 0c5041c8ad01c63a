"""genlab's U-Net diffusion against diffusers' ``UNet2DModel`` + ``DDPMScheduler``, in one run.

    python benchmarks/diffusion_vs_diffusers.py                              # speed, ~4-5 min
    python benchmarks/diffusion_vs_diffusers.py --mode quality --minutes 20  # 2 x 20 min + ~7-14 min

diffusers is an optional *benchmark* dependency (``pip install diffusers``), never one of
genlab's. Data: ../shared/data/mnist10k.npz split like the project notes,
``load_dataset("npz:...").split(0.2, 0)`` (8,000 train / 2,000 held-out images, 1 x 28 x 28).

Both networks have about the same number of parameters: genlab's is the U-Net its
``diffusion`` model builds with the "quick" preset (unconditional); diffusers' is a
``UNet2DModel`` with the block types of its ``train_unconditional`` example (plain blocks,
attention at the second-lowest resolution, attention in the middle block), narrowed to
match (see ``DIFFUSERS_CONFIGS``). 28 x 28 needs no padding: both U-Nets halve at most
twice (28 -> 14 -> 7), and diffusers' nearest x2 upsampling gets back to 28 exactly.

``--mode speed`` (default): training and sampling images/s at the same batch size, thread
count and number of steps, each pair measured one after the other in the same process:

* "identical loop": the same hand-written step for both networks: DDPMScheduler noise
  (1000 steps), epsilon-MSE, backward, AdamW(lr 1e-4); only the network differs;
* "as used": genlab's own ``fit`` (the quick recipe: v-prediction, Min-SNR weights,
  gradient clipping, EMA, ...; measured as the difference of two fits of different
  lengths, so model building and the end-of-fit work cancel) against diffusers'
  example step (AdamW betas (0.95, 0.999), weight decay 1e-6, clipping at 1, cosine
  schedule with warm-up, EMAModel);
* sampling: DDIM with the same number of steps (genlab ``model.sample(sampler="ddim")``,
  diffusers ``DDIMPipeline``), and genlab's default sampler (DPM-Solver++(2M), 20 steps)
  for information.

Rates are given per wall-clock second and per second of process CPU time (with one
thread the CPU time is the clean measure on a shared machine: time spent waiting for a
core is not counted). Ratios are genlab / diffusers: > 1 means genlab is faster.

``--mode quality --minutes M``: both trained for about M minutes of wall time on the train
split. genlab: ``make_model("diffusion", preset="quick", max_steps=S)`` (its own fit and
recipe). genlab's Trainer has no wall-time stop, so S comes from a short calibration
(two fits of different lengths, and one pass over the validation share the recipe
evaluates after every epoch);
diffusers: the example's settings (batch 16, lr 1e-4, AdamW, cosine schedule with 500
warm-up steps, EMA, linear betas, 1000 DDPM steps, epsilon prediction; no random flip:
these are digits), with its step count from a calibration of the same loop, so that its
cosine schedule also ends at M minutes (neither run is cut short: the achieved times
are reported; ``--budget-clock cpu`` sizes both by process CPU seconds instead, fairer
when other jobs share the cores). Then 1,000 samples each with DDIM 50 steps (the
EMA weights for both) and genlab's evaluator metrics (``get_evaluator(train, test,
seed=0)`` + ``sample_metrics``): Fréchet distance in the evaluator's feature space,
precision, recall, ... A random 1,000 real training images give the noise floor.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import genlab  # noqa: E402
from _common import SHARED_DATA, table, threads  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402

try:
    import diffusers
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from diffusers.utils import logging as diffusers_logging
except ImportError:  # pragma: no cover - the optional extra
    raise SystemExit("this benchmark needs diffusers (an optional benchmark extra): pip install diffusers") from None

warnings.simplefilter("ignore")
set_quiet(True)
diffusers_logging.set_verbosity_error()

RESULTS = Path(__file__).resolve().parent / "results"

#: UNet2DModel configurations in the style of diffusers' train_unconditional example (its
#: down/up block types: plain blocks, attention one level above the bottom, an attention
#: middle block; the example itself is (128, 128, 256, 256, 512, 512) with 2 layers per block
#: for 64 px RGB), narrowed to about the parameters of genlab's quick U-Net (757 k)
DIFFUSERS_CONFIGS = {
    # 773 k parameters; every other argument at UNet2DModel's defaults (32 norm groups, head dim 8)
    "lpb1": dict(
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    ),
    # 801 k parameters: the example's 2 layers per block, 16 norm groups so 48 channels divide
    "lpb2": dict(
        block_out_channels=(32, 32, 48),
        layers_per_block=2,
        norm_num_groups=16,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    ),
}
#: train_unconditional's defaults (lr, schedule, Adam, EMA, clipping, batch, scheduler)
EXAMPLE = dict(
    lr=1e-4,
    lr_scheduler="cosine",
    lr_warmup_steps=500,
    adam_betas=(0.95, 0.999),
    adam_weight_decay=1e-6,
    adam_epsilon=1e-8,
    ema_inv_gamma=1.0,
    ema_power=0.75,
    ema_max_decay=0.9999,
    grad_clip=1.0,
    train_batch_size=16,
    ddpm_num_steps=1000,
    ddpm_beta_schedule="linear",
    prediction_type="epsilon",
)


# ---------------------------------------------------------------------------------- helpers
class Clock:
    """Wall-clock and process-CPU seconds of a block."""

    def __enter__(self) -> "Clock":
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_mnist():
    path = SHARED_DATA / "mnist10k.npz"
    if not path.is_file():
        raise SystemExit(f"{path} not found: the benchmarks read the shared data files")
    return genlab.load_dataset(f"npz:{path}").split(0.2, 0)


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> [-1, 1], as diffusers' example (ToTensor + Normalize(0.5, 0.5))."""
    return images.float() / 127.5 - 1.0


def genlab_model(**overrides):
    """genlab's unconditional diffusion model with the quick preset (its CPU recipe)."""
    return genlab.make_model("diffusion", preset="quick", random_state=0, **overrides)


def diffusers_unet(config: str, image_shape, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    c, h, w = image_shape
    return UNet2DModel(sample_size=(h, w), in_channels=c, out_channels=c, **DIFFUSERS_CONFIGS[config])


def ddpm_scheduler() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=EXAMPLE["ddpm_num_steps"],
        beta_schedule=EXAMPLE["ddpm_beta_schedule"],
        prediction_type=EXAMPLE["prediction_type"],
    )


class ExampleTrainer:
    """diffusers' train_unconditional step (no accelerate: one process, fp32): AdamW, cosine
    schedule with warm-up, gradient clipping, EMAModel with its warm-up; batches drawn
    without replacement, epoch after epoch."""

    def __init__(
        self, unet: UNet2DModel, images: torch.Tensor, batch_size: int, total_steps: int, seed: int = 0
    ) -> None:
        self.unet = unet.train()
        self.sched = ddpm_scheduler()
        self.opt = torch.optim.AdamW(
            unet.parameters(),
            lr=EXAMPLE["lr"],
            betas=EXAMPLE["adam_betas"],
            weight_decay=EXAMPLE["adam_weight_decay"],
            eps=EXAMPLE["adam_epsilon"],
        )
        self.lr_sched = get_scheduler(
            EXAMPLE["lr_scheduler"],
            optimizer=self.opt,
            num_warmup_steps=EXAMPLE["lr_warmup_steps"],
            num_training_steps=max(1, int(total_steps)),
        )
        self.ema = EMAModel(
            unet.parameters(),
            decay=EXAMPLE["ema_max_decay"],
            use_ema_warmup=True,
            inv_gamma=EXAMPLE["ema_inv_gamma"],
            power=EXAMPLE["ema_power"],
        )
        self.data = to_model_space(images)
        self.batch_size = int(batch_size)
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.steps, self.losses = 0, []
        torch.manual_seed(seed)  # the noise and timesteps of the run

    def _batch(self) -> torch.Tensor:
        if len(self.order) < self.batch_size:
            self.order = torch.randperm(len(self.data), generator=self.gen)
        idx, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return self.data[idx]

    def step(self) -> None:
        clean = self._batch()
        noise = torch.randn(clean.shape)
        timesteps = torch.randint(0, self.sched.config.num_train_timesteps, (clean.shape[0],)).long()
        noisy = self.sched.add_noise(clean, noise, timesteps)
        pred = self.unet(noisy, timesteps).sample
        loss = F.mse_loss(pred, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), EXAMPLE["grad_clip"])
        self.opt.step()
        self.lr_sched.step()
        self.ema.step(self.unet.parameters())
        for p in self.unet.parameters():
            p.grad = None
        self.losses.append(loss.detach().item())
        self.steps += 1


class IdenticalLoop:
    """The same hand-written step for any eps-predicting network ``fn(z, timesteps)``:
    DDPMScheduler noise, epsilon-MSE, backward, AdamW(lr 1e-4)."""

    def __init__(self, network: torch.nn.Module, fn, batches: list[torch.Tensor]) -> None:
        self.network, self.fn, self.batches = network.train(), fn, batches
        self.sched = ddpm_scheduler()
        self.opt = torch.optim.AdamW(network.parameters(), lr=1e-4)
        self.i = 0

    def step(self) -> None:
        x = self.batches[self.i % len(self.batches)]
        self.i += 1
        noise = torch.randn_like(x)
        t = torch.randint(0, 1000, (x.shape[0],))
        loss = F.mse_loss(self.fn(self.network, self.sched.add_noise(x, noise, t), t), noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def genlab_eps(unet, z, t):
    # the U-Net takes a noise level in [0, 1] (its sinusoidal features scale it by 1000)
    return unet(z, t.float() / 1000.0)


def diffusers_eps(unet, z, t):
    return unet(z, t).sample


def diffusers_pipeline(unet: UNet2DModel) -> DDIMPipeline:
    pipe = DDIMPipeline(unet=unet.eval(), scheduler=DDIMScheduler.from_config(ddpm_scheduler().config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def diffusers_sample(unet: UNet2DModel, n: int, steps: int, seed: int = 0, chunk: int = 250) -> torch.Tensor:
    """uint8 (n, C, H, W) from DDIM (eta 0), converted as the example does (round(255 x))."""
    pipe = diffusers_pipeline(unet)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, chunk):
        images = pipe(
            batch_size=min(chunk, n - start), generator=gen, num_inference_steps=steps, output_type="np"
        ).images
        out.append(torch.from_numpy((images * 255).round().astype(np.uint8)).permute(0, 3, 1, 2))
    return torch.cat(out)


def rate_row(task: str, batch: int, n_images: int, g: Clock, d: Clock | None, note: str = "") -> dict:
    row = {"task": task, "batch": batch, "genlab img/s": n_images / g.wall, "genlab img/s (CPU)": n_images / g.cpu}
    if d is not None:
        row.update(
            {
                "diffusers img/s": n_images / d.wall,
                "diffusers img/s (CPU)": n_images / d.cpu,
                "genlab / diffusers": d.wall / g.wall,
                "genlab / diffusers (CPU)": d.cpu / g.cpu,
            }
        )
    row["note"] = note
    return row


def environment(args) -> dict:
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "threads": args.threads,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "genlab": genlab.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


# ---------------------------------------------------------------------------------- speed
def speed(args) -> dict:
    train, _ = load_mnist()
    images = train.images
    shape = tuple(images.shape[1:])
    b, n, warm = args.batch, args.steps, args.warmup
    gen = torch.Generator().manual_seed(0)
    batches = [to_model_space(images[torch.randperm(len(images), generator=gen)[:b]]) for _ in range(8)]

    # an untimed short fit: warms the process up and gives the quick-preset U-Net
    model = genlab_model(max_steps=warm, batch_size=b, val_fraction=0.0).fit(images)
    g_unet = copy.deepcopy(model.network_.denoiser)
    d_unet = diffusers_unet(args.diffusers_config, shape)
    pg, pd = n_params(model.network_), n_params(d_unet)
    print(
        f"parameters: genlab quick U-Net {pg:,}, diffusers UNet2DModel[{args.diffusers_config}] {pd:,} ({100 * (pd / pg - 1):+.1f}%)",
        flush=True,
    )
    if abs(pd / pg - 1) > 0.10:
        print(
            "WARNING: parameter counts differ by more than 10% (genlab's U-Net changed?); pick another --diffusers-config",
            flush=True,
        )

    rows = []
    # 1. identical hand-written loop, in interleaved blocks of 10 steps (load changes hit both)
    loops = {
        "genlab": IdenticalLoop(g_unet, genlab_eps, batches),
        "diffusers": IdenticalLoop(d_unet, diffusers_eps, batches),
    }
    for loop in loops.values():
        for _ in range(warm):
            loop.step()
    acc = {k: [0.0, 0.0] for k in loops}
    done = 0
    while done < n:
        k = min(10, n - done)
        for name, loop in loops.items():
            with Clock() as c:
                for _ in range(k):
                    loop.step()
            acc[name][0] += c.wall
            acc[name][1] += c.cpu
        done += k
    g_clock, d_clock = Clock(), Clock()
    g_clock.wall, g_clock.cpu = acc["genlab"]
    d_clock.wall, d_clock.cpu = acc["diffusers"]
    rows.append(
        rate_row(
            f"train, identical loop ({n} steps)",
            b,
            n * b,
            g_clock,
            d_clock,
            "same step for both: DDPMScheduler noise, eps-MSE, AdamW; only the network differs",
        )
    )
    print(
        f"identical loop done: genlab {n * b / g_clock.wall:.0f} img/s, diffusers {n * b / d_clock.wall:.0f} img/s",
        flush=True,
    )

    # 2. as used: diffusers' example step vs genlab's fit
    ex = ExampleTrainer(diffusers_unet(args.diffusers_config, shape, seed=1), images, b, total_steps=warm + n)
    for _ in range(warm):
        ex.step()
    with Clock() as d_ex:
        for _ in range(n):
            ex.step()
    # genlab's own fit, twice: the difference of the two is `n` steps of its training loop
    # (val_fraction=0: no validation pass inside either fit; everything else is the quick recipe)
    with Clock() as fit_a:
        genlab_model(max_steps=warm, batch_size=b, val_fraction=0.0).fit(images)
    with Clock() as fit_b:
        genlab_model(max_steps=warm + n, batch_size=b, val_fraction=0.0).fit(images)
    g_fit = Clock()
    g_fit.wall, g_fit.cpu = fit_b.wall - fit_a.wall, fit_b.cpu - fit_a.cpu
    rows.append(
        rate_row(
            f"train, as used ({n} steps)",
            b,
            n * b,
            g_fit,
            d_ex,
            f"genlab: model.fit (quick recipe), fit({warm + n} steps) - fit({warm} steps); diffusers: train_unconditional's step (clip, cosine warm-up, EMA)",
        )
    )
    print(
        f"as-used training done: genlab fit {n * b / g_fit.wall:.0f} img/s, diffusers example {n * b / d_ex.wall:.0f} img/s",
        flush=True,
    )

    # 3. sampling, DDIM with the same steps (tiny untimed runs first), then genlab's default sampler
    s, bs = args.sample_steps, args.sample_batch
    model.sample(4, seed=0, sampler="ddim", steps=2)
    diffusers_sample(d_unet, 4, 2)
    with Clock() as g_s:
        g_images = model.sample(bs, seed=0, sampler="ddim", steps=s)
    with Clock() as d_s:
        d_images = diffusers_sample(d_unet, bs, s, chunk=bs)
    assert g_images.shape == d_images.shape == (bs, *shape)
    rows.append(
        rate_row(
            f"sample, DDIM {s} steps", bs, bs, g_s, d_s, "genlab model.sample(sampler='ddim'); diffusers DDIMPipeline"
        )
    )
    with Clock() as g_dpm:
        model.sample(bs, seed=0)
    rows.append(
        rate_row(
            "sample, genlab default DPM-Solver++(2M) 20 steps",
            bs,
            bs,
            g_dpm,
            None,
            "genlab's default sampler (information; no diffusers counterpart timed)",
        )
    )

    columns = [
        "task",
        "batch",
        "genlab img/s",
        "diffusers img/s",
        "genlab / diffusers",
        "genlab img/s (CPU)",
        "diffusers img/s (CPU)",
        "genlab / diffusers (CPU)",
        "note",
    ]
    print()
    print(table(rows, columns))
    return {
        "mode": "speed",
        "environment": environment(args),
        "settings": {
            "batch": b,
            "timed_steps": n,
            "warmup_steps": warm,
            "sample_batch": bs,
            "sample_steps": s,
            "data": "mnist10k train split (8,000 images)",
            "image_shape": list(shape),
        },
        "parameters": {"genlab": pg, "diffusers": pd},
        "configs": {
            "genlab": {
                "model": "make_model('diffusion', preset='quick')",
                "resolved": model.resolved_params_,
                "unet_plan": repr(model.network_.denoiser.plan),
            },
            "diffusers": {
                "UNet2DModel": DIFFUSERS_CONFIGS[args.diffusers_config],
                "name": args.diffusers_config,
                "scheduler": "DDPMScheduler(1000, linear); DDIMScheduler.from_config for sampling",
                "example_settings": EXAMPLE,
            },
        },
        "rows": rows,
    }


# ---------------------------------------------------------------------------------- quality
def quality(args) -> dict:
    from genlab.metrics.evaluate import real_data_metrics, sample_metrics
    from genlab.metrics.evaluator import get_evaluator
    from genlab.training.data import steps_per_epoch

    start_all = time.perf_counter()
    train, test = load_mnist()
    shape = tuple(train.images.shape[1:])
    budget = 60.0 * args.minutes
    with Clock() as ev_clock:
        evaluator = get_evaluator(train, test, seed=0)
    print(f"evaluator: {evaluator.describe()} ({ev_clock.wall:.0f} s)", flush=True)

    # --- genlab: calibrate its fit, then train. Two fits of different lengths without
    # validation give the cost per step and of building; one pass over the validation share
    # (the recipe holds out val_fraction and evaluates it after every epoch and at the end)
    # gives the validation cost
    clock = args.budget_clock
    a, b_ = args.calibration_steps, 3 * args.calibration_steps
    genlab_model(max_steps=2, val_fraction=0.0).fit(train.images[:256])  # untimed: warms the process up
    with Clock() as ca:
        genlab_model(max_steps=a, val_fraction=0.0).fit(train.images)
    with Clock() as cb:
        probe = genlab_model(max_steps=b_, val_fraction=0.0).fit(train.images)
    per_step = max((getattr(cb, clock) - getattr(ca, clock)) / (b_ - a), 1e-3)
    build = max(getattr(ca, clock) - a * per_step, 0.0)
    recipe = genlab_model()
    n_val = max(1, round(float(recipe.val_fraction) * len(train))) if recipe.val_fraction else 0
    net = probe.network_.eval()
    with Clock() as cv, torch.no_grad():
        for i in range(0, n_val, int(recipe.batch_size)):
            net({"images": train.images[i : i + int(recipe.batch_size)]})
    val = getattr(cv, clock)
    spe = steps_per_epoch(len(train) - n_val, int(recipe.batch_size))
    g_steps = max(1, int((budget - build - val) / (per_step + val / spe)))
    print(
        f"genlab calibration ({clock} clock): {per_step:.3f} s/step, {build:.1f} s to build, {val:.1f} s per validation -> {g_steps} steps for {args.minutes} min",
        flush=True,
    )
    with Clock() as g_train:
        g_model = genlab_model(max_steps=g_steps).fit(train.images)
    print(f"genlab trained {g_steps} steps in {g_train.wall:.0f} s (CPU {g_train.cpu:.0f} s)", flush=True)

    # --- diffusers: calibrate the example loop on a throwaway copy, then train from scratch
    bd = args.diffusers_batch
    cal = ExampleTrainer(
        diffusers_unet(args.diffusers_config, shape, seed=1), train.images, bd, total_steps=10_000, seed=1
    )
    for _ in range(3):
        cal.step()
    with Clock() as cc:
        for _ in range(args.calibration_steps):
            cal.step()
    d_per_step = getattr(cc, clock) / args.calibration_steps
    del cal
    d_steps = max(1, int(budget / d_per_step))
    d_unet = diffusers_unet(args.diffusers_config, shape, seed=0)
    trainer = ExampleTrainer(d_unet, train.images, bd, total_steps=d_steps, seed=0)
    print(
        f"diffusers calibration ({clock} clock): {d_per_step:.3f} s/step (batch {bd}) -> {d_steps} steps for {args.minutes} min",
        flush=True,
    )
    with Clock() as d_train:
        for _ in range(d_steps):
            trainer.step()
    print(f"diffusers trained {d_steps} steps in {d_train.wall:.0f} s (CPU {d_train.cpu:.0f} s)", flush=True)
    trainer.ema.copy_to(d_unet.parameters())  # sample with the EMA weights, as the example does

    # --- samples and metrics
    n, s = args.n_samples, args.sample_steps
    results = []
    with Clock() as c:
        g_samples = g_model.sample(n, seed=0, sampler="ddim", steps=s)
    results.append(("genlab quick", g_model, g_samples, c, f"DDIM {s}"))
    with Clock() as c:
        d_samples = diffusers_sample(d_unet, n, s, seed=0)
    results.append(("diffusers UNet2DModel", None, d_samples, c, f"DDIM {s}"))
    if not args.no_default_sampler:
        with Clock() as c:
            g_default = g_model.sample(n, seed=0)
        results.append(("genlab quick", g_model, g_default, c, "DPM-Solver++(2M) 20 (genlab default)"))

    rows = []
    for name, m, samples, clock, sampler in results:
        metrics = sample_metrics(samples, train, test, evaluator).metrics
        is_g = name.startswith("genlab")
        tr = g_train if is_g else d_train
        steps, batch = (g_steps, int(g_model.batch_size)) if is_g else (d_steps, bd)
        rows.append(
            {
                "model": name,
                "sampler": sampler,
                "train steps": steps,
                "batch": batch,
                "images seen": steps * batch,
                "train wall s": tr.wall,
                "train CPU s": tr.cpu,
                "sample s (1000)": clock.wall * 1000 / n,
                **{k: float(v) for k, v in metrics.items()},
            }
        )
    floor = real_data_metrics(train, test, evaluator, n_samples=n, seed=0)
    rows.append({"model": f"real train images (noise floor, {n})", **{k: float(v) for k, v in floor.items()}})

    if args.save_grids:
        from genlab.images import save_grid

        for name, _, samples, _, sampler in results:
            tag = ("genlab" if name.startswith("genlab") else "diffusers") + ("-dpm" if "DPM" in sampler else "")
            save_grid(samples[:100], RESULTS / f"diffusion-vs-diffusers-quality-{tag}.png")

    columns = [
        "model",
        "sampler",
        "train steps",
        "batch",
        "images seen",
        "train wall s",
        "train CPU s",
        "sample s (1000)",
        "fd",
        "precision",
        "recall",
        "density",
        "coverage",
        "class_entropy",
        "copies",
    ]
    print()
    print(table(rows, columns))
    total = time.perf_counter() - start_all
    print(f"\nend-to-end {total:.0f} s for --minutes {args.minutes}")
    return {
        "mode": "quality",
        "environment": environment(args),
        "minutes": args.minutes,
        "end_to_end_s": total,
        "data": "mnist10k: load_dataset('npz:...').split(0.2, 0): 8,000 train / 2,000 test",
        "parameters": {"genlab": n_params(g_model.network_), "diffusers": n_params(d_unet)},
        "calibration": {
            "clock": clock,
            "genlab": {
                "s_per_step": per_step,
                "build_s": build,
                "validation_s": val,
                "steps_per_epoch": spe,
                "steps": g_steps,
                "method": "fit(max_steps=a) and fit(max_steps=3a) without validation: cost per step and of building; one timed pass over the validation share (paid after every epoch and at the end)",
            },
            "diffusers": {
                "s_per_step": d_per_step,
                "steps": d_steps,
                "batch": bd,
                "method": "the example step timed on a throwaway model",
            },
        },
        "configs": {
            "genlab": {
                "model": f"make_model('diffusion', preset='quick', max_steps={g_steps}, random_state=0)",
                "resolved": g_model.resolved_params_,
                "training_summary": g_model.training_summary_,
            },
            "diffusers": {
                "UNet2DModel": DIFFUSERS_CONFIGS[args.diffusers_config],
                "name": args.diffusers_config,
                "example_settings": {**EXAMPLE, "train_batch_size": bd},
                "random_flip": False,
                "final_loss_mean_last_100": float(np.mean(trainer.losses[-100:])) if trainer.losses else None,
            },
        },
        "evaluator": evaluator.describe(),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("speed", "quality"), default="speed")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch (and BLAS) threads for both libraries (default 1)"
    )
    parser.add_argument("--diffusers-config", choices=sorted(DIFFUSERS_CONFIGS), default="lpb1")
    parser.add_argument("--batch", type=int, default=64, help="speed: training batch for both")
    parser.add_argument("--steps", type=int, default=50, help="speed: timed training steps for both")
    parser.add_argument("--warmup", type=int, default=5, help="speed: untimed warm-up steps")
    parser.add_argument("--sample-batch", type=int, default=100, help="speed: images per sampling call")
    parser.add_argument("--sample-steps", type=int, default=50, help="denoising steps of DDIM for both")
    parser.add_argument("--minutes", type=float, default=10.0, help="quality: training wall time of each library")
    parser.add_argument(
        "--diffusers-batch",
        type=int,
        default=EXAMPLE["train_batch_size"],
        help="quality: diffusers' batch (default: the example's 16)",
    )
    parser.add_argument(
        "--budget-clock",
        choices=("wall", "cpu"),
        default="wall",
        help="quality: size both runs by wall-clock or process-CPU seconds (cpu: fairer on a loaded machine)",
    )
    parser.add_argument("--calibration-steps", type=int, default=20, help="quality: steps timed to size each run")
    parser.add_argument("--n-samples", type=int, default=1000, help="quality: samples per model")
    parser.add_argument("--no-default-sampler", action="store_true", help="quality: skip genlab's default-sampler row")
    parser.add_argument(
        "--save-grids", action="store_true", help="quality: also write 10x10 sample grids next to the JSON"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="output (default benchmarks/results/diffusion-vs-diffusers[-quality].json)",
    )
    args = parser.parse_args()
    print(
        f"genlab {genlab.__version__}, diffusers {diffusers.__version__}, torch {torch.__version__}, {args.threads} thread(s)",
        flush=True,
    )
    with threads(args.threads):
        record = speed(args) if args.mode == "speed" else quality(args)
    out = args.json or RESULTS / (
        "diffusion-vs-diffusers.json" if args.mode == "speed" else "diffusion-vs-diffusers-quality.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
