"""The one training loop every genlab neural model uses.

The trainer never knows which family it trains. It needs a ``torch.nn.Module`` whose
``forward(batch)`` returns ``(loss, logs)``:

* ``batch``: dict with ``"images"`` uint8 (B, C, H, W) on the training device, and
  ``"labels"`` int64 (B,) when the data has labels (more fields as the data provides);
* ``loss``: a scalar tensor to minimise;
* ``logs``: dict of extra scalars to report (0-dim tensors, kept on the device and read
  every ``log_every`` steps, or Python floats), e.g. ``{"kl": ...}``; they appear in
  metrics.csv as ``train_<key>`` / ``val_<key>``.

The network may define these optional hooks (looked up with ``getattr``):

* ``optimizer_groups() -> dict[str, params]``: one optimiser per entry (each value a list
  of parameters or of torch param-group dicts with overrides such as
  ``{"params": ..., "lr": 2e-4, "betas": (0.5, 0.999)}``), all of kind
  ``config.optimizer`` and on the same schedule; default: one, ``"main"``;
* ``grad_clip_per_optimizer: dict[str, float | None]``: the gradient-norm clip of the
  named optimisers (None = none), overriding ``config.grad_clip`` for them;
* ``ema_module() -> nn.Module``: the sub-module the EMA averages and that
  :meth:`Trainer.evaluation` swaps (a GAN's generator: the discriminator is never
  copied); default: the whole network;
* ``initialize(batch) -> None``: data-dependent initialisation (ActNorm), called once,
  under ``torch.no_grad()``, with the first training batch (the whole global batch, on
  every process) before the first step of a fresh run — never on resume, since the
  restored weights already hold it;
* ``selection``: which weights are kept at the end — ``"val_loss"`` (default: the best
  validation loss), ``"metric"`` (the lowest ``selection_metric(trainer)``, which is
  called at each epoch end and at the end of training inside
  :meth:`Trainer.evaluation`), or ``"last"`` (no selection: the EMA or last weights).
  Early stopping (``patience``) counts epochs without a better selection score.

Multi-phase families (GANs) also subclass ``Trainer`` and override
:meth:`Trainer.train_step`, calling the network through ``self.model`` (the DDP/compiled
wrapper) with the phase as a keyword argument, :meth:`Trainer.optimize` once per
optimiser, and :meth:`Trainer.draw_batch` for further batches within the step, e.g. a
critic that takes ``n_critic`` steps per generator step::

    class GANTrainer(Trainer):
        n_critic = 5

        def train_step(self, batch):
            for i in range(self.n_critic):
                critic_batch = batch if i == 0 else self.draw_batch()
                with self.autocast():
                    d_loss, d_logs = self.model(critic_batch, phase="discriminator")
                self.optimize(d_loss, "discriminator")
            with self.autocast():
                g_loss, g_logs = self.model(batch, phase="generator")
            self.optimize(g_loss, "generator")
            return g_loss.detach(), {**d_logs, **g_logs, "d_loss": d_loss.detach()}

A network whose forward leaves some parameters unused in a phase sets the attribute
``ddp_find_unused_parameters = True`` so DDP tolerates it. Validation calls
``network(batch)`` without a phase (in eval mode); a family whose forward needs one sets
``val_fraction=0`` or gives ``phase`` a default.

Everything else — batching, validation, selection and early stopping, EMA, schedule,
checkpoints, resume, the NaN guard, logging and data parallelism — is handled here once.
The step never waits for the device: losses, logs and the NaN guard's flags accumulate
on it and are read every ``log_every`` steps, at epoch ends and before each checkpoint (a
non-finite step is never written into a checkpoint).
"""

from __future__ import annotations

import contextlib
import gc
import math
import numbers
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from ..errors import GenlabError
from ..progress import progress
from .callbacks import Callback
from .checkpoint import Checkpoint, CheckpointStore, flatten_optimizer_state, unflatten_optimizer_state
from .config import TrainingConfig, resolve_precision
from .data import (
    Prefetcher,
    batch_size_of,
    data_length,
    derive_seed,
    epoch_batches,
    fingerprint,
    move_data,
    random_batch,
    sequential_batches,
    split_train_val,
    steps_per_epoch,
)
from .distributed import DistributedContext
from .ema import EMA
from .metrics import MetricsLog
from .schedule import LRSchedule
from .state import SELECTIONS, TrainState, finite_or_none

#: training-config fields that may change between a run and its resumption without a warning
_RESUME_FREE_FIELDS = {
    "device",
    "num_workers",
    "checkpoint_dir",
    "checkpoint_every",
    "sample_every",
    "log_every",
    "compile",
    "epochs",
    "max_steps",
    "patience",
}
#: ``optimize(grad_clip=...)`` not given: the network's per-optimiser value, else the config's
_CONFIGURED = object()


class TrainingDiverged(GenlabError):
    """A loss or gradient became NaN/inf; ``step`` is the optimiser step (1-based) that failed."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class _NonFinite(Exception):
    def __init__(self, what: str, step: int) -> None:
        super().__init__(what)
        self.what, self.step = what, step


@dataclass
class TrainResult:
    """Summary of a finished :meth:`Trainer.fit`."""

    steps: int
    epochs: int
    best_val_loss: float | None
    best_step: int | None
    stopped_early: bool
    final_train_loss: float | None
    seconds: float
    images_per_s: float
    history: list[dict[str, Any]]
    kept: str  # which weights the network holds now: "best", "ema" or "last"
    selection: str = "val_loss"  # how "best" was chosen: "val_loss", "metric" or "last"
    best_score: float | None = None  # the selection score of the best weights (lower is better)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class Trainer:
    """Mini-batch training of any network that returns its own loss (see the module docstring).

    >>> trainer = Trainer(TrainingConfig(epochs=5, lr=1e-3))          # doctest: +SKIP
    >>> result = trainer.fit(network, {"images": x_uint8, "labels": y}) # doctest: +SKIP

    After ``fit`` the network holds the weights to keep: the best by ``network.selection``
    (the validation loss when a validation split is used), else the EMA weights when
    ``ema_decay`` is set, else the last.
    """

    def __init__(
        self, config: TrainingConfig, callbacks: Sequence[Callback] = (), *, description: str = "training"
    ) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.description = description
        self.state = TrainState()

    # ------------------------------------------------------------------ public API
    def fit(
        self,
        network: nn.Module,
        data: Mapping[str, Any],
        val_data: Mapping[str, Any] | None = None,
        *,
        resume: bool = False,
    ) -> TrainResult:
        """Train ``network`` on ``data`` (dict of equally long fields, ``"images"`` required).

        ``val_data``: an explicit validation set; when None, ``config.val_fraction`` of
        ``data`` is held out with a fixed seed. ``resume=True`` continues from the newest
        checkpoint in ``config.checkpoint_dir`` exactly where it stopped.
        """
        cfg = self.config.validate()
        device = resolve_device(cfg.device)
        self.dist = DistributedContext.from_env(device)
        self.device = self.dist.device or device
        self.metrics = None
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=self._fork_devices()):
                self._prepare(network, data, val_data, resume)
                self._loop()
                result = self._finish()
            self.dist.barrier()
            return result
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            if getattr(self, "metrics", None) is not None:
                self.metrics.close()
            if self.dist.owns_group:
                # the DDP wrapper holds the process group: release it while the interpreter is
                # fully alive (gloo aborts if its threads are torn down at interpreter exit)
                self.model = getattr(self, "network", None)
                gc.collect()
            self.dist.shutdown()

    @property
    def is_main(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.dist.is_main if hasattr(self, "dist") else True

    def configure_optimizers(self, network: nn.Module) -> dict[str, torch.optim.Optimizer]:
        """One optimiser per entry of ``network.optimizer_groups()`` (or one, "main", over
        every trainable parameter)."""
        if hasattr(network, "optimizer_groups"):
            groups = dict(network.optimizer_groups())
        else:
            groups = {"main": [p for p in network.parameters() if p.requires_grad]}
        if not groups:
            raise GenlabError("the network has no parameter groups to optimise")
        device = getattr(self, "device", None)
        return {name: make_optimizer(self.config, params, device=device) for name, params in groups.items()}

    def train_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """One optimisation step on ``batch``; returns (detached loss, logs).

        Override for families with several optimisers or phases (see the module docstring).
        """
        with self.autocast():
            loss, logs = unpack_output(self.model(batch))
        self.optimize(loss)
        return loss.detach(), logs

    def draw_batch(self) -> dict[str, Any]:
        """A further training batch for the current step (same fields and size as the step's
        batch, on the device): rows drawn at random, without replacement, from the training
        split by a generator seeded from (seed, step, draw index within the step), so an
        interrupted and resumed run draws the same batches. Under data parallelism each
        process gets its share of the same global batch."""
        draw = self._draws_in_step
        self._draws_in_step += 1
        seed = derive_seed(self.seed, f"draw-{self.state.step}-{draw}")
        return random_batch(
            self.train_data,
            self.global_batch,
            seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            device=self.device,
        )

    def optimize(self, loss: torch.Tensor, name: str | None = None, *, grad_clip: Any = _CONFIGURED) -> torch.Tensor:
        """Backward ``loss`` and step optimiser ``name`` (the only one when None); returns the
        gradient norm before clipping (a 0-dim tensor on the device).

        ``grad_clip``: clip the gradient norm to this value (None: no clipping); by default
        ``network.grad_clip_per_optimizer[name]`` when the network names this optimiser
        there, else ``config.grad_clip``. The NaN guard records a non-finite loss or
        gradient on the device (no host sync); it is read at the next log row, epoch end or
        checkpoint, which then stops training naming this step.
        """
        if name is None:
            if len(self.optimizers) != 1:
                raise GenlabError(f"several optimisers ({', '.join(self.optimizers)}): name the one to step")
            name = next(iter(self.optimizers))
        elif name not in self.optimizers:
            raise GenlabError(f"no optimiser named {name!r}; the network has {', '.join(map(repr, self.optimizers))}")
        opt = self.optimizers[name]
        clip = self.grad_clips[name] if grad_clip is _CONFIGURED else grad_clip
        opt.zero_grad(set_to_none=True)
        loss.backward()  # also for a NaN loss: under DDP every process must join the gradient all-reduce
        params = [p for p in self._optimizer_params[name] if p.grad is not None]
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
        else:
            norm = _total_norm(params, loss.device)
        prefix = "" if len(self.optimizers) == 1 else f"{name} "
        self._guard.record(self.state.step + 1, (f"{prefix}loss", f"{prefix}gradient"), (loss, norm))
        opt.step()
        return norm

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (bf16 on CUDA by default)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    @contextlib.contextmanager
    def evaluation(self, purpose: str = "evaluation") -> Iterator[nn.Module]:
        """The network with the weights that will be kept (EMA of ``ema_module()`` when
        enabled), in eval mode, without gradients, with a forked RNG seeded for ``purpose``
        (so evaluating never changes the training's random stream and repeats exactly)."""
        net = self.network
        was_training = net.training
        ema_ctx = self.ema.applied_to(self.ema_target) if self.ema is not None else contextlib.nullcontext()
        with torch.random.fork_rng(devices=self._fork_devices()), ema_ctx, torch.no_grad():
            torch.manual_seed(derive_seed(self.seed, purpose) + self.dist.rank)
            net.eval()
            try:
                yield net
            finally:
                net.train(was_training)

    def validate(self) -> tuple[float, dict[str, float]]:
        """Mean loss (and logs) over the validation data with the kept weights."""
        sums = _DeviceSums(self.device)
        with self.evaluation("validation") as net:
            for batch in sequential_batches(
                self.val_data,
                self.config.batch_size,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                device=self.device,
            ):
                with self.autocast():
                    loss, logs = unpack_output(net(batch))
                sums.add(loss, logs, weight=batch_size_of(batch))
        loss_sum, log_sums, count = sums.read(self.dist, mean_over_ranks=False)
        total = max(count, 1.0)
        return loss_sum / total, {k: v / total for k, v in log_sums.items()}

    # ------------------------------------------------------------------ prepare / loop / finish
    def _prepare(
        self, network: nn.Module, data: Mapping[str, Any], val_data: Mapping[str, Any] | None, resume: bool
    ) -> None:
        """Everything before the first step: data, network hooks, optimisers, EMA, the
        checkpoint to resume (or a fresh start with the initialisation hook), the wrapper."""
        cfg = self.config
        self._start_time = time.perf_counter()
        self.store = CheckpointStore(Path(cfg.checkpoint_dir)) if cfg.checkpoint_dir else None
        ckpt = self._checkpoint_to_resume() if resume else None
        self.seed = (
            int(ckpt.record.get("config", {}).get("random_state", cfg.random_state))
            if ckpt is not None
            else int(cfg.random_state)
        )
        self._prepare_data(data, val_data, ckpt)

        self.network = network.to(self.device)
        self.network.train()
        self.selection = _network_selection(network, cfg)
        self.autocast_dtype = resolve_precision(cfg.precision, self.device)
        self._draws_in_step = 0
        if ckpt is None:
            self.state = TrainState()
            if self.store is not None and self.is_main:
                self.store.clear()
            rank_seed = derive_seed(self.seed, f"training-stream-{self.dist.rank}")
            torch.manual_seed(rank_seed)
            random.seed(rank_seed)
            np.random.seed(rank_seed % (2**32))
            self._initialize_network()
        self.optimizers = self.configure_optimizers(self.network)
        self._optimizer_params = {
            name: [p for g in opt.param_groups for p in g["params"]] for name, opt in self.optimizers.items()
        }
        self.grad_clips = self._grad_clips()
        self.schedule = LRSchedule(
            list(self.optimizers.values()),
            warmup_steps=cfg.warmup_steps,
            total_steps=self.total_steps,
            schedule=cfg.lr_schedule,
            min_lr_ratio=cfg.min_lr_ratio,
        )
        self.ema_target, self._ema_prefix = _ema_target(self.network)
        self.ema = EMA(self.ema_target, cfg.ema_decay) if cfg.ema_decay is not None else None
        self.best_state: dict[str, torch.Tensor] | None = None
        self._last_saved_step: int | None = None
        if ckpt is not None:
            self._restore(ckpt)
        self.model = self._wrap(self.network)
        if self.store is not None and self.is_main:
            self.metrics = MetricsLog(self.store.directory, resume_step=ckpt.step if ckpt is not None else None)

        st = self.state
        self._guard = _NonFiniteGuard()
        self._epoch_sums = _DeviceSums(
            self.device, loss_sum=st.epoch_loss_sum, log_sums=st.epoch_logs_sum, count=st.epoch_count
        )
        self._window, self._window_start = _DeviceSums(self.device), (time.perf_counter(), st.step)
        self._elapsed_offset = st.elapsed_s
        self._images_at_start = st.step * self.global_batch
        self._epoch_start = (time.perf_counter(), st.step)
        for cb in self.callbacks:
            cb.on_train_start(self)

    def _loop(self) -> None:
        """The epochs, the final selection and the final checkpoint."""
        st = self.state
        bar = progress(total=self.total_steps, initial=st.step, desc=self.description, unit="step")
        try:
            while not self._done():
                self._run_epoch(bar)
            self._check_finite()
            if self._selects() and st.last_val_step != st.step and st.step > 0:
                self._track_selection(self._selection_score(), count_patience=False)
            if self._last_saved_step != st.step:
                self._save_checkpoint()
        except _NonFinite as exc:  # keep a later crash it explains (if any) as the cause
            raise self._diverged(exc) from exc.__context__
        finally:
            bar.close()

    def _finish(self) -> TrainResult:
        """Load the weights to keep, run the end callbacks, summarise."""
        st = self.state
        kept = self._load_kept_weights()
        for cb in self.callbacks:
            cb.on_train_end(self)
        seconds = time.perf_counter() - self._start_time
        trained_images = st.step * self.global_batch - self._images_at_start
        last_loss = st.history[-1]["train_loss"] if st.history else None
        return TrainResult(
            steps=st.step,
            epochs=st.epoch,
            best_val_loss=st.best_val_loss,
            best_step=st.best_step,
            stopped_early=st.stopped_early,
            final_train_loss=last_loss,
            seconds=seconds,
            images_per_s=trained_images / seconds if seconds > 0 else 0.0,
            history=list(st.history),
            kept=kept,
            selection=self.selection,
            best_score=finite_or_none(st.best_score),
        )

    def _checkpoint_to_resume(self) -> Checkpoint:
        cfg = self.config
        if self.store is None:
            raise GenlabError("resume=True needs checkpoint_dir (the folder with the checkpoints to continue from)")
        ckpt = self.store.load_latest()
        if ckpt is None:
            raise GenlabError(f"{cfg.checkpoint_dir}: no checkpoint to resume from; start without resume")
        self._warn_config_changes(ckpt.record.get("config", {}))
        return ckpt

    def _prepare_data(
        self, data: Mapping[str, Any], val_data: Mapping[str, Any] | None, ckpt: Checkpoint | None
    ) -> None:
        cfg = self.config
        data_length(data)
        fp = fingerprint(data)
        if val_data is None:
            train, val = split_train_val(data, cfg.val_fraction, self.seed)
        else:
            train, val = dict(data), dict(val_data)
            fp += fingerprint(val)
        if ckpt is not None and ckpt.record.get("data_fingerprint") not in (None, fp):
            raise GenlabError(
                f"{cfg.checkpoint_dir}: the checkpoint was trained on different data; resume with the same images (and labels) or start afresh"
            )
        self.train_data = move_data(train, self.device)
        self.val_data = move_data(val, self.device) if val is not None else None
        self.data_fingerprint = fp
        n_train = data_length(train)
        self.steps_per_epoch = steps_per_epoch(n_train, cfg.batch_size)
        self.global_batch = min(cfg.batch_size, n_train)
        if self.dist.world_size > self.global_batch:
            raise GenlabError(
                f"batch_size={cfg.batch_size} is smaller than the {self.dist.world_size} processes; every process needs at least one image per step"
            )
        epoch_steps = cfg.epochs * self.steps_per_epoch if cfg.epochs is not None else math.inf
        self.total_steps = int(min(epoch_steps, cfg.max_steps if cfg.max_steps is not None else math.inf))

    def _initialize_network(self) -> None:
        """``network.initialize(first batch)`` of a fresh run: the whole global batch on
        every process, so data-parallel processes initialise identically."""
        init = getattr(self.network, "initialize", None)
        if init is None:
            return
        if not callable(init):
            raise GenlabError(f"network.initialize must be a method taking the first batch, not {type(init).__name__}")
        first = next(
            epoch_batches(
                self.train_data, seed=self.seed, epoch=0, batch_size=self.config.batch_size, device=self.device
            )
        )
        with torch.no_grad():
            init(first)

    def _grad_clips(self) -> dict[str, float | None]:
        per_opt = dict(getattr(self.network, "grad_clip_per_optimizer", None) or {})
        unknown = sorted(set(per_opt) - set(self.optimizers))
        if unknown:
            raise GenlabError(
                f"network.grad_clip_per_optimizer names {unknown}, which are not optimisers; the network has {sorted(self.optimizers)}"
            )
        for name, value in per_opt.items():
            if value is not None and not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
                raise GenlabError(
                    f"network.grad_clip_per_optimizer[{name!r}]={value!r} must be a positive number or None"
                )
        return {name: per_opt.get(name, self.config.grad_clip) for name in self.optimizers}

    def _done(self) -> bool:
        st, cfg = self.state, self.config
        return st.step >= self.total_steps or st.stopped_early or (cfg.epochs is not None and st.epoch >= cfg.epochs)

    def _run_epoch(self, bar) -> None:
        cfg, st = self.config, self.state
        batches: Iterator[dict[str, Any]] = epoch_batches(
            self.train_data,
            seed=self.seed,
            epoch=st.epoch,
            batch_size=cfg.batch_size,
            start_batch=st.batch_in_epoch,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            device=self.device,
        )
        prefetcher = Prefetcher(batches, cfg.num_workers) if cfg.num_workers > 0 else None
        try:
            for batch in prefetcher or batches:
                lr = self.schedule.apply(st.step)
                self._draws_in_step = 0
                try:
                    loss, logs = self.train_step(batch)
                except (GenlabError, _NonFinite):
                    raise
                except Exception:  # an earlier non-finite step is the likelier cause: say that
                    self._check_finite(collective=False)
                    raise
                if self.ema is not None:
                    self.ema.update(self.ema_target, st.step)
                st.step += 1
                st.batch_in_epoch += 1
                self._record_step(loss, logs, lr, bar)
                if (
                    cfg.checkpoint_every
                    and st.step % cfg.checkpoint_every == 0
                    and st.batch_in_epoch < self.steps_per_epoch
                ):
                    self._save_checkpoint()
                for cb in self.callbacks:
                    cb.on_step_end(self)
                if st.step >= self.total_steps:
                    break
        finally:
            if prefetcher is not None:
                prefetcher.close()
        if st.batch_in_epoch >= self.steps_per_epoch:
            self._end_epoch()

    def _record_step(self, loss: torch.Tensor, logs: dict[str, Any], lr: float, bar) -> None:
        """Add the step's loss and logs to the device-side sums; read them (one host sync)
        only for a log row."""
        st = self.state
        self._epoch_sums.add(loss, logs)
        self._window.add(loss, logs)
        bar.update(1)
        if st.step % self.config.log_every == 0 or st.step == 1:
            self._check_finite()
            loss_sum, log_sums, count = self._window.read(self.dist)
            mean_loss = loss_sum / max(count, 1)
            seconds = time.perf_counter() - self._window_start[0]
            ips = (st.step - self._window_start[1]) * self.global_batch / seconds if seconds > 0 else 0.0
            bar.set_postfix(loss=f"{mean_loss:.4g}", img_s=f"{ips:.0f}")
            if self.metrics is not None:
                row = {
                    "kind": "step",
                    "step": st.step,
                    "epoch": st.epoch,
                    "lr": lr,
                    "train_loss": mean_loss,
                    "images_per_s": ips,
                    "elapsed_s": self._elapsed(),
                }
                row.update({f"train_{k}": v / max(count, 1) for k, v in log_sums.items()})
                self.metrics.write(row, extra_columns=self._extra_columns(sorted(log_sums)))
            self._window, self._window_start = _DeviceSums(self.device), (time.perf_counter(), st.step)

    def _flush_epoch_sums(self) -> None:
        """Copy the device-side epoch sums into the state (saved in checkpoints)."""
        st = self.state
        st.epoch_loss_sum, st.epoch_logs_sum, count = self._epoch_sums.read(self.dist)
        st.epoch_count = int(count)

    def _end_epoch(self) -> None:
        st = self.state
        self._check_finite()
        self._flush_epoch_sums()
        count = max(st.epoch_count, 1)
        log_keys = sorted(st.epoch_logs_sum)
        entry: dict[str, Any] = {"epoch": st.epoch + 1, "step": st.step, "train_loss": st.epoch_loss_sum / count}
        entry.update({f"train_{k}": v / count for k, v in sorted(st.epoch_logs_sum.items())})
        val_loss = None
        if self.val_data is not None:
            val_loss, val_logs = self.validate()
            entry["val_loss"] = finite_or_none(val_loss)
            entry.update({f"val_{k}": finite_or_none(v) for k, v in val_logs.items()})
        if self._selects():
            score = self._selection_score(val_loss)
            if self.selection == "metric":
                entry["selection_metric"] = finite_or_none(score)
            self._track_selection(score, count_patience=True)
        entry["lr"] = float(next(iter(self.optimizers.values())).param_groups[0]["lr"])
        st.history.append(entry)
        st.epoch += 1
        st.batch_in_epoch = 0
        st.epoch_loss_sum, st.epoch_count, st.epoch_logs_sum = 0.0, 0, {}
        self._epoch_sums = _DeviceSums(self.device)
        if self.metrics is not None:
            now = time.perf_counter()
            images = (st.step - self._epoch_start[1]) * self.global_batch
            row = {
                "kind": "epoch",
                "elapsed_s": self._elapsed(),
                "images_per_s": images / max(now - self._epoch_start[0], 1e-9),
                **entry,
            }
            self.metrics.write(row, extra_columns=self._extra_columns(log_keys))
        self._epoch_start = (time.perf_counter(), st.step)
        if self.config.patience is not None and st.epochs_without_improvement >= self.config.patience:
            st.stopped_early = True
        for cb in self.callbacks:
            cb.on_epoch_end(self)
        if self.store is not None:
            self._save_checkpoint()

    def _extra_columns(self, log_keys: list[str]) -> list[str]:
        cols = [f"train_{k}" for k in log_keys]
        if self.val_data is not None:
            cols += [f"val_{k}" for k in log_keys]
        if self.selection == "metric":
            cols.append("selection_metric")
        return cols

    # ------------------------------------------------------------------ selection of the kept weights
    def _selects(self) -> bool:
        """Whether "best" weights are chosen at all (by a metric, or by a validation loss there is)."""
        return self.selection == "metric" or (self.selection == "val_loss" and self.val_data is not None)

    def _selection_score(self, val_loss: float | None = None) -> float:
        """The current weights' selection score (lower is better)."""
        if self.selection == "val_loss":
            return val_loss if val_loss is not None else self.validate()[0]
        with self.evaluation("selection"):
            value = self.network.selection_metric(self)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise GenlabError(
                f"network.selection_metric(trainer) must return a number, not {type(value).__name__}"
            ) from None
        if self.dist.enabled:  # every process must pick the same weights
            value = (
                float(self.dist.all_reduce_sum(torch.tensor([value], dtype=torch.float64, device=self.device)).item())
                / self.dist.world_size
            )
        return value

    def _track_selection(self, score: float, *, count_patience: bool) -> None:
        st = self.state
        st.last_val_step = st.step
        if math.isfinite(score) and (st.best_score is None or score < st.best_score):
            st.best_score = score
            st.best_val_loss = score if self.selection == "val_loss" else None
            st.best_step = st.step
            st.epochs_without_improvement = 0
            self.best_state = {k: v.detach().clone() for k, v in self._kept_state().items()}
        elif count_patience:
            st.epochs_without_improvement += 1

    def _kept_state(self) -> dict[str, torch.Tensor]:
        """The network's state dict with the EMA weights in place of ``ema_module()``'s."""
        state = self.network.state_dict()
        if self.ema is not None:
            state.update({self._ema_prefix + k: v for k, v in self.ema.state_dict().items()})
        return state

    def _load_kept_weights(self) -> str:
        if self._selects() and self.best_state is not None:
            self.network.load_state_dict(self.best_state)
            kept = "best"
        elif self.ema is not None:
            self.ema.copy_to(self.ema_target)
            kept = "ema"
        else:
            kept = "last"
        if self.dist.enabled:  # buffers (e.g. BatchNorm statistics) drift per process: end with rank 0's
            for tensor in self.network.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)
        self.network.eval()
        return kept

    def _elapsed(self) -> float:
        return self._elapsed_offset + time.perf_counter() - self._start_time

    def _fork_devices(self) -> list[int]:
        return (
            [self.device.index if self.device.index is not None else torch.cuda.current_device()]
            if self.device.type == "cuda"
            else []
        )

    # ------------------------------------------------------------------ NaN guard
    def _check_finite(self, *, collective: bool = True) -> None:
        """Raise :class:`_NonFinite` (on every process at once) if a step so far had a
        non-finite loss or gradient; one host sync. ``collective=False``: this process's
        flags only (when the others may not reach this point)."""
        found = self._guard.first(self.dist if collective else None)
        if found is not None:
            raise _NonFinite(*found)

    def _diverged(self, exc: _NonFinite) -> TrainingDiverged:
        cfg = self.config
        step, epoch = exc.step, (exc.step - 1) // self.steps_per_epoch + 1
        tips = [f"a lower lr (now {cfg.lr:g}, e.g. lr={cfg.lr / 3:.2g})"]
        if cfg.grad_clip is None:
            tips.append("gradient clipping (grad_clip=1.0)")
        if self.autocast_dtype is not None:
            tips.append("full precision (precision='fp32')")
        if cfg.warmup_steps < 100:
            tips.append("a longer warm-up (warmup_steps=500)")
        if self._last_saved_step is not None and self.store is not None:
            where = f"the last good checkpoint (step {self._last_saved_step}) is in {self.store.directory}; fit again with resume=True to continue from it"
        else:
            where = "no checkpoint was written (set checkpoint_dir and checkpoint_every to keep progress)"
        msg = f"training diverged at step {step} (epoch {epoch}): non-finite {exc.what}. Try {', '.join(tips)}; {where}"
        return TrainingDiverged(msg, step)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self) -> None:
        """Write the full training state (collective under torchrun: every rank calls it).
        Refuses (raises the NaN guard's error) if a step since the last check was non-finite."""
        self._check_finite()
        self._flush_epoch_sums()
        rng = self.dist.all_gather_object(_rng_snapshot(self.device))
        self._last_saved_step = self.state.step
        if self.store is None or not self.is_main:
            return
        tensors: dict[str, torch.Tensor] = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        optim_meta = {}
        for name, opt in self.optimizers.items():
            t, meta = flatten_optimizer_state(opt.state_dict(), f"optimizer.{name}")
            tensors.update(t)
            optim_meta[name] = meta
        rng_json = []
        for rank, snap in enumerate(rng):
            tensors[f"rng.torch.{rank}"] = snap["torch"]
            if snap.get("cuda") is not None:
                tensors[f"rng.cuda.{rank}"] = snap["cuda"]
            rng_json.append({"python": snap["python"], "numpy": snap["numpy"]})
        record = {
            "epoch": self.state.epoch,
            "batch_in_epoch": self.state.batch_in_epoch,
            "state": {**self.state.to_dict(), "elapsed_s": self._elapsed()},
            "config": self.config.to_dict(),
            "optimizers": optim_meta,
            "rng": rng_json,
            "world_size": self.dist.world_size,
            "total_steps": self.total_steps,
            "data_fingerprint": self.data_fingerprint,
        }
        best = self.best_state if self.state.best_step is not None else None
        self.store.save(
            self.state.step,
            tensors,
            record,
            best_step=self.state.best_step if best is not None else None,
            best_tensors=best,
        )

    def _restore(self, ckpt: Checkpoint) -> None:
        where = f"{self.config.checkpoint_dir}"
        try:
            self.network.load_state_dict(ckpt.section("network"))
            if self.ema is not None:
                ema_state = ckpt.section("ema")  # absent when the run that wrote it had no EMA
                self.ema.load_state_dict(
                    ema_state
                    if ema_state
                    else ckpt.section("network." + self._ema_prefix[:-1] if self._ema_prefix else "network")
                )
        except (RuntimeError, KeyError) as exc:
            raise GenlabError(
                f"{where}: the checkpoint holds weights for a different network ({str(exc).splitlines()[0]})"
            ) from None
        saved_opts = ckpt.record.get("optimizers", {})
        if set(saved_opts) != set(self.optimizers):
            raise GenlabError(
                f"{where}: the checkpoint has optimisers {sorted(saved_opts)}, the network now uses {sorted(self.optimizers)}"
            )
        for name, opt in self.optimizers.items():
            opt.load_state_dict(unflatten_optimizer_state(ckpt.tensors, saved_opts[name], f"optimizer.{name}"))
        self.state = TrainState.from_dict(ckpt.record["state"])
        self.state.step, self.state.epoch, self.state.batch_in_epoch = (
            int(ckpt.step),
            int(ckpt.record["epoch"]),
            int(ckpt.record["batch_in_epoch"]),
        )
        if ckpt.best_tensors is not None:
            self.best_state = {k: v.to(self.device) for k, v in ckpt.best_tensors.items()}
        self._last_saved_step = ckpt.step
        rank = self.dist.rank
        saved_world = int(ckpt.record.get("world_size", 1))
        if saved_world == self.dist.world_size and f"rng.torch.{rank}" in ckpt.tensors:
            torch.set_rng_state(ckpt.tensors[f"rng.torch.{rank}"])
            if self.device.type == "cuda" and f"rng.cuda.{rank}" in ckpt.tensors:
                torch.cuda.set_rng_state(ckpt.tensors[f"rng.cuda.{rank}"], self.device)
            snap = ckpt.record["rng"][rank]
            random.setstate(_python_state_from_json(snap["python"]))
            np.random.set_state(_numpy_state_from_json(snap["numpy"]))
        else:
            warnings.warn(
                f"resuming with {self.dist.world_size} processes from a checkpoint written by {saved_world}: random streams restart (weights and position are restored)",
                stacklevel=4,
            )
            rank_seed = derive_seed(self.seed, f"training-stream-{rank}-resumed-{ckpt.step}")
            torch.manual_seed(rank_seed)
            random.seed(rank_seed)
            np.random.seed(rank_seed % (2**32))

    def _warn_config_changes(self, saved: dict[str, Any]) -> None:
        now = self.config.to_dict()
        changed = sorted(k for k in now if k in saved and now[k] != saved[k] and k not in _RESUME_FREE_FIELDS)
        if changed:
            detail = ", ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in changed)
            warnings.warn(
                f"resuming with changed settings ({detail}); the optimiser keeps its saved state and the run will not repeat the original exactly",
                stacklevel=5,
            )

    def _wrap(self, network: nn.Module) -> nn.Module:
        model: nn.Module = network
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            kwargs: dict[str, Any] = {
                "find_unused_parameters": bool(getattr(network, "ddp_find_unused_parameters", False))
            }
            if self.device.type == "cuda":
                kwargs["device_ids"] = [self.device.index]
            model = DistributedDataParallel(network, **kwargs)
        if self.config.compile:
            model = torch.compile(model)
        return model


# ---------------------------------------------------------------------- helpers
def make_optimizer(config: TrainingConfig, params: Any, *, device: torch.device | None = None) -> torch.optim.Optimizer:
    """The optimiser ``config.optimizer`` ("adam", "adamw", "sgd" with momentum 0.9) over
    ``params`` (parameters or param-group dicts, whose own keys override the config).

    Given the ``device``, torch's fused implementation is used where it exists (CUDA, CPU:
    one kernel over every parameter, about 3x faster than the per-tensor loop on the CPU
    and free of host syncs); otherwise torch's default."""
    # materialised: a group's "params" may be a generator, and a fallback must see it again
    params = [dict(p, params=list(p["params"])) if isinstance(p, Mapping) else p for p in params]
    if not params:
        raise GenlabError("an optimiser group has no parameters")
    kind, lr, wd = config.optimizer, config.lr, config.weight_decay
    if kind == "adam":
        cls, kwargs = torch.optim.Adam, {"lr": lr, "weight_decay": wd}
    elif kind == "adamw":
        cls, kwargs = torch.optim.AdamW, {"lr": lr, "weight_decay": wd}
    elif kind == "sgd":
        cls, kwargs = torch.optim.SGD, {"lr": lr, "momentum": 0.9, "weight_decay": wd}
    else:
        raise GenlabError(f"optimizer={kind!r} is not valid; use 'adam', 'adamw' or 'sgd'")
    if device is not None and device.type in ("cuda", "cpu"):
        try:
            return cls(params, fused=True, **kwargs)
        except (RuntimeError, ValueError, TypeError):  # an older torch, or a dtype/device without the fused kernel
            pass
    return cls(params, **kwargs)


def unpack_output(out: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """Check a network's ``forward`` output is (scalar loss tensor, dict of logs)."""
    if isinstance(out, torch.Tensor):
        loss, logs = out, {}
    elif (
        isinstance(out, (tuple, list))
        and len(out) == 2
        and isinstance(out[0], torch.Tensor)
        and isinstance(out[1], Mapping)
    ):
        loss, logs = out[0], dict(out[1])
    else:
        raise GenlabError(
            f"network.forward(batch) must return (loss, logs) — a scalar tensor and a dict; got {type(out).__name__}"
        )
    if loss.ndim != 0:
        raise GenlabError(
            f"network.forward(batch) returned a loss of shape {tuple(loss.shape)}; it must be a scalar (reduce it with .mean())"
        )
    return loss, logs


def _total_norm(params: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads]))


class _DeviceSums:
    """Running sums of the loss and the logs, kept on the device: adding is a few tensor
    ops and never waits for the device; :meth:`read` copies them to the host (one sync).

    Tensor logs are summed on the device in float64 (float32 on MPS), in step order, so an
    interrupted run that restarts its sums from the checkpointed values adds exactly as
    the uninterrupted run; Python-number logs are summed on the host.
    """

    def __init__(
        self,
        device: torch.device,
        *,
        loss_sum: float = 0.0,
        log_sums: Mapping[str, float] | None = None,
        count: float = 0,
    ) -> None:
        self.device = device
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.parts: dict[tuple[str, ...], torch.Tensor] = {}  # keys of the tensor logs -> [loss, *logs] sums
        self.host: dict[str, float] = {}
        self.count = count
        # restored sums seed the first device vector (so the additions continue in order)
        self._seed: dict[str, float] | None = {"": loss_sum, **(log_sums or {})} if count else None

    def add(self, loss: torch.Tensor, logs: Mapping[str, Any], *, weight: int | None = None) -> None:
        keys = tuple(sorted(k for k, v in logs.items() if isinstance(v, torch.Tensor)))
        values = [loss.detach().reshape(()).float()] + [
            _on(logs[k].detach().reshape(()).float(), loss.device) for k in keys
        ]
        vec = torch.stack(values).to(self.dtype)
        if weight is not None:
            vec = vec * weight
        for k, v in logs.items():
            if not isinstance(v, torch.Tensor):
                self.host[k] = self.host.get(k, 0.0) + float(v) * (1 if weight is None else weight)
        self.count += 1 if weight is None else weight
        part = self.parts.get(keys)
        if part is not None:
            part.add_(vec)
            return
        if self._seed is not None:
            seed, self._seed = self._seed, None
            start = torch.tensor([seed.pop("", 0.0)] + [seed.pop(k, 0.0) for k in keys], dtype=self.dtype).to(
                vec.device
            )
            for k, v in seed.items():  # logs that were Python numbers
                self.host[k] = self.host.get(k, 0.0) + v
            vec = start + vec
        self.parts[keys] = vec.clone()

    def read(self, dist: DistributedContext, *, mean_over_ranks: bool = True) -> tuple[float, dict[str, float], float]:
        """(loss sum, {log: sum}, count); under data parallelism the sums are averaged over
        the processes (``mean_over_ranks``) or added up (then so is the count)."""
        if self._seed is not None:  # restored and never added to
            seed = dict(self._seed)
            return seed.pop(""), seed, self.count
        layout = [(keys, part) for keys, part in self.parts.items()]
        host_keys = sorted(self.host)
        flat = [part for _, part in layout]
        if dist.enabled:
            extra = torch.tensor(
                [self.host[k] for k in host_keys] + [float(self.count)], dtype=self.dtype, device=self.device
            )
            flat = dist.all_reduce_sum(torch.cat([f.to(self.device) for f in flat] + [extra]))
            if mean_over_ranks:
                flat = flat / dist.world_size
            values = flat.tolist()
            host = dict(zip(host_keys, values[len(values) - 1 - len(host_keys) : -1]))
            count = values[-1]
        else:
            values = torch.cat(flat).tolist() if flat else []
            host, count = dict(self.host), self.count
        loss_sum, logs, pos = 0.0, {}, 0
        for keys, _ in layout:
            loss_sum += values[pos]
            for i, k in enumerate(keys):
                logs[k] = logs.get(k, 0.0) + values[pos + 1 + i]
            pos += 1 + len(keys)
        for k, v in host.items():
            logs[k] = logs.get(k, 0.0) + v
        return loss_sum, logs, count


class _NonFiniteGuard:
    """Per named value (e.g. "loss", "generator gradient"), the first step at which it was
    NaN/inf, tracked on the device without a host sync (read by :meth:`first`)."""

    _BIG = 1 << 62  # stored as BIG - step so a running maximum keeps the earliest step

    def __init__(self) -> None:
        self.codes: dict[tuple[str, ...], torch.Tensor] = {}

    def record(self, step: int, names: tuple[str, ...], values: Sequence[torch.Tensor]) -> None:
        vec = torch.stack([v.detach().reshape(()).float() for v in values])
        code = torch.isfinite(vec).logical_not_() * (self._BIG - step)
        slot = self.codes.get(names)
        if slot is None:
            self.codes[names] = code
        else:
            torch.maximum(slot, code, out=slot)

    def first(self, dist: DistributedContext | None) -> tuple[str, int] | None:
        """(name, step) of the earliest non-finite value (over every process), or None."""
        if not self.codes:
            return None
        names = [n for keys in self.codes for n in keys]
        flat = torch.cat(list(self.codes.values()))
        if dist is not None and dist.enabled:
            torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.MAX)
        codes = flat.tolist()
        best = max(range(len(codes)), key=lambda i: (codes[i], -i))
        return (names[best], self._BIG - codes[best]) if codes[best] > 0 else None


def _on(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    return tensor if tensor.device == device else tensor.to(device, non_blocking=True)


def _network_selection(network: nn.Module, config: TrainingConfig) -> str:
    """``network.selection`` checked (default "val_loss")."""
    selection = getattr(network, "selection", "val_loss")
    if selection not in SELECTIONS:
        raise GenlabError(
            f"network.selection={selection!r} is not valid; use one of {', '.join(map(repr, SELECTIONS))}"
        )
    if selection == "metric" and not callable(getattr(network, "selection_metric", None)):
        raise GenlabError(
            "network.selection='metric' needs a method network.selection_metric(trainer) -> float (lower is better)"
        )
    if selection == "last" and config.patience is not None:
        raise GenlabError(
            "patience (early stopping) needs a selection score, but network.selection='last' keeps the last weights; set patience=None"
        )
    return selection


def _ema_target(network: nn.Module) -> tuple[nn.Module, str]:
    """``network.ema_module()`` (default: the network) and its state-dict prefix in the network."""
    getter = getattr(network, "ema_module", None)
    if getter is None:
        return network, ""
    module = getter()
    for name, sub in network.named_modules():
        if sub is module:
            return module, f"{name}." if name else ""
    raise GenlabError(f"network.ema_module() must return a sub-module of the network, got {type(module).__name__}")


def _rng_snapshot(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": _python_state_to_json(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def _python_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_json(value: list) -> tuple:
    return (value[0], tuple(value[1]), value[2])


def _numpy_state_from_json(value: list) -> tuple:
    return (value[0], np.asarray(value[1], dtype=np.uint32), int(value[2]), int(value[3]), float(value[4]))
