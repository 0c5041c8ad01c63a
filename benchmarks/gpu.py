"""Every GPU measurement of issue #11 in one run: the chip's own limits, each family's full
preset against them, diffusers at equal parameters, and time to quality.

    PYTHONUNBUFFERED=1 python benchmarks/gpu.py --out $OUT            # on the GPU machine, ~10 min
    python benchmarks/gpu.py --smoke --device cpu --out /tmp/gpu-smoke  # seconds: checks the script itself

Stages (each prints its table as it ends and adds to ``OUT/gpu.json``, so a run cut short
still leaves what it measured):

1. **peak**: a bf16 8192^3 matrix product (TFLOP/s, mean of 10 after 3 warm-ups) and a
   device-to-device copy (bytes read + written per second): the ceilings the rest is measured against.
2. **families**: for each family's ``full`` preset (class-conditional where the family has
   it) on the 8,000 mnist10k training images: FLOPs per training image counted with
   ``torch.utils.flop_counter`` on one forward + backward (not guessed), training images/s
   through genlab's own ``fit`` (the difference of two fits of different lengths, so building
   and end-of-fit work cancel), achieved TFLOP/s and the fraction of the measured peak.
3. **diffusers**: the same hand-written step (noise, epsilon-MSE, backward, AdamW) for genlab's
   full U-Net and a diffusers ``UNet2DModel`` widened to the same parameter count, same batch and
   bf16 autocast; ratio genlab / diffusers (> 1: genlab faster). Skipped when diffusers is missing.
4. **quality**: the class-conditional diffusion full preset trained for each ``--budgets``
   minutes (steps sized from stage 2's rate), 1,000 samples (100 per class), FD / precision /
   recall / coverage in genlab's evaluator and conditional accuracy, beside real-vs-real.

FLOP counts include convolutions and matrix products (what ``FlopCounterMode`` counts);
element-wise work is not counted, so the fraction of peak is a lower bound of the chip's use.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import genlab  # noqa: E402
from _common import SHARED_DATA, table  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402

FAMILIES = ("diffusion", "vae", "wae", "gan", "flow", "flow-matching")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu"))
    p.add_argument(
        "--families", default=",".join(FAMILIES), help="comma-separated; families not registered are skipped"
    )
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default: each preset's)")
    p.add_argument("--budgets", default="2,5", help="minutes of training for stage 4 (comma-separated; empty skips it)")
    p.add_argument("--stages", default="peak,families,diffusers,quality")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check the script runs (any device)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeat: int, warmup: int) -> float:
    """Mean seconds of ``fn()`` over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeat


def measure_peak(device: torch.device, smoke: bool) -> dict:
    n = 512 if smoke else 8192
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = timed(lambda: a @ b, device, repeat=3 if smoke else 10, warmup=1 if smoke else 3)
    n_bytes = 2**24 if smoke else 2**31
    src = torch.empty(n_bytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_s = timed(lambda: dst.copy_(src), device, repeat=3 if smoke else 10, warmup=1 if smoke else 3)
    return {
        "matmul": f"{n}^3 {str(dtype).replace('torch.', '')}",
        "peak_tflops": 2 * n**3 / seconds / 1e12,
        "copy_GBps": 2 * n_bytes / copy_s / 1e9,
    }


# ---------------------------------------------------------------------------------- data, models
def load_data(smoke: bool):
    path = SHARED_DATA / "mnist10k.npz"
    if smoke or not path.is_file():
        data = genlab.load_dataset("digits")
    else:
        data = genlab.load_dataset(f"npz:{path}")
    return data.split(0.2, 0)


def conditional_kwargs(name: str) -> dict:
    params = genlab.models.get_model_class(name)().get_params()
    return {"condition": "label"} if "condition" in params else {}


def full_model(name: str, device: str, batch_size: int | None, smoke: bool, **extra):
    kwargs = dict(preset="full", device=device, random_state=0, val_fraction=0.0, **conditional_kwargs(name), **extra)
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if smoke:
        kwargs["preset"] = "quick"
    return genlab.make_model(name, **kwargs)


def built_network(model, train):
    """The network ``fit`` would train, built as ``fit`` builds it (no training)."""
    images = train.images
    model._reset_fitted()
    model.image_shape_ = tuple(images.shape[1:])
    if model.conditional:
        model.n_classes_ = int(train.labels.max()) + 1
    preset = model._resolve_preset()
    model.preset_ = preset
    model.resolved_params_ = model._resolve_params(preset, model.image_shape_, len(images))
    torch.manual_seed(0)
    model._build_modules()
    return model.network_


def flops_per_image(network, train, batch_size: int, device: torch.device) -> float:
    """Forward + backward FLOPs of one training step, per image (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    network = network.to(device).train()
    batch = {"images": train.images[:batch_size].to(device)}
    if train.labels is not None:
        batch["labels"] = train.labels[:batch_size].to(device)
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    with FlopCounterMode(display=False) as counter:
        with autocast:
            out = network(batch)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
    network.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch_size


def training_rate(name: str, train, device: str, batch_size: int | None, smoke: bool) -> tuple[float, int]:
    """(training images/s through genlab's fit, batch size): two fits of different lengths."""
    short, long = (2, 6) if smoke else (30, 230)
    times = []
    for steps in (short, long):
        model = full_model(name, device, batch_size, smoke, max_steps=steps)
        labels = train.labels if model.conditional else None
        synchronize(torch.device(device))
        start = time.perf_counter()
        model.fit(train.images, labels)
        synchronize(torch.device(device))
        times.append(time.perf_counter() - start)
    batch = int(model.batch_size)
    return (long - short) * batch / max(times[1] - times[0], 1e-9), batch


def family_rows(args, device: torch.device, peak: float | None, train) -> list[dict]:
    rows = []
    registered = set(genlab.list_models())
    for name in [f for f in args.families.split(",") if f]:
        if name not in registered:
            print(f"[families] {name}: not registered in this genlab, skipped", flush=True)
            continue
        model = full_model(name, str(device), args.batch_size, args.smoke)
        network = built_network(model, train)
        batch = int(model.batch_size)
        flops = flops_per_image(network, train, min(batch, len(train)), device)
        rate, batch = training_rate(name, train, str(device), args.batch_size, args.smoke)
        achieved = flops * rate / 1e12
        rows.append(
            {
                "family": name,
                "params (M)": sum(p.numel() for p in network.parameters()) / 1e6,
                "batch": batch,
                "GFLOP/image": flops / 1e9,
                "images/s": rate,
                "TFLOP/s": achieved,
                "of peak": (achieved / peak) if peak else float("nan"),
            }
        )
        print(table(rows[-1:], list(rows[-1])), flush=True)
    return rows


# ---------------------------------------------------------------------------------- diffusers
def diffusers_ratio(args, device: torch.device, train) -> dict | None:
    try:
        from diffusers import DDPMScheduler, UNet2DModel
    except ImportError:
        print("[diffusers] not installed: skipped (carry its wheel to measure it)", flush=True)
        return None
    model = full_model("diffusion", str(device), args.batch_size, args.smoke, condition="none")
    unet = built_network(model, train).unet.to(device)
    target = sum(p.numel() for p in unet.parameters())
    c, h, w = train.image_shape
    best = None
    for base in range(16, 257, 8):  # widen diffusers' example U-Net until its parameters match
        cand = UNet2DModel(
            sample_size=(h, w),
            in_channels=c,
            out_channels=c,
            block_out_channels=(base, base, 2 * base),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
        )
        n = sum(p.numel() for p in cand.parameters())
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (cand, n)
        if n > target:
            break
    dunet = best[0].to(device)
    batch = int(model.batch_size)
    x = train.images[:batch].to(device).float() / 127.5 - 1
    sched = DDPMScheduler(num_train_timesteps=1000)
    alphas = sched.alphas_cumprod.to(device)

    def step_fn(net, call):
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def step():
            noise = torch.randn_like(x)
            t = torch.randint(0, 1000, (batch,), device=device)
            a = alphas[t].view(-1, 1, 1, 1)
            z = a.sqrt() * x + (1 - a).sqrt() * noise
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = F.mse_loss(call(net, z, t).float(), noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    repeat, warm = (3, 1) if args.smoke else (100, 10)
    g = timed(step_fn(unet.train(), lambda n, z, t: n(z, t.float() / 1000.0)), device, repeat, warm)
    d = timed(step_fn(dunet.train(), lambda n, z, t: n(z, t).sample), device, repeat, warm)
    return {
        "genlab params (M)": target / 1e6,
        "diffusers params (M)": best[1] / 1e6,
        "batch": batch,
        "genlab img/s": batch / g,
        "diffusers img/s": batch / d,
        "genlab / diffusers": d / g,
    }


# ---------------------------------------------------------------------------------- quality
def quality_rows(args, device: torch.device, train, test, rate: float) -> list[dict]:
    from genlab.metrics.evaluate import real_data_metrics, sample_metrics
    from genlab.metrics.evaluator import get_evaluator

    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    if not budgets:
        return []
    n = 100 if args.smoke else 1000
    evaluator = get_evaluator(train, test, seed=0, echo=lambda s: print(s, flush=True))
    real = real_data_metrics(train, test, evaluator, n_samples=n, seed=0)
    rows = [
        {
            "budget (min)": 0.0,
            "steps": 0,
            "FD": real.get("fd"),
            "precision": real.get("precision"),
            "recall": real.get("recall"),
            "coverage": real.get("coverage"),
            "cond. accuracy": float("nan"),
            "note": "real vs real",
        }
    ]
    for minutes in budgets:
        model = full_model("diffusion", str(device), args.batch_size, args.smoke)
        steps = max(1, int(rate * minutes * 60 / int(model.batch_size))) if not args.smoke else 3
        model.set_params(max_steps=steps)
        start = time.perf_counter()
        model.fit(train.images, train.labels)
        seconds = time.perf_counter() - start
        labels = torch.arange(n) % int(model.n_classes_)
        samples = model.sample(n, y=labels, seed=0)
        m = sample_metrics(samples, train, test, evaluator, requested_labels=labels).metrics
        rows.append(
            {
                "budget (min)": minutes,
                "steps": steps,
                "train s": seconds,
                "FD": m.get("fd"),
                "precision": m.get("precision"),
                "recall": m.get("recall"),
                "coverage": m.get("coverage"),
                "cond. accuracy": m.get("conditional_accuracy"),
            }
        )
        print(table(rows[-1:], list(rows[-1])), flush=True)
    return rows


# ---------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    args = parse_args(argv)
    set_quiet(True)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --smoke --device cpu to check the script)")
    args.out.mkdir(parents=True, exist_ok=True)
    stages = set(args.stages.split(","))
    report: dict = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "smoke": args.smoke,
    }

    def save() -> None:
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2, default=float))

    train, test = load_data(args.smoke)
    peak = None
    if "peak" in stages:
        report["peak"] = measure_peak(device, args.smoke)
        peak = report["peak"]["peak_tflops"]
        print(table([report["peak"]], list(report["peak"])), flush=True)
        save()
    if "families" in stages:
        report["families"] = family_rows(args, device, peak, train)
        save()
    if "diffusers" in stages:
        report["diffusers"] = diffusers_ratio(args, device, train)
        if report["diffusers"]:
            print(table([report["diffusers"]], list(report["diffusers"])), flush=True)
        save()
    if "quality" in stages:
        rate = next((r["images/s"] for r in report.get("families", []) if r["family"] == "diffusion"), None)
        if rate is None:
            rate, _ = training_rate("diffusion", train, str(device), args.batch_size, args.smoke)
        report["quality"] = quality_rows(args, device, train, test, rate)
        save()
    print(f"-> {args.out / 'gpu.json'}")


if __name__ == "__main__":
    main()
