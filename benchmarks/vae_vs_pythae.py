"""Training speed of genlab's VAE against pythae's VAE with the very same networks, in one run.

    python benchmarks/vae_vs_pythae.py                                # mnist10k + digits, 1 thread, 2-4 min
    python benchmarks/vae_vs_pythae.py --datasets digits --repeat 1   # ~30 s
    python benchmarks/vae_vs_pythae.py --threads 2 --steps 500 --repeat 3

pythae is an optional benchmark dependency (``pip install pythae``), never one of genlab's.

Both libraries train the networks of genlab's "quick" preset (genlab's ConvEncoder and
ConvDecoder; pythae gets deep copies of the very initial weights through its
custom-network interface, so the parameter counts are identical) on the same images (the
shared train split cut to a multiple of the batch size, so neither has a ragged last
batch), with batch size 64, Adam at the same constant learning rate, the same thread
count and the same number of optimisation steps (pythae trains whole epochs only, so
``--steps`` is rounded up to whole epochs). Each library first runs an untimed 10-step
warm-up; the timed runs are interleaved (``--repeat`` each, alternating who goes first)
and the medians reported.

What is timed is what a user waits for, each library training its own way:

* genlab: ``genlab.make_model("vae", max_steps=N, val_fraction=0, ...).fit(X)`` from the
  call to the end of training (the trainer's ``on_train_end``). The post-training work of
  ``fit`` is reported apart as "post-fit s": encoding the training set (the runs use the
  N(0, I) latent sampler, which trains identically); ``--gmm`` makes the first run use
  genlab's default GMM sampler, whose fit then adds to "post-fit s" (~15-30 s on mnist10k).
* pythae: ``TrainingPipeline(model, BaseTrainerConfig(...))(X)`` (float conversion and
  checks of the data, the trainer's sanity-check forward pass, the loop with its per-epoch
  ``deepcopy`` of the best model and tqdm bars, the final model saved to a temporary
  directory; nothing of that can be switched off).
* "loop s": the training loop alone, first step's start to last step's end, for both;
  "loop cpu ms/step": the process CPU time of the loop per step, which with one thread
  is what the work costs even when other jobs share the cores (wall times then are not).

"ratio" = genlab images/s / pythae images/s over "train s" (> 1: genlab is faster);
"loop ratio" the same over "loop s"; "cpu ratio" over the loop's CPU time. The losses
differ by design (genlab: the continuous-Bernoulli ELBO of freshly dequantised pixels;
pythae: binary cross-entropy of the sigmoid output against fixed pixel values), so the
decoder heads differ by a few elementwise operations; networks and optimiser are the same.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import genlab  # noqa: E402
from _common import load_shared, table, threads  # noqa: E402
from genlab.models.vae import LOG_VAR_MAX, LOG_VAR_MIN, VAENetwork  # noqa: E402
from genlab.progress import set_quiet  # noqa: E402
from genlab.training.callbacks import Callback  # noqa: E402

try:
    from pythae.models import VAE as PythaeVAE
    from pythae.models import VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback
except ImportError:  # pragma: no cover - an optional benchmark dependency
    raise SystemExit("this benchmark needs pythae (pip install pythae); it is not a genlab dependency") from None

warnings.simplefilter("ignore")
set_quiet(True)
for _name in ("pythae", "pythae.pipelines.training", "pythae.trainers.base_trainer.base_trainer"):
    logging.getLogger(_name).setLevel(logging.WARNING)  # pythae's info messages (its tqdm bars stay)

BATCH = 64
RESULTS = Path(__file__).resolve().parent / "results" / "vae-vs-pythae.json"
COLUMNS = [
    "data",
    "library",
    "parameters",
    "steps",
    "train s",
    "images/s",
    "ratio",
    "loop s",
    "loop ratio",
    "loop cpu ms/step",
    "cpu ratio",
    "post-fit s",
]


# ---------------------------------------------------------------------- pythae side
class GenlabEncoder(BaseEncoder):
    """genlab's ConvEncoder behind pythae's encoder interface, computing exactly what
    genlab's VAENetwork.posterior computes (input scaled to [-1, 1], clamped log-variance)."""

    def __init__(self, net: torch.nn.Module) -> None:
        BaseEncoder.__init__(self)
        self.net = net

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mean, log_var = self.net(2.0 * x - 1.0).chunk(2, dim=1)
        return ModelOutput(embedding=mean, log_covariance=log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX))


class GenlabDecoder(BaseDecoder):
    """genlab's ConvDecoder behind pythae's decoder interface; pythae's "bce" loss wants
    probabilities, so the logits go through a sigmoid."""

    def __init__(self, net: torch.nn.Module) -> None:
        BaseDecoder.__init__(self)
        self.net = net

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))


def _now() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): with one thread the CPU clock is what the
    work costs even when other jobs share the cores."""
    return time.perf_counter(), time.process_time()


class PythaeLoopClock(TrainingCallback):
    """Start of the first training step to the end of the last one."""

    def __init__(self) -> None:
        self.start = self.end = None
        self.steps = 0

    def on_train_step_begin(self, training_config, **kwargs):
        if self.start is None:
            self.start = _now()

    def on_train_step_end(self, training_config, **kwargs):
        self.steps += 1
        self.end = _now()


def pythae_model(genlab_network: torch.nn.Module, image_shape, latent_dim: int) -> PythaeVAE:
    config = VAEConfig(
        input_dim=tuple(int(s) for s in image_shape), latent_dim=int(latent_dim), reconstruction_loss="bce"
    )
    enc = GenlabEncoder(copy.deepcopy(genlab_network.encoder))
    dec = GenlabDecoder(copy.deepcopy(genlab_network.decoder))
    return PythaeVAE(model_config=config, encoder=enc, decoder=dec)


def run_pythae(genlab_network, images: torch.Tensor, epochs: int, lr: float) -> dict:
    model = pythae_model(genlab_network, images.shape[1:], genlab_network.latent_dim)
    clock = PythaeLoopClock()
    with tempfile.TemporaryDirectory(prefix="pythae-bench-") as out:
        config = BaseTrainerConfig(
            output_dir=out,
            per_device_train_batch_size=BATCH,
            num_epochs=int(epochs),
            learning_rate=lr,
            optimizer_cls="Adam",
            scheduler_cls=None,
            steps_saving=None,
            steps_predict=None,
            no_cuda=True,
        )
        start = _now()
        data = images.to(torch.float32) / 255.0  # pythae's documented input: floats in [0, 1]
        pipeline = TrainingPipeline(model=model, training_config=config)
        pipeline(train_data=data, callbacks=[clock])
        end = _now()
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": clock.steps,
        "train s": end[0] - start[0],
        "train cpu s": end[1] - start[1],
        "loop s": clock.end[0] - clock.start[0],
        "loop cpu s": clock.end[1] - clock.start[1],
    }


# ---------------------------------------------------------------------- genlab side
class GenlabLoopClock(Callback):
    def __init__(self) -> None:
        self.start = self.end = self.train_end = None

    def on_train_start(self, trainer) -> None:
        self.start = _now()

    def on_step_end(self, trainer) -> None:
        self.end = _now()

    def on_train_end(self, trainer) -> None:  # after the kept weights are restored, before the post-fit work
        self.train_end = _now()


def genlab_model(steps: int, lr: float, latent_sampler: str = "gmm", seed: int = 0):
    return genlab.make_model(
        "vae",
        preset="quick",
        max_steps=int(steps),
        batch_size=BATCH,
        lr=lr,
        lr_schedule="constant",
        warmup_steps=0,
        val_fraction=0.0,
        device="cpu",
        precision="fp32",
        random_state=seed,
        latent_sampler=latent_sampler,
    )


def run_genlab(
    images: torch.Tensor, steps: int, lr: float, latent_sampler: str = "gmm"
) -> tuple[dict, torch.nn.Module]:
    model = genlab_model(steps, lr, latent_sampler)
    clock = GenlabLoopClock()
    model._training_callbacks = lambda config: [clock]  # instance-level hook: times the loop, changes nothing else
    start = _now()
    model.fit(images)
    end = _now()
    row = {
        "parameters": sum(p.numel() for p in model.network_.parameters()),
        "steps": int(model.training_summary_["steps"]),
        "train s": clock.train_end[0] - start[0],
        "train cpu s": clock.train_end[1] - start[1],
        "loop s": clock.end[0] - clock.start[0],
        "loop cpu s": clock.end[1] - clock.start[1],
        "post-fit s": end[0] - clock.train_end[0],
        "latent_sampler": latent_sampler,
        "trainer clock s": float(model.training_summary_["seconds"]),
    }
    # pythae starts from the very weights genlab started from: rebuild them (same seed, same construction)
    with torch.random.fork_rng():
        torch.manual_seed(model.training_config_["random_state"])
        initial = VAENetwork(
            model.image_shape_,
            model.latent_dim_,
            model.decoder_likelihood,
            model.beta,
            width=model.resolved_params_["width"],
            n_blocks=model.resolved_params_["n_blocks"],
            norm=model.norm,
        )
    return row, initial


# ---------------------------------------------------------------------- driver
def _pythae_version() -> str:
    from importlib.metadata import version

    return version("pythae")


def bench(name: str, n_threads: int, steps: int, repeat: int, lr: float, gmm: bool) -> list[dict]:
    train, _, _, _ = load_shared(name)
    n = (len(train) // BATCH) * BATCH  # no ragged last batch: both libraries see the same images per step
    images = train[:n].contiguous()
    steps_per_epoch = n // BATCH
    epochs = max(1, math.ceil(steps / steps_per_epoch))
    steps = epochs * steps_per_epoch
    runs: dict[str, list[dict]] = {"genlab": [], "pythae": []}
    with threads(n_threads):
        # untimed warm-up of both (allocator, oneDNN kernels, lazy imports): 10 steps each
        _, net = run_genlab(images[: 10 * BATCH], 10, lr, "prior")
        run_pythae(net, images[: 10 * BATCH], 1, lr)
        for i in range(repeat):  # interleaved, alternating who goes first, so drifting load hits both alike
            for lib in ("genlab", "pythae") if i % 2 == 0 else ("pythae", "genlab"):
                if lib == "genlab":
                    # the N(0, I) latent sampler trains identically and skips the GMM fit after training;
                    # with --gmm the first run uses genlab's default GMM sampler, to time that fit
                    g, net = run_genlab(images, steps, lr, "gmm" if gmm and i == 0 else "prior")
                    runs["genlab"].append(g)
                else:
                    runs["pythae"].append(run_pythae(net, images, epochs, lr))  # copies of genlab's initial networks
            g, p = runs["genlab"][-1], runs["pythae"][-1]
            print(
                f"  {name} run {i + 1}: loop s (cpu s) genlab {g['loop s']:.1f} ({g['loop cpu s']:.1f}), pythae {p['loop s']:.1f} ({p['loop cpu s']:.1f})",
                file=sys.stderr,
                flush=True,
            )
    rows = []
    for lib, results in runs.items():
        r = {k: statistics.median(x[k] for x in results) if isinstance(v, float) else v for k, v in results[0].items()}
        if lib == "genlab":
            r["post-fit s"] = results[0][
                "post-fit s"
            ]  # encoding the training set (+ fitting the GMM sampler with --gmm)
        r.update(
            data=name,
            library=lib,
            threads=n_threads,
            images=steps * BATCH,
            dataset_images=n,
            epochs=epochs,
            runs=results,
        )
        r["images/s"] = r["images"] / r["train s"]
        r["loop images/s"] = r["images"] / r["loop s"]
        r["loop cpu ms/step"] = 1000 * r["loop cpu s"] / steps
        rows.append(r)
    g, p = rows
    if g["steps"] != p["steps"] or g["parameters"] != p["parameters"]:
        raise SystemExit(
            f"unfair comparison: steps {g['steps']} vs {p['steps']}, parameters {g['parameters']} vs {p['parameters']}"
        )
    for r in rows:
        r["ratio"] = r["images/s"] / p["images/s"]
        r["loop ratio"] = r["loop images/s"] / p["loop images/s"]
        r["cpu ratio"] = p["loop cpu s"] / r["loop cpu s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="mnist10k,digits", help="comma list of shared data sets")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads for both libraries")
    parser.add_argument("--steps", type=int, default=125, help="optimisation steps, rounded up to whole epochs")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per library (medians reported)")
    parser.add_argument(
        "--gmm",
        action="store_true",
        help="first genlab run with its default GMM latent sampler: times its fit (post-fit s)",
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (constant) for both")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    print(
        f"genlab {genlab.__version__}, pythae {_pythae_version()}, torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores, load average {load_before[0]:.1f}"
    )
    start = time.perf_counter()
    rows = []
    for name in args.datasets.split(","):
        rows += bench(name, args.threads, args.steps, args.repeat, args.lr, args.gmm)
    print(table(rows, COLUMNS))
    print(f"\ntotal benchmark time {time.perf_counter() - start:.0f} s")
    record = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "genlab": genlab.__version__,
        "pythae": _pythae_version(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": {
            "start": load_before[0],
            "end": os.getloadavg()[0],
        },  # other jobs on the cores: wall times are noisy then
        "threads": args.threads,
        "batch_size": BATCH,
        "lr": args.lr,
        "steps_rounded_to_whole_epochs": True,
        "rows": rows,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
